"""One SFTP upload, striped once long, that goes on after a cut connection instead of failing.

Every handle the upload writes through (a lane) keeps the chunks the server has not confirmed yet:
paramiko reads the replies to pipelined writes in order, so the oldest are let go as replies come.
After a cut the upload reopens its temporary file on a fresh connection, without truncating it,
writes those chunks again at their offsets and goes on, at most RESUMES times per upload.
Memory: each lane holds what is in flight on it, about 101 requests (paramiko's reply threshold).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable

import paramiko

from freezer.errors import StorageError
from freezer.storage import paramiko_adapter, sftp_requests
from freezer.storage.sftp_requests import close_quietly
from freezer.storage.sftp_stripes import OPEN_CHANNELS_AFTER, STRIPE_AFTER, ExtraChannels, OpenAgain, is_open

LOG = logging.getLogger(__name__)
RESUMES = 3  # cuts one upload goes on after; the next one fails it
PAUSE = 1.0  # seconds before the first resume; one more for each further one
LINK_ERRORS = (OSError, EOFError, paramiko.SSHException, StorageError)
Chunk = tuple[int, bytes]  # (offset in the file, the bytes)
Reopen = Callable[[], "tuple[paramiko.SFTPFile, ExtraChannels | None]"]  # a fresh connection: the file, its channels


class Journal:
    """Chunks written through one handle that the server may not have confirmed yet, oldest first."""

    def __init__(self) -> None:
        self.chunks: collections.deque[Chunk] = collections.deque()
        self.held = 0

    def add(self, offset: int, chunk: bytes) -> None:
        self.chunks.append((offset, chunk))
        self.held += len(chunk)

    def forget_confirmed(self, handle: paramiko.SFTPFile) -> None:
        """Let go of the oldest chunks, as far as the handle's unconfirmed bytes allow."""
        pending = paramiko_adapter.unconfirmed_bytes(handle)
        while self.chunks and self.held - len(self.chunks[0][1]) >= pending:
            self.held -= len(self.chunks.popleft()[1])


class Lane:
    """One handle the upload writes through: in the caller's thread, or (striped) in a thread of its own."""

    def __init__(self, handle: paramiko.SFTPFile):
        self.handle = handle
        self.journal = Journal()
        self.error: BaseException | None = None
        self.queue: queue.Queue | None = None
        self.thread: threading.Thread | None = None
        self.closed = False

    def start_thread(self) -> Lane:
        self.queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._run, name="sftp-stripe", daemon=True)
        self.thread.start()
        return self

    def put(self, offset: int, chunk: bytes) -> None:
        """Write ``chunk`` at ``offset``, or hand it to the lane's thread; raise what failed the lane."""
        if self.queue is not None:
            self.queue.put((offset, chunk))
        else:
            self._write(offset, chunk)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Back to the caller's thread, once the lane's thread has taken every chunk handed to it."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
        self.queue = self.thread = None

    def close(self) -> None:
        """Stop, then close the handle with its writes confirmed, in one round trip; raise what failed."""
        self.stop()
        if self.error is None and not self.closed:
            try:
                sftp_requests.close_after_writes(self.handle)
                self.journal, self.closed = Journal(), True
            except BaseException as exc:
                self.error = exc
        if self.error is not None:
            raise self.error

    def _write(self, offset: int, chunk: bytes) -> None:
        self.journal.add(offset, chunk)
        if self.error is not None:
            return  # not sent: it goes again with the rest after the cut
        try:
            if self.handle.tell() != offset:
                self.handle.seek(offset)
            self.handle.write(chunk)
            self.journal.forget_confirmed(self.handle)
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            self._write(*item)


def was_cut(error: BaseException, handle: paramiko.SFTPFile | None) -> bool:
    """Whether ``error`` came from a lost connection (worth reconnecting for), not from the server's refusal."""
    if isinstance(error, StorageError):
        return error.transient
    if isinstance(error, (EOFError, paramiko.SSHException)):
        return True
    return isinstance(error, OSError) and (handle is None or not is_open(handle.sftp))


class Upload:
    """The chunks of one file, through its first handle, then striped over extra channels once long."""

    def __init__(self, first: paramiko.SFTPFile, path: str, channels: ExtraChannels | None, open_again: OpenAgain,
                 reopen: Reopen):
        self.path, self.channels, self.open_again, self.reopen = path, channels, open_again, reopen
        self.lanes = [Lane(first)]
        self.written = self.count = self.resumes = 0
        self.carried: list[Chunk] = []  # to send again after a cut, once a connection is back

    def write(self, chunk: bytes) -> None:
        offset = self.written
        self.written += len(chunk)
        if len(self.lanes) == 1:
            self._stripe_when_long(offset)
        lane = self.lanes[self.count % len(self.lanes)]
        self.count += 1
        try:
            lane.put(offset, chunk)
        except LINK_ERRORS as exc:
            self._recover(exc)

    def close(self) -> int | None:
        """Confirm every write, then size and close the file in one round trip: the server's size."""
        while True:
            first = self.lanes[0]
            try:
                for lane in self.lanes:
                    lane.stop()
                for lane in self.lanes[1:]:
                    lane.close()
                self.lanes = [first]
                if first.error is not None:
                    raise first.error
            except LINK_ERRORS as exc:
                self._recover(exc)
                continue
            try:
                return sftp_requests.size_and_close(first.handle)
            except LINK_ERRORS as exc:
                first.error = exc
                self._recover(exc)

    def abandon(self) -> None:
        """Stop every lane and close every handle, after a failure."""
        for lane in self.lanes:
            lane.stop()
            close_quietly(lane.handle)

    def _stripe_when_long(self, offset: int) -> None:
        if (channels := self.channels) is None:
            return
        if offset >= OPEN_CHANNELS_AFTER:
            channels.open_early()
        if offset >= STRIPE_AFTER and not channels.refused and (more := channels.handles(self.path, self.open_again)):
            self.lanes = [lane.start_thread() for lane in self.lanes + [Lane(handle) for handle in more]]

    def _recover(self, error: BaseException) -> None:
        """Send again what the failed lanes may have lost, over a fresh connection if the first one went."""
        while True:
            self._take_lost(error)
            self.resumes += 1
            if self.resumes > RESUMES:
                raise error
            pause = PAUSE * self.resumes
            LOG.warning("upload %s: connection lost (%s); retrying in %.1fs, resending the %d bytes not yet "
                        "confirmed (attempt %d)", self.path, str(error) or type(error).__name__, pause,
                        sum(len(chunk) for _, chunk in self.carried), self.resumes + 1)
            time.sleep(pause)
            try:
                self._resend()
                return
            except LINK_ERRORS as exc:
                error = exc

    def _take_lost(self, error: BaseException) -> None:
        """Stop every lane, close the healthy extra ones, and carry what the failed ones held; raise a refusal."""
        for lane in self.lanes:
            lane.stop()
        for lane in self.lanes[1:]:
            if lane.error is None:
                try:
                    lane.close()
                except LINK_ERRORS:
                    pass
        failed = [lane for lane in self.lanes if lane.error is not None]
        for lane in failed:
            if not was_cut(lane.error, lane.handle):
                raise lane.error
        if not failed and (self.lanes or not was_cut(error, None)):
            raise error
        lost = dict(self.carried)
        for lane in failed:
            lost.update(lane.journal.chunks)
            close_quietly(lane.handle)
        self.lanes = [lane for lane in self.lanes[:1] if lane.error is None]
        self.carried = sorted(lost.items())

    def _resend(self) -> None:
        if not self.lanes:
            handle, self.channels = self.reopen()
            self.lanes = [Lane(handle)]
        lane = self.lanes[0]
        for index, chunk in enumerate(self.carried):
            try:
                lane.put(*chunk)
            except LINK_ERRORS:
                self.carried = self.carried[index:]
                raise
        self.carried = []


def write_chunks(first: paramiko.SFTPFile, chunks: Iterable[bytes], path: str, channels: ExtraChannels | None,
                 open_again: OpenAgain, reopen: Reopen) -> tuple[int, int | None]:
    """Send every chunk, then size and close the file: (bytes written, the server's size or None)."""
    upload = Upload(first, path, channels, open_again, reopen)
    try:
        for chunk in chunks:
            upload.write(chunk)
        return upload.written, upload.close()
    except BaseException:
        upload.abandon()
        raise
