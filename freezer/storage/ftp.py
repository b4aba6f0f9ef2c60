"""FTP and FTPS storage on stdlib ftplib: the driver.

Transfers stream through ``transfercmd`` sockets in large blocks; uploads go to a
temporary name renamed into place (RNFR/RNTO). Connections and TLS are in
freezer/storage/ftp_client.py, the translation of replies into the storage error
family in freezer/storage/ftp_errors.py.
"""

from __future__ import annotations

import dataclasses
import ftplib
import itertools
import logging
import posixpath
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from freezer.errors import NotFound, StorageError
from freezer.storage import chunking
from freezer.storage import ftp_segments as segments
from freezer.storage.base import Storage, container_root, server_url, temporary_name
from freezer.storage.chunking import Untouched
from freezer.storage.ftp_client import FtpSettings, close_quietly
from freezer.storage.ftp_dirs import KnownDirectories
from freezer.storage.ftp_errors import translate
from freezer.storage.ftp_listing import MAX_LISTING_BYTES, DirectoryListings
from freezer.storage.ftp_parallel import Pool, connections_for
from freezer.storage.ftp_segments import SegmentedReads
from freezer.storage.ftp_session import (
    busy_reply,
    open_session,
    rename,
    say_goodbye,
    send_upload,
    sizes_answered,
    start_transfer,
    stored_size,
)
from freezer.storage.ftp_stat import StatListings
from freezer.storage.ftp_writes import ParallelWrites
from freezer.storage.growth import Growth

LOG = logging.getLogger(__name__)
BLOCK_SIZE = 1 << 20
# Data connection buffers. Linux doubles this (8 MiB, capped by net.core.[rw]mem_max) and stops
# autotuning the socket: enough for about 4 MiB per round trip, 100 MiB/s at 40 ms. Longer links
# get several connections (freezer/storage/ftp_segments.py, --ftp-connections).
SOCKET_BUFFER = segments.SOCKET_BUFFER
# Bytes: an upload this small sits whole in the socket's buffer, so it is sent before the server's
# 150 arrives (a round trip saved on a long link); a refusal is read right after. Metadata fits.
EARLY_BYTES = 256 << 10
SIZE_QUESTIONS = 64  # sizes asked ahead at most (expect_reads): a restore's levels
HELD_PATIENCE = 120.0  # seconds of retries for a small upload already read (see _put_held)
__all__ = ["MAX_LISTING_BYTES", "FtpSettings", "FtpStorage", "from_settings"]


class FtpStorage(KnownDirectories, DirectoryListings, StatListings, SegmentedReads, ParallelWrites, Storage):
    """Backups in a directory of an FTP or FTPS server."""

    kind = "ftp"

    def __init__(self, settings: FtpSettings):
        self.settings = settings
        self.kind = "ftps" if settings.tls else "ftp"
        self._ftp: ftplib.FTP | None = None
        self._root: str | None = None
        self._known_dirs: set[str] = set()  # directories seen in a listing or made by this session
        # What this session already told the server, so a long link does not pay the round trip twice.
        self._binary_mode = False
        self._utf8_asked = False
        self._round_trip = 0.0  # seconds, measured at login: picks --ftp-connections auto
        self._pool = Pool(settings)
        self._sizes: dict[str, int] = {}  # what size() found, so get_stream knows a large file
        # Sizes a restore will ask for (expect_reads), sent with the next download's commands, and the
        # answers, each given once to size().
        self._size_questions: list[str] = []
        self._size_answers: dict[str, int] = {}
        self._segments: dict[str, list[str]] = {}  # the segment names of each path listed; [] for none
        self._offset_writes: bool | None = None  # whether the server writes at offsets (ftp_writes.py)
        self._stat_lists = True  # until the server answers STAT <dir> with something else than a listing
        self._mlsd_known = True  # until the server says it has no MLSD (vsftpd: 500): then NLST at once
        self._lender: Pool | None = None  # a sibling's: the session whose idle connections it may take

    def describe(self) -> str:
        s = self.settings
        return server_url(self.kind, s.username, s.where, s.container)

    # -- connection -------------------------------------------------------

    def _client(self) -> ftplib.FTP:
        if self._ftp is None:
            lent = self._lender.lend() if self._lender is not None else None
            self._ftp = lent or self._connect()  # a lent connection is logged in, in binary mode
            self._binary_mode, self._utf8_asked = True, False
        return self._ftp

    def _connect(self) -> ftplib.FTP:
        """Log in; a relative container is resolved against the login directory (PWD, sent with TYPE I)."""
        container = self.settings.container
        session = open_session(self.settings, ask_home=not container.startswith("/"))
        self._round_trip = session.round_trip
        self._root = container_root(container, session.home or "/")
        LOG.info("connected to %s", self.describe())
        return session.ftp

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
        self._pool.close()
        if self._ftp is not None:
            say_goodbye(self._ftp)
            self._ftp = None

    def reset(self) -> None:
        """Drop the connections; the next operation reconnects."""
        self._pool.drop()
        self._drop_session()
        self._known_dirs.clear()
        self._sizes.clear()
        self._size_answers.clear()
        self._segments.clear()

    def _drop_session(self) -> None:
        """Close the control connection (its replies may be out of step); the next command reconnects."""
        if self._ftp is not None:
            close_quietly(self._ftp)
            self._ftp = None

    # -- operations -------------------------------------------------------

    def _abs(self, path: str) -> str:
        if any(c in path for c in "\r\n\x00"):
            raise StorageError(f"path {path!r} cannot be sent over FTP")
        self._client()
        remote = posixpath.join(self._root, path)
        self._speak_utf8(remote)
        return remote

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Over several connections once the data spans two segments (only then is the server probed
        for offset writes: a small upload never pays that, over a second on vsftpd); else one STOR."""
        with self._pool.busy():
            return self._put(path, chunks)

    def _put(self, path: str, chunks: Iterable[bytes]) -> int:
        target = self._abs(path)
        self._sizes.pop(target, None)
        self._size_answers.pop(target, None)
        self._segments.pop(target, None)
        connections = self._connections()
        temp = temporary_name(target)  # the probe's file, if it makes one, is the upload's
        if connections > 1:
            # The first two segments are read while the workers (asked for by the backup's hint or
            # its claim) still log in: on a long link tar's start then costs no round trip.
            pieces = chunking.groups(chunks, segments.SEGMENT_SIZE)
            head = list(itertools.islice(pieces, 2))
            if len(head) < 2:
                held = [chunk for group in head for chunk in group]
                return self._put_held(target, temp, lambda: held)
            if workers := self._pool.take(connections):
                return self._put_parallel(target, temp, segments.handed_over(head, pieces), workers)
            rest = Untouched(chunk for part in pieces for chunk in part)  # the server took no more connections
            return self._put_held(target, temp, lambda: itertools.chain(*head, rest), lambda: not rest.started)
        return self._put_plain(target, chunks, temp)

    def _put_held(self, target: str, temp: str, chunks: Callable[[], Iterable[bytes]],
                  replayable: Callable[[], bool] = lambda: True) -> int:
        """Data read from the stream in part or whole (so the retry wrapper cannot replay it): one plain
        file of ``chunks()``, tried again here after a transient failure (a busy server) while
        ``replayable()`` (nothing more was read), for up to HELD_PATIENCE s."""
        started, pause = time.monotonic(), 1.0
        while True:
            try:
                return self._put_plain(target, chunks(), temp)
            except StorageError as exc:
                if not exc.transient or not replayable() or time.monotonic() - started + pause > HELD_PATIENCE:
                    raise
                LOG.warning("upload %s: %s; retrying in %.1fs", target, exc, pause)
                self.reset()
                time.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, 15.0)

    def _put_plain(self, target: str, chunks: Iterable[bytes], temp: str) -> int:
        """One STOR to ``temp`` (the directories it needs made in the same write), checked and renamed
        to ``target``."""
        missing = self._unknown_part(posixpath.dirname(target))
        return self._commit(target, temp, lambda: self._store(temp, chunks, missing), checked=True)

    def _commit(self, target: str, temp: str, write: Callable[[], int], checked: bool = False) -> int:
        """``write`` the data to ``temp``, check its size (unless ``write`` did: ``checked``) and rename it
        to ``target``; ``temp`` goes on any failure."""
        try:
            written = write()
            if not checked:
                self._check_stored(temp, written)
            self._rename(temp, target)
        except BaseException as exc:
            self._discard(temp)
            raise self._translate(exc, f"upload {target}") from exc
        return written

    def _connections(self) -> int:
        self._client()
        return connections_for(self.settings.connections, self._round_trip)

    def _growth(self, segment: int) -> Growth | None:
        """Under auto, a transfer over several connections (of ``segment`` bytes each) takes more while
        they make it faster."""
        if self.settings.connections:
            return None
        return Growth(self._pool.take, self._round_trip, segment)

    def _check_stored(self, remote: str, written: int, stored: int | None = None) -> None:
        """The server holds every byte sent (asked now unless ``stored`` is known): a server that loses
        some quietly fails the upload."""
        stored = self._binary().size(remote) if stored is None else stored
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

    def _store(self, remote: str, chunks: Iterable[bytes], make: Sequence[str] = ()) -> int:
        """STOR ``chunks``, after MKD of each of ``make`` in the same write, and check the size stored
        (SIZE sent as the data ends: no round trip of its own); a small upload in memory is sent
        without waiting for the server's 150 (plain FTP)."""
        ftp = self._binary()
        early = (not self.settings.tls and ftp.passiveserver and isinstance(chunks, list)
                 and sum(map(len, chunks)) <= EARLY_BYTES)
        made: list[str] = []
        try:
            conn = start_transfer(ftp, f"STOR {remote}", mark=not early, first=[f"MKD {d}" for d in make],
                                  replies=made)
            written = send_upload(ftp, conn, chunks, SOCKET_BUFFER)
            stored = stored_size(ftp, remote, written, marked=not early)
        except ftplib.error_perm as exc:
            raise busy_reply(made) or exc  # a directory not made for now: the upload is worth a retry
        for directory in make:
            self._know_dir(directory)
        self._check_stored(remote, written, stored)
        return written

    def _rename(self, source: str, target: str) -> None:
        ftp = self._client()
        try:
            rename(ftp, source, target)
        except ftplib.error_perm:
            # Some servers refuse RNTO onto an existing file: remove it, then rename.
            ftp.delete(target)
            rename(ftp, source, target)

    def _discard(self, remote: str, tree: bool = False) -> None:
        """Best-effort removal of a partial upload, on a fresh connection if needed."""
        try:
            self.reset()
            self._rmtree(remote) if tree else self._client().delete(remote)
        except (*ftplib.all_errors, EOFError, StorageError):
            LOG.debug("could not remove partial upload %s", remote)

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        with self._pool.busy():
            yield from self._get(path, offset)

    def _get(self, path: str, offset: int) -> Iterator[bytes]:
        remote = self._abs(path)
        connections = self._connections()
        ranges = self._parallel_ranges(remote, offset, connections)
        if ranges is None:
            try:
                yield from self._get_plain(remote, offset)
                return
            except NotFound:
                if not (ranges := self._segment_ranges(remote, offset)):
                    raise
        if not (workers := self._pool.take(connections)):  # the server takes no more: this connection alone
            plain = ranges[0][0] == remote
            for name, start, _ in [(remote, offset, None)] if plain else ranges:
                yield from self._get_plain(name, start)
            return
        try:
            yield from segments.fetch(workers, ranges, self.settings, self._growth(segments.RANGE_SIZE))
        except GeneratorExit:
            self._pool.drop()  # their transfers still run
            raise
        except BaseException as exc:
            raise self._translate(exc, f"download {remote}") from exc

    def _get_plain(self, remote: str, offset: int) -> Iterator[bytes]:
        asked, self._size_questions = self._size_questions, []
        answers: list[str] = []
        try:
            ftp = self._binary()
            conn = start_transfer(ftp, f"RETR {remote}", rest=offset or None,
                                  first=[f"SIZE {path}" for path in asked], replies=answers)
        except BaseException as exc:
            raise self._translate(exc, f"download {remote}", missing=True) from exc
        finally:
            self._size_answers.update(sizes_answered(asked, answers))
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            yield from segments.received_blocks(conn, BLOCK_SIZE)
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

    def rmtree(self, path: str) -> None:
        self._rmtree(self._abs(path))

    def _rmtree(self, remote: str) -> None:
        self._sizes.clear()
        self._size_answers.clear()
        self._segments.clear()
        for name, kind in self._entries(remote):
            ftp = self._client()
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
            self._client().rmd(remote)
        except ftplib.error_perm as exc:
            if self._is_dir(remote):
                raise self._translate(exc, f"remove {remote}") from exc
        self._known_dirs = {d for d in self._known_dirs if not (d == remote or d.startswith(remote + "/"))}

    def size(self, path: str) -> int:
        remote = self._abs(path)
        try:
            result = self._size_answers.pop(remote, None)
            if result is None:
                result = self._binary().size(remote)
        except ftplib.error_perm as exc:
            if not (names := self._segment_names(remote)):
                raise self._translate(exc, f"size of {remote}", missing=True) from exc
            last = int(max(names))  # segments are named by offset: the last one's size ends the data
            result = last + self._binary().size(segments.segment_name(remote, last))
        except BaseException as exc:
            raise self._translate(exc, f"size of {remote}", missing=True) from exc
        if result is None:
            raise StorageError(f"{self.settings.where} did not report the size of {remote}")
        self._sizes[remote] = result
        if self._connections() > 1 and (result >= 2 * segments.RANGE_SIZE or self._segments.get(remote)):
            self._pool.warm(self._connections())  # a restore reads it next
        return result

    def expect_reads(self, paths: Sequence[str] = ()) -> None:
        """On a long link the extra connections log in while the restore lists and reads its metadata;
        the sizes of ``paths`` are asked in the same write as the next download (a round trip each
        saved). The first connection is made here: its failure is the restore's first, retried as any."""
        self._size_questions = [self._abs(path) for path in paths[:SIZE_QUESTIONS]]
        self._warm()

    def expect_writes(self) -> None:
        """On a long link the extra connections log in while the backup lists its chain and claims a slot.
        The first connection is made here: its failure is the backup's first, retried as any."""
        self._warm()

    def _warm(self) -> None:
        if self._connections() > 1:
            self._pool.warm(self._connections())

    def sibling(self) -> FtpStorage | None:
        """On a long link, a one-connection session beside this one, on an idle extra connection of this
        one taken now or at its first command (none while a transfer runs), else its own login. On a
        LAN None: a round trip there costs less than a thread."""
        if self._connections() <= 1:
            return None
        twin = FtpStorage(dataclasses.replace(self.settings, connections=1))
        twin._lender, twin._root, twin._known_dirs = self._pool, self._root, set(self._known_dirs)
        if (lent := self._pool.lend()) is not None:
            twin._ftp, twin._binary_mode = lent, True  # logged in with TYPE I
        return twin

    def claim(self, path: str) -> bool:
        remote = self._abs(path)
        if self._connections() > 1:
            self._pool.warm(self._connections())  # a backup: its data follows
        try:
            return self._claim_dir(remote)
        except BaseException as exc:
            raise self._translate(exc, f"create {remote}") from exc

    # -- errors -----------------------------------------------------------

    def _translate(self, exc: BaseException, action: str, missing: bool = False) -> BaseException:
        return translate(exc, action, self.settings, missing)


def from_settings(settings: FtpSettings) -> FtpStorage:
    """``--storage ftp`` or ``ftps``: the bare driver (freezer/storage/registry.py adds retries)."""
    return FtpStorage(settings)
