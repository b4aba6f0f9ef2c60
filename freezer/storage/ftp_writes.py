"""Which layout a parallel FTP upload gets: in place where the server writes at offsets.

A server that takes ``REST`` n + ``STOR`` beyond a file's end (vsftpd) gets the segments written
into the one temporary file: upstream's layout. One that refuses (pyftpdlib) gets one connection
under ``--ftp-connections auto``, and a segment directory only when a number was given. The
answer comes from one probe per session, never from the server's banner.
"""

from __future__ import annotations

import ftplib
import logging
import posixpath
from collections.abc import Iterable

from freezer.storage import ftp_segments as segments
from freezer.storage.base import temporary_name
from freezer.storage.ftp_client import FtpSettings, close_quietly
from freezer.storage.ftp_parallel import Worker
from freezer.storage.ftp_session import finish_upload, start_transfer

LOG = logging.getLogger("freezer.storage.ftp")


def accepts_offset_writes(ftp: ftplib.FTP, remote: str) -> bool:
    """Whether the server writes ``remote`` (a new temporary name) from byte 1: REST 1 and an empty STOR.

    A refusal (pyftpdlib: 550 on a new file) is a no; what the server creates is truncated by the
    upload's first STOR. A refused REST leaves a reply unread: the connection is closed, the caller reconnects.
    """
    try:
        conn = start_transfer(ftp, f"STOR {remote}", rest=1)
    except ftplib.error_perm:
        return False
    except ftplib.error_reply:
        close_quietly(ftp)
        raise
    finish_upload(ftp, conn)
    return True


class ParallelWrites:
    """Mixin of the FTP driver: data of more than one segment uploaded over several connections.

    The driver provides ``settings``, ``_ftp``, ``_binary``, ``_makedirs``, ``_put_plain``,
    ``_check_stored``, ``_rename``, ``_discard`` and ``_translate``.
    """

    settings: FtpSettings
    _offset_writes: bool | None  # the probe's answer, kept for the session

    def _put_parallel(self, target: str, temp: str, pieces: Iterable[list[bytes]], workers: list[Worker]) -> int:
        """In place where the server allows it; else one connection (auto) or a segment directory (N).

        ``temp`` is the upload's temporary name, which the probe may already have created.
        """
        self._makedirs(posixpath.dirname(target))
        if self._writes_at_offsets(temp):
            return self._put_in_place(target, temp, pieces, workers)
        if self.settings.connections == 0:
            return self._put_plain(target, (chunk for part in pieces for chunk in part), temp)
        return self._put_segments(target, temporary_name(target), pieces, workers)

    def _writes_at_offsets(self, temp: str) -> bool:
        if self._offset_writes is None:
            try:
                self._offset_writes = accepts_offset_writes(self._binary(), temp)
            except ftplib.error_reply:
                self._offset_writes, self._ftp = False, None
            except BaseException as exc:
                raise self._translate(exc, f"upload {temp}") from exc
            if not self._offset_writes and self._ftp is not None:
                self._forget(temp)
            LOG.info("%s %s writes at an offset: parallel uploads go %s", self.settings.where,
                     "accepts" if self._offset_writes else "refuses",
                     "in place" if self._offset_writes else "over one connection, or as segments if a number was given")
        return self._offset_writes

    def _forget(self, temp: str) -> None:
        """Remove what a refused probe may have created (pyftpdlib creates nothing)."""
        try:
            self._ftp.delete(temp)
        except ftplib.all_errors:
            pass

    def _put_in_place(self, target: str, temp: str, pieces: Iterable[list[bytes]], workers: list[Worker]) -> int:
        """Every segment written at its offset in the one temporary file, then the usual rename."""
        return self._commit(target, temp, lambda: segments.store_in_place(workers, temp, pieces, self.settings))

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
