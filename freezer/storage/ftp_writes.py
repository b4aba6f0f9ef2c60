"""Which layout a parallel FTP upload gets: in place where the server writes at offsets, together.

A server that takes ``REST`` n + ``STOR`` beyond a file's end (vsftpd) gets the segments written
into the one temporary file: upstream's layout. One that refuses (pyftpdlib) gets one connection
under ``--ftp-connections auto``, and a segment directory only when a number was given. So does,
under ``auto`` only, one that lets a file have one writer at a time (vsftpd's default
``lock_upload_files=YES``): its segments would arrive in turn, slower than one stream. The answer
comes once per session, never from the server's banner: under auto, from the first parallel
upload's own first segments (freezer/storage/ftp_opening.py); with a number, from a probe before it
(REST 1 + STOR of the temporary name, and a second writer), as its route depends on the answer.
"""

from __future__ import annotations

import ftplib
import logging
import posixpath
import ssl
from collections.abc import Callable, Iterable

from freezer.errors import StorageError
from freezer.storage import ftp_segments as segments
from freezer.storage.base import temporary_name
from freezer.storage.ftp_client import FtpSettings, close_quietly
from freezer.storage.ftp_opening import OffsetWrites, upload_opening
from freezer.storage.ftp_parallel import Worker
from freezer.storage.ftp_session import finish_upload, protected, read_mark, start_transfer
from freezer.storage.growth import Growth

LOG = logging.getLogger("freezer.storage.ftp")


def probe_offset_writes(ftp: ftplib.FTP, second_writer: Callable[[], ftplib.FTP | None], remote: str,
                        patience: float) -> tuple[OffsetWrites, bool]:
    """REST 1 and STOR of ``remote`` (a new temporary name) held open on ``ftp`` while another
    connection (``second_writer()``, asked for once the first holds the file) asks for REST 2 and
    STOR of it too: its 150 within ``patience`` seconds means writers work together. Returns the
    verdict and whether the second connection is still in step (else the caller drops it).

    A refusal (pyftpdlib: 550 on a new file) is REFUSED; what the server creates is truncated by the
    upload's first STOR. A refused REST leaves a reply unread: the connection is closed, the
    caller reconnects.
    """
    try:
        held = start_transfer(ftp, f"STOR {remote}", rest=1)
    except ftplib.error_perm:
        return OffsetWrites.REFUSED, True
    except ftplib.error_reply:
        close_quietly(ftp)
        raise
    try:
        other = second_writer()
    except BaseException:
        finish_upload(ftp, held)
        raise
    if other is None:  # no second connection to try (the server took no more): none to write together
        finish_upload(ftp, held)
        return OffsetWrites.IN_TURN, True
    second, together = None, False
    try:
        second = start_transfer(other, f"STOR {remote}", rest=2, mark=False)
        together = other.reply_within(patience)
    except (ftplib.Error, OSError, EOFError) as exc:
        LOG.debug("probe: the second writer failed: %s", exc)
    finish_upload(ftp, held)  # a server that kept the second writer waiting lets it in now
    in_step = second is not None and _empty_upload_ends(other, second)
    return (OffsetWrites.TOGETHER if together and in_step else OffsetWrites.IN_TURN), in_step


def _empty_upload_ends(ftp: ftplib.FTP, conn) -> bool:
    """End an upload started without its mark, sending nothing; whether the server answered as expected."""
    try:
        if read_mark(ftp):
            conn = protected(ftp, conn)
            if isinstance(conn, ssl.SSLSocket):
                conn.unwrap()
            conn.close()
            ftp.voidresp()
        return True
    except (ftplib.Error, OSError, EOFError) as exc:
        LOG.debug("probe: the second writer failed: %s", exc)
        return False
    finally:
        conn.close()


class ParallelWrites:
    """Mixin of the FTP driver: data of more than one segment uploaded over several connections.

    The driver provides ``settings``, ``_ftp``, ``_drop_session``, ``_binary``, ``_makedirs``, ``_put_plain``,
    ``_check_stored``, ``_rename``, ``_discard``, ``_translate`` and ``_growth``.
    """

    settings: FtpSettings
    _offset_writes: OffsetWrites | None  # the probe's answer, kept for the session
    _round_trip: float
    _growth: Callable[[int], Growth | None]

    def _put_parallel(self, target: str, temp: str, pieces: Iterable[list[bytes]], workers: list[Worker]) -> int:
        """In place where the server allows it; else one connection (auto) or a segment directory (N).

        ``temp`` is the upload's temporary name, which the probe may already have created.
        """
        self._makedirs(posixpath.dirname(target))
        in_order = (chunk for part in pieces for chunk in part)  # for a plain STOR; nothing read until then
        probing = self._offset_writes is None
        auto = self.settings.connections == 0
        if probing and auto and len(workers) > 1 and not self.settings.active:  # active mode: no early STOR
            return self._put_opening(target, temp, pieces, workers)
        try:
            verdict = self._writes_at_offsets(temp, lambda: workers[0] if workers else None)
        except StorageError as exc:
            if not exc.transient:
                raise
            # The data is read already, so the retry wrapper could not send it again: one plain STOR.
            LOG.warning("%s: the offset-write probe failed (%s); this upload goes over one connection",
                        self.settings.where, exc)
            self._drop_session()
            return self._put_plain(target, in_order, temp)
        if verdict is OffsetWrites.TOGETHER or (verdict is OffsetWrites.IN_TURN and not auto):
            return self._put_in_place(target, temp, pieces, workers)
        if auto:
            return self._put_plain(target, in_order, temp)
        if probing:
            self._forget(temp)  # the segments go to a name of their own: what the refused probe made goes
        return self._put_segments(target, temporary_name(target), pieces, workers)

    def _writes_at_offsets(self, temp: str, second: Callable[[], Worker | None]) -> OffsetWrites:
        """The probe's answer, asked once per session; ``second()`` gives the connection it tries as a second writer."""
        if self._offset_writes is None:
            patience = self._patience()
            used: list[Worker] = []

            def second_writer() -> ftplib.FTP | None:
                worker = second()
                used.extend([worker] if worker else [])
                return worker.client() if worker else None

            try:
                self._offset_writes, in_step = probe_offset_writes(self._binary(), second_writer, temp, patience)
            except ftplib.error_reply:
                self._offset_writes, self._ftp, in_step = OffsetWrites.REFUSED, None, True
            except BaseException as exc:
                for worker in used:
                    worker.drop()
                raise self._translate(exc, f"upload {temp}") from exc
            for worker in used if not in_step else []:
                worker.drop()
            LOG.info("%s %s: a parallel upload goes %s", self.settings.where, self._offset_writes.value,
                     _route(self._offset_writes, self.settings.connections))
        return self._offset_writes

    def _patience(self) -> float:
        """Seconds a second writer's 150 may take (about a round trip after its connect) before a lock is presumed."""
        return 3 * self._round_trip + 0.5

    def _put_opening(self, target: str, temp: str, pieces: Iterable[list[bytes]], workers: list[Worker]) -> int:
        """The session's first parallel upload under auto: its own first segments probe the server (ftp_opening.py)."""
        def write() -> int:
            verdict, written = upload_opening(workers, temp, iter(pieces), self.settings, self._patience(),
                                              lambda: self._growth(segments.SEGMENT_SIZE))
            if verdict is None:
                LOG.info("%s gave no answer on offset writes: this upload went over one connection",
                         self.settings.where)
            else:
                self._offset_writes = verdict
                LOG.info("%s %s: a parallel upload goes %s", self.settings.where, verdict.value, _route(verdict, 0))
            return written

        return self._commit(target, temp, write)

    def _forget(self, temp: str) -> None:
        """Remove what a refused probe may have created (pyftpdlib creates nothing). Elsewhere the
        upload's own STOR of ``temp`` truncates it, and a failed upload discards it: no round trip."""
        try:
            self._binary().delete(temp)
        except ftplib.all_errors:
            pass

    def _put_in_place(self, target: str, temp: str, pieces: Iterable[list[bytes]], workers: list[Worker]) -> int:
        """Every segment written at its offset in the one temporary file, then the usual rename."""
        growth = self._growth(segments.SEGMENT_SIZE)
        return self._commit(target, temp, lambda: segments.store_in_place(workers, temp, pieces, self.settings, growth))

    def _put_segments(self, target: str, temp: str, pieces: Iterable[list[bytes]], workers: list[Worker]) -> int:
        """A directory of segment files, uploaded in parallel (not readable by upstream freezer)."""
        try:
            self._binary().mkd(temp)
            written = segments.store_segments(workers, temp, pieces, self.settings)
            self._rename(temp, target)
        except BaseException as exc:
            self._discard(temp, tree=True)
            raise self._translate(exc, f"upload {target}") from exc
        return written


def _route(verdict: OffsetWrites, connections: int) -> str:
    if verdict is OffsetWrites.TOGETHER or (verdict is OffsetWrites.IN_TURN and connections):
        return "in place, into the one file"
    if not connections:
        return "over one connection (--ftp-connections auto)"
    return "as a directory of segments (--ftp-connections N on a server that refuses offset writes)"
