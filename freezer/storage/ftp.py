"""FTP and FTPS storage on stdlib ftplib: the driver.

Transfers stream through ``transfercmd`` sockets in large blocks; uploads go to a
temporary name renamed into place (RNFR/RNTO). Connections and TLS are in
freezer/storage/ftp_client.py, the translation of replies into the storage error
family in freezer/storage/ftp_errors.py.
"""

from __future__ import annotations

import ftplib
import logging
import posixpath
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence

from freezer.errors import AuthError, PermissionDenied, StorageError, TLSError
from freezer.storage import ftp_stat
from freezer.storage.base import (
    MAX_LISTING,
    Storage,
    checked_entries,
    container_root,
    listing_too_long,
    server_url,
    temporary_name,
)
from freezer.storage.ftp_client import FtpSettings, close_quietly, keepalive, new_client
from freezer.storage.ftp_errors import MISSING_CODES, reply_of, server_reason, translate

LOG = logging.getLogger(__name__)
BLOCK_SIZE = 1 << 20
# Data connection buffers. Linux doubles this (8 MiB, capped by net.core.[rw]mem_max) and stops
# autotuning the socket: enough for about 4 MiB per round trip, 100 MiB/s at 40 ms. Not changed
# for long links: benchmarks/wan.py relays at user level, so it cannot show TCP's own windows,
# and ftplib over its 40 ms, 200 Mbit/s link already reaches 94% of the line (performance.rst).
SOCKET_BUFFER = 4 << 20
MAX_LISTING_BYTES = MAX_LISTING * 64  # an MLSD line of a freezer container is under 60 bytes


class FtpStorage(Storage):
    """Backups in a directory of an FTP or FTPS server."""

    kind = "ftp"

    def __init__(self, settings: FtpSettings):
        self.settings = settings
        self.kind = "ftps" if settings.tls else "ftp"
        self._ftp: ftplib.FTP | None = None
        self._root: str | None = None
        self._known_dirs: set[str] = set()  # directories seen in a listing or made by this session
        self._absent_dirs: set[str] = set()  # directories a listing found missing
        # What this session already told the server, so a long link does not pay the round trip twice.
        self._binary_mode = False
        self._utf8_asked = False
        self._stat_lists = True  # until the server answers STAT <dir> with something else than a listing

    def describe(self) -> str:
        s = self.settings
        return server_url(self.kind, s.username, s.where, s.container)

    # -- connection -------------------------------------------------------

    def _client(self) -> ftplib.FTP:
        if self._ftp is None:
            self._ftp = self._connect()
            self._binary_mode, self._utf8_asked = True, False
            self._root = self._resolve_root(self._ftp)
        return self._ftp

    def _connect(self) -> ftplib.FTP:
        s = self.settings
        ftp = new_client(s)
        try:
            ftp.connect(s.host, s.port, timeout=s.timeout)
            keepalive(ftp.sock)
            if s.tls and not s.implicit_tls:
                self._auth_tls(ftp)
            self._login(ftp)
            if s.tls:
                ftp.prot_p()
            ftp.set_pasv(not s.active)
            ftp.voidcmd("TYPE I")
        except BaseException as exc:
            close_quietly(ftp)
            raise self._translate(exc, "connect") from exc
        LOG.info("connected to %s", self.describe())
        return ftp

    def _auth_tls(self, ftp: ftplib.FTP_TLS) -> None:
        try:
            ftp.auth()
        except ftplib.error_perm as exc:
            raise TLSError(f"{self.settings.where} does not offer TLS (AUTH TLS refused: {reply_of(exc)}); "
                           "use --storage ftp only on a trusted network") from exc

    def _login(self, ftp: ftplib.FTP) -> None:
        s = self.settings
        try:
            ftp.login(s.username or "anonymous", s.password or "")
        except ftplib.error_perm as exc:
            raise AuthError(f"login to {s.where} as {s.username!r} refused ({reply_of(exc)}): "
                            "check --ftp-username and --ftp-password") from exc

    def _resolve_root(self, ftp: ftplib.FTP) -> str:
        """The container as an absolute path; PWD (a round trip) only when it is relative."""
        container = self.settings.container
        return container_root(container, "/" if container.startswith("/") else ftp.pwd())

    def _speak_utf8(self, path: str) -> None:
        """Ask for UTF-8 names before the first path that needs it; ASCII paths never pay the round trip."""
        if self._utf8_asked or path.isascii():
            return
        self._utf8_asked = True
        try:
            self._ftp.sendcmd("OPTS UTF8 ON")
        except ftplib.all_errors:
            pass  # servers that always speak UTF-8 may not know the command

    def close(self) -> None:
        if self._ftp is not None:
            try:
                self._ftp.quit()
            except (*ftplib.all_errors, EOFError):
                close_quietly(self._ftp)
            self._ftp = None

    def reset(self) -> None:
        """Drop the connection; the next operation reconnects."""
        if self._ftp is not None:
            close_quietly(self._ftp)
            self._ftp = None
        self._known_dirs.clear()
        self._absent_dirs.clear()

    # -- operations -------------------------------------------------------

    def _abs(self, path: str) -> str:
        if any(c in path for c in "\r\n\x00"):
            raise StorageError(f"path {path!r} cannot be sent over FTP")
        self._client()
        remote = posixpath.join(self._root, path)
        self._speak_utf8(remote)
        return remote

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        target = self._abs(path)
        temp = temporary_name(target)
        self._makedirs(posixpath.dirname(target))
        try:
            written = self._store(temp, chunks)
            self._check_stored(temp, written)
            self._rename(temp, target)
        except BaseException as exc:
            self._discard(temp)
            raise self._translate(exc, f"upload {target}") from exc
        return written

    def _check_stored(self, remote: str, written: int) -> None:
        """The server holds every byte sent: a server that loses some quietly fails the upload."""
        stored = self._binary().size(remote)
        if stored is not None and stored != written:
            raise StorageError(f"{self.settings.where} stored {stored} of the {written} bytes sent to {remote} "
                               "(is its disk full?)")

    def _binary(self) -> ftplib.FTP:
        """The client in binary mode: ftplib's listings leave the session in ASCII.

        TYPE I is sent only after a listing: each command costs a round trip on a long link.
        """
        ftp = self._client()
        if not self._binary_mode:
            ftp.voidcmd("TYPE I")
            self._binary_mode = True
        return ftp

    def _store(self, remote: str, chunks: Iterable[bytes]) -> int:
        ftp = self._binary()
        written = 0
        conn = ftp.transfercmd(f"STOR {remote}")
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            for chunk in chunks:
                conn.sendall(chunk)
                written += len(chunk)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        except OSError as exc:
            conn.close()  # before waiting for the server's reason: it answers once the data connection ends
            raise server_reason(ftp) or exc
        except BaseException:
            conn.close()
            raise
        conn.close()
        ftp.voidresp()
        return written

    def _rename(self, source: str, target: str) -> None:
        ftp = self._client()
        try:
            ftp.rename(source, target)
        except ftplib.error_perm:
            # Some servers refuse RNTO onto an existing file: remove it, then rename.
            ftp.delete(target)
            ftp.rename(source, target)

    def _discard(self, remote: str) -> None:
        """Best-effort removal of a partial upload, on a fresh connection if needed."""
        try:
            self.reset()
            self._client().delete(remote)
        except (*ftplib.all_errors, EOFError, StorageError):
            LOG.debug("could not remove partial upload %s", remote)

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        remote = self._abs(path)
        try:
            ftp = self._binary()
            conn = ftp.transfercmd(f"RETR {remote}", rest=offset or None)
        except BaseException as exc:
            raise self._translate(exc, f"download {remote}", missing=True) from exc
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            while data := conn.recv(BLOCK_SIZE):
                yield data
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
            conn.close()
            ftp.voidresp()
        except GeneratorExit:
            conn.close()
            self.reset()  # the server still thinks a transfer runs
            raise
        except BaseException as exc:
            conn.close()
            self.reset()
            raise self._translate(exc, f"download {remote}") from exc

    def listdir(self, path: str) -> list[str]:
        return [name for name, _ in self._entries(self._abs(path))]

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        """Several directories in one round trip per ``ftp_stat.BATCH_BYTES`` of paths, where the server allows."""
        remotes = [self._abs(path) for path in paths]
        if not remotes or not self._stat_lists or not all(map(ftp_stat.batchable, remotes)):
            return super().listdirs(paths)
        try:
            listings = ftp_stat.list_dirs(self._client(), remotes)
        except ftp_stat.Unusable as exc:
            LOG.info("%s: listing one directory at a time (%s)", self.settings.where, exc)
            self.reset()  # replies may still be on their way: the session is out of step
            self._stat_lists = False
            return super().listdirs(paths)
        except BaseException as exc:
            raise self._translate(exc, "list directories") from exc
        names = []
        for remote, entries in zip(remotes, listings, strict=True):
            entries = sorted(checked_entries(entries, remote, self.settings.where))
            if entries:
                self._learn_dirs(remote, entries)
            names.append([name for name, _ in entries])
        return names

    def _entries(self, remote: str) -> list[tuple[str, str | None]]:
        """(name, 'file'|'dir'|None) of a directory; empty when absent."""
        ftp = self._client()
        try:
            try:
                entries = self._mlsd(ftp, remote)
            except ftplib.error_perm as exc:
                if not reply_of(exc).startswith(("500", "501", "502", "504")):
                    raise
                # pyftpdlib answers 501 for a missing directory: one CWD spares the NLST's four round trips.
                if reply_of(exc).startswith("501") and not self._is_dir(remote):
                    self._absent_dirs.add(remote)
                    return []
                self._binary_mode = False  # ftplib lists in ASCII
                entries = [(_nlst_name(name, remote), None) for name in ftp.nlst(remote)]
                if not entries:
                    return []  # vsftpd lists a missing directory as an empty one: learn nothing from it
        except (ftplib.error_temp, ftplib.error_perm) as exc:
            if reply_of(exc).startswith(MISSING_CODES):
                self._absent_dirs.add(remote)
                return []
            raise self._translate(exc, f"list {remote}") from exc
        except BaseException as exc:
            raise self._translate(exc, f"list {remote}") from exc
        entries = sorted(checked_entries(((name, kind) for name, kind in entries if kind not in ("cdir", "pdir")),
                                         remote, self.settings.where), key=lambda entry: entry[0])
        self._learn_dirs(remote, entries)
        return entries

    def _mlsd(self, ftp: ftplib.FTP, remote: str) -> Iterator[tuple[str, str | None]]:
        """MLSD read in binary mode, so no TYPE A / TYPE I pair is spent around each listing.

        The server's default facts carry ``type`` (RFC 3659 7.5.1); an entry without it is typed None.
        """
        conn = self._binary().transfercmd(f"MLSD {remote}")
        with conn:
            listing = self._read_listing(conn, remote)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        ftp.voidresp()
        lines = (line.decode(ftp.encoding, "replace") for line in _lines(listing))
        return (entry for line in lines if (entry := _mlsd_entry(line)) is not None)

    def _read_listing(self, conn: socket.socket, remote: str) -> bytearray:
        """A listing's bytes, whole within --ftp-timeout and at most ``MAX_LISTING_BYTES`` of them."""
        deadline = time.monotonic() + self.settings.timeout
        listing = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the listing of {remote} did not end in time")
            conn.settimeout(remaining)
            if not (data := conn.recv(BLOCK_SIZE)):
                return listing
            listing += data
            if len(listing) > MAX_LISTING_BYTES:
                raise listing_too_long(remote, self.settings.where)

    def _learn_dirs(self, remote: str, entries: list[tuple[str, str | None]]) -> None:
        """A directory that could be listed exists, and so do its ancestors and its typed subdirectories."""
        current = remote
        while current not in ("", "/") and current not in self._known_dirs:
            self._know_dir(current)
            current = posixpath.dirname(current)
        self._known_dirs.update(posixpath.join(remote, name) for name, kind in entries if kind == "dir")

    def rmtree(self, path: str) -> None:
        self._rmtree(self._abs(path))

    def _rmtree(self, remote: str) -> None:
        ftp = self._client()
        for name, kind in self._entries(remote):
            child = posixpath.join(remote, name)
            if kind == "dir":
                self._rmtree(child)
                continue
            try:
                ftp.delete(child)
            except ftplib.error_perm:
                if kind == "file":
                    raise
                self._rmtree(child)  # no type from NLST: not a file, so a directory
        try:
            ftp.rmd(remote)
        except ftplib.error_perm as exc:
            if self._is_dir(remote):
                raise self._translate(exc, f"remove {remote}") from exc
        self._known_dirs = {d for d in self._known_dirs if not (d == remote or d.startswith(remote + "/"))}

    def size(self, path: str) -> int:
        remote = self._abs(path)
        try:
            result = self._binary().size(remote)
        except BaseException as exc:
            raise self._translate(exc, f"size of {remote}", missing=True) from exc
        if result is None:
            raise StorageError(f"{self.settings.where} did not report the size of {remote}")
        return result

    def claim(self, path: str) -> bool:
        remote = self._abs(path)
        try:
            self._makedirs(posixpath.dirname(remote))
            self._client().mkd(remote)
        except ftplib.error_perm as exc:
            # 550 means "exists" as well as "refused": a directory there now is someone else's claim.
            if self._is_dir(remote):
                return False
            raise self._translate(exc, f"create {remote}") from exc
        except BaseException as exc:
            raise self._translate(exc, f"create {remote}") from exc
        self._know_dir(remote)
        return True

    def _makedirs(self, remote: str) -> None:
        """Make ``remote`` and its parents, spending round trips only on directories not known to exist.

        With more than one unknown (none known absent), MKD the deepest first: most backups find all but
        the last there.
        """
        missing = self._unknown_part(remote)
        if not missing:
            return
        if len(missing) > 1 and self._absent_dirs.isdisjoint(missing):
            try:
                self._client().mkd(remote)
                self._know_dir(remote)
                return
            except ftplib.error_perm:
                if self._is_dir(remote):
                    self._know_dir(remote)
                    return
        for current in missing:
            self._make_one(current)

    def _know_dir(self, remote: str) -> None:
        self._known_dirs.add(remote)
        self._absent_dirs.discard(remote)

    def _unknown_part(self, remote: str) -> list[str]:
        """``remote`` and its ancestors below the deepest one known to exist, top first."""
        missing = []
        current = remote
        while current.strip("/") and current not in self._known_dirs:
            missing.append(current)
            current = posixpath.dirname(current)
        return missing[::-1]

    def _make_one(self, remote: str) -> None:
        try:
            self._client().mkd(remote)
        except ftplib.error_perm as exc:
            if not self._is_dir(remote):
                raise PermissionDenied(f"cannot create {remote} on {self.settings.where} "
                                       f"({reply_of(exc)}): check --container and its permissions") from exc
        self._know_dir(remote)

    def _is_dir(self, remote: str) -> bool:
        ftp = self._client()
        try:
            ftp.cwd(remote)
            return True
        except ftplib.error_perm:
            return False

    # -- errors -----------------------------------------------------------

    def _translate(self, exc: BaseException, action: str, missing: bool = False) -> BaseException:
        return translate(exc, action, self.settings, missing)


def _nlst_name(name: str, remote: str) -> str:
    """A name of an NLST reply, which may carry the directory listed in front; any other path stays as
    it is, for ``checked_entries`` to refuse."""
    prefix = remote.rstrip("/") + "/"
    return name[len(prefix):] if name.startswith(prefix) else name


def _lines(data: bytearray) -> Iterator[bytes]:
    """The lines of ``data`` one at a time (a list of them all would be several times its size)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield bytes(data[start:end])
        start = end + 1


def _mlsd_entry(line: str) -> tuple[str, str | None] | None:
    """``("name", type)`` from one MLSD line (``fact=value;...; name``); None for a blank line."""
    facts, _, name = line.rstrip("\r\n").partition(" ")
    if not name:
        return None
    for fact in facts.split(";"):
        key, _, value = fact.partition("=")
        if key.lower() == "type":
            value = value.lower()
            return name, "dir" if value == "dir" else "file" if value == "file" else value or None
    return name, None


def from_settings(settings: FtpSettings) -> FtpStorage:
    """``--storage ftp`` or ``ftps``: the bare driver (freezer/storage/registry.py adds retries)."""
    return FtpStorage(settings)
