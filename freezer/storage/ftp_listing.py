"""FTP listings read safely: STAT, MLSD or NLST, lines parsed, names trimmed, size and time bounded."""

from __future__ import annotations

import ftplib
import logging
import socket
import ssl
import time
from collections.abc import Iterator

from freezer.storage.base import MAX_LISTING, checked_entries, listing_too_long
from freezer.storage.ftp_client import FtpSettings
from freezer.storage.ftp_errors import MISSING_CODES, reply_of
from freezer.storage.ftp_session import start_transfer
from freezer.storage.ftp_stat import Unusable, batchable, list_dirs

LOG = logging.getLogger("freezer.storage.ftp")

READ_SIZE = 1 << 20
MAX_LISTING_BYTES = MAX_LISTING * 64  # an MLSD line of a freezer container is under 60 bytes


def read_listing(conn: socket.socket, remote: str, settings: FtpSettings) -> bytearray:
    """A listing's bytes, whole within --ftp-timeout and at most ``MAX_LISTING_BYTES`` of them."""
    deadline = time.monotonic() + settings.timeout
    listing = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the listing of {remote} did not end in time")
        conn.settimeout(remaining)
        if not (data := conn.recv(READ_SIZE)):
            return listing
        listing += data
        if len(listing) > MAX_LISTING_BYTES:
            raise listing_too_long(remote, settings.where)


def nlst_name(name: str, remote: str) -> str:
    """A name of an NLST reply, which may carry the directory listed in front; any other path stays as
    it is, for ``checked_entries`` to refuse."""
    prefix = remote.rstrip("/") + "/"
    return name[len(prefix):] if name.startswith(prefix) else name


def lines(data: bytearray) -> Iterator[bytes]:
    """The lines of ``data`` one at a time (a list of them all would be several times its size)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield bytes(data[start:end])
        start = end + 1


def mlsd_entry(line: str) -> tuple[str, str | None] | None:
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


class DirectoryListings:
    """Mixin of the FTP driver: ``_entries(remote)``, one directory listed in as few round trips as the server allows.

    The driver provides ``settings``, ``_client``, ``_binary``, ``_is_dir``, ``_learn_dirs``, ``reset``,
    ``_translate`` and the flags ``_stat_lists`` and ``_mlsd_known``.
    """

    settings: FtpSettings
    _stat_lists: bool
    _mlsd_known: bool

    def _entries(self, remote: str) -> list[tuple[str, str | None]]:
        """(name, 'file'|'dir'|None) of a directory; empty when absent.

        STAT first (one round trip, no data connection), then MLSD, then NLST: each asked for
        only until the server shows it cannot answer it.
        """
        try:
            entries = self._stat_entries(remote)
            if entries is None:
                entries = self._data_entries(remote)
        except (ftplib.error_temp, ftplib.error_perm) as exc:
            if reply_of(exc).startswith(MISSING_CODES):
                return []
            raise self._translate(exc, f"list {remote}") from exc
        except BaseException as exc:
            raise self._translate(exc, f"list {remote}") from exc
        entries = sorted(checked_entries(((name, kind) for name, kind in entries if kind not in ("cdir", "pdir")),
                                         remote, self.settings.where), key=lambda entry: entry[0])
        if entries:
            self._learn_dirs(remote, entries)
        return entries

    def _stat_entries(self, remote: str) -> list[tuple[str, str | None]] | None:
        """The directory as ``STAT <dir>`` lists it; None where the server's STAT is no listing."""
        if not (self._stat_lists and batchable(remote)):
            return None
        try:
            return list_dirs(self._client(), [remote])[0]
        except Unusable as exc:
            LOG.info("%s: listing over data connections (%s)", self.settings.where, exc)
            self._stat_lists = False
            self.reset()  # a reply that was not one: the session may be out of step
            return None

    def _data_entries(self, remote: str) -> list[tuple[str, str | None]]:
        """The directory as MLSD lists it, or NLST where the server has no MLSD."""
        ftp = self._client()
        try:
            if not self._mlsd_known:
                raise ftplib.error_perm("502 MLSD not offered (remembered)")
            return list(self._listing(ftp, "MLSD", remote))
        except ftplib.error_perm as exc:
            if not reply_of(exc).startswith(("500", "501", "502", "504")):
                raise
            self._mlsd_known = self._mlsd_known and not reply_of(exc).startswith(("500", "502"))
            # pyftpdlib answers 501 for a missing directory: one CWD spares the NLST's round trips.
            if reply_of(exc).startswith("501") and not self._is_dir(remote):
                return []
            return [(nlst_name(name, remote), None) for name, _ in self._listing(ftp, "NLST", remote)]

    def _listing(self, ftp: ftplib.FTP, verb: str, remote: str) -> Iterator[tuple[str, str | None]]:
        """MLSD or NLST read in binary mode, so no TYPE A / TYPE I pair is spent around each listing.

        MLSD's default facts carry ``type`` (RFC 3659 7.5.1); an entry without it, and every NLST
        entry, is typed None.
        """
        conn = start_transfer(self._binary(), f"{verb} {remote}")
        with conn:
            listing = read_listing(conn, remote, self.settings)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
        ftp.voidresp()
        decoded = (line.decode(ftp.encoding, "replace").rstrip("\r") for line in lines(listing))
        if verb == "NLST":
            return ((name, None) for name in decoded if name)
        return (entry for line in decoded if (entry := mlsd_entry(line)) is not None)
