"""One level's data over several FTP connections: segments written up, ranges or segments read down.

Where the server writes at an offset (vsftpd does, as a sparse write; pyftpdlib refuses: 554 beyond
the current size, 550 on a new file), the segments are written *in place* into the one temporary
file (REST offset, STOR), so the stored layout is upstream's single file. Elsewhere an explicit
``--ftp-connections N`` stores the data as a *directory* of the same name, holding segment files
named by their byte offset (16 digits), uploaded into a temporary directory renamed into place at
the end (freezer/storage/ftp_writes.py picks). Downloads read a plain file in ranges (REST, RETR,
then ABOR once the range is in) and a directory segment by segment. See doc/source/ftp.rst.
"""
from __future__ import annotations

import functools
import logging
import mmap
import posixpath
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from freezer.errors import StorageError
from freezer.storage.ftp_client import FtpSettings
from freezer.storage.ftp_errors import server_reason, translate
from freezer.storage.ftp_parallel import InOrder, Worker
from freezer.storage.ftp_session import finish_download, finish_upload, refusal_of, sent_early, start_transfer
from freezer.storage.growth import Growth
from freezer.storage.read_ahead import Abandoned, ReadAhead

LOG = logging.getLogger("freezer.storage.ftp")
T = TypeVar("T")
# Bytes of an upload's segment, each held until stored (a cut one is sent again): 16 MiB keeps
# eight connections' uploads under 200 MiB at the speed of 32 MiB, except 3% at 200 ms.
SEGMENT_SIZE = 16 << 20
# Bytes of a download's range: each costs ~3 round trips, and reading one in 16 MiB was 5-7% slower.
RANGE_SIZE = 32 << 20
SEGMENT_ATTEMPTS = 3  # tries of one segment, each on a fresh connection, before the transfer fails
SOCKET_BUFFER = 4 << 20
READ_SIZE = 1 << 20
# Bytes of ranges a download may hold before handing them on: a range receives while it and those
# before it hold less than READ_AHEAD, and all of them less than READ_AHEAD_CAP, however many
# connections read (peak RSS: doc/source/ftp.rst).
READ_AHEAD = 3 * RANGE_SIZE
READ_AHEAD_CAP = 4 * RANGE_SIZE


def segment_name(directory: str, offset: int) -> str:
    return posixpath.join(directory, f"{offset:016d}")


def placed(parts: Iterable[list[bytes]], start: int = 0) -> Iterator[tuple[int, list[bytes], int]]:
    """Each part with its byte offset in the data (the first at ``start``) and its size."""
    offset = start
    for part in parts:
        size = sum(len(chunk) for chunk in part)
        yield offset, part, size
        offset += size


def store_segments(workers: list[Worker], directory: str, parts: Iterable[list[bytes]], settings: FtpSettings) -> int:
    """Upload ``parts`` as segment files of ``directory``, ``len(workers)`` at a time; bytes written.

    Each segment's stored size is asked for with the worker's next transfer (SIZE sent with its PASV
    and STOR), and at the end for the last one of each worker, all at once.
    """
    def run(worker: Worker, job: tuple[int, list[bytes], int]) -> int:
        offset, pieces, size = job
        name = segment_name(directory, offset)
        return attempts(worker, settings, f"upload {name}", lambda ftp: _store_one(worker, ftp, name, pieces, size))

    for worker in workers:
        worker.unchecked = None
    written = sum(InOrder(placed(parts), workers, run, ahead=len(workers), held_until_done=True))
    _check_last(workers)
    return written


def store_in_place(workers: list[Worker], remote: str, parts: Iterable[list[bytes]], settings: FtpSettings,
                   growth: Growth | None = None, start: int = 0,
                   late: list[tuple[Worker, Callable[[], float]]] | None = None) -> int:
    """Upload ``parts`` into the one file ``remote``, each at its offset, ``len(workers)`` at a time.

    The first part goes by a plain STOR, which truncates the file: the others (REST offset + STOR)
    wait until the server has opened it (its 150), not until it is written. Once they may have
    written, the first part is not tried again (a second STOR would truncate them). The caller
    checks the total size, which is the only check a file written at offsets allows. With ``growth``
    (auto), more workers may join while it runs. From ``start`` > 0 the file is open already (an
    opening wrote the parts before it: ftp_opening.py), and its ``late`` workers join when free.
    """
    opened = threading.Event()
    if start:
        opened.set()
    for worker in workers:
        worker.unchecked = None

    def run(worker: Worker, job: tuple[int, list[bytes], int]) -> int:
        offset, pieces, size = job
        if not offset:
            try:
                return attempts(worker, settings, f"upload {remote}",
                                 lambda ftp: _store_one(worker, ftp, remote, pieces, size, 0, opened.set),
                                 may_retry=lambda: not opened.is_set())
            finally:
                opened.set()  # a failure fails the transfer: the others need not wait for it
        opened.wait()
        return store_at(worker, remote, pieces, offset, settings)

    jobs = InOrder(placed(parts, start), workers, run, ahead=len(workers), held_until_done=True, growth=growth,
                   late=late)
    written = sum(jobs)
    for worker in jobs.workers:
        worker.unchecked = None  # the size of a file written at offsets tells nothing per part
    return written


def store_at(worker: Worker, remote: str, pieces: list[bytes], offset: int, settings: FtpSettings) -> int:
    """``pieces`` written into the open file ``remote`` from ``offset`` (REST, STOR), with retries."""
    size = sum(map(len, pieces))
    return attempts(worker, settings, f"upload {remote} at {offset}",
                    lambda ftp: _store_one(worker, ftp, remote, pieces, size, offset))


def _store_one(worker: Worker, ftp, name: str, pieces: list[bytes], size: int, offset: int | None = None,
               on_open: Callable[[], None] | None = None) -> int:
    """One segment: a file of its own, or (``offset`` given) the bytes of ``name`` from ``offset`` on.

    ``on_open`` is called once the server has opened the file for it.
    """
    started = time.monotonic()
    unchecked = worker.unchecked
    replies: list[str] = []
    early = on_open is None and ftp.passiveserver and not getattr(ftp, "_prot_p", False)  # the opening's waits
    conn = start_transfer(ftp, f"STOR {name}", rest=offset or None,
                          first=[f"SIZE {unchecked[0]}"] if unchecked else [], replies=replies, mark=not early)
    if on_open:
        on_open()
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        for piece in sent_early(ftp, conn, name, iter(pieces)) if early else pieces:
            conn.sendall(piece)
    except OSError as exc:
        conn.close()
        raise (server_reason(ftp) if early else None) or exc  # a refusal that cut the early bytes says why
    except BaseException:
        conn.close()
        raise
    finish_upload(ftp, conn)
    if unchecked:
        _check_size(replies[0], *unchecked)
    worker.unchecked = (name, size, True) if offset is None else (name, offset + size, False)
    LOG.debug("segment %s at %s: %d bytes up in %.2f s", name, offset or 0, size, time.monotonic() - started)
    return size


def _check_size(reply: str, name: str, size: int, exact: bool) -> None:
    """A SIZE reply against the bytes sent (``exact``) or the end they reach: a server that lost some fails."""
    if error := refusal_of(reply):
        raise error
    stored = int(reply[3:].strip()) if reply.startswith("213") else None
    if stored is not None and (stored != size if exact else stored < size):
        raise StorageError(f"the server stored {stored} of the {size} bytes sent to {name} (is its disk full?)")


def _check_last(workers: list[Worker]) -> None:
    """The last segment of each worker checked, every SIZE at the same time."""
    errors: list[BaseException] = []

    def check(worker: Worker) -> None:
        try:
            ftp = worker.client()
            ftp.putcmd(f"SIZE {worker.unchecked[0]}")
            _check_size(ftp.getmultiline(), *worker.unchecked)
            worker.unchecked = None
        except BaseException as exc:  # raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(w,), daemon=True) for w in workers if w.unchecked]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def fetch(workers: list[Worker], ranges: list[tuple[str, int, int | None]], settings: FtpSettings,
          growth: Growth | None = None) -> Iterator[bytes]:
    """The bytes of ``ranges`` (path, start, length or None for up to the end), read in parallel, in order.

    The range next in line is handed on as it arrives; the ranges after it hold at most
    READ_AHEAD_CAP (and a receive's worth each), whatever the number of connections. A range
    cut short is read again from the byte it reached. No copy of a range is ever made.
    """
    ahead = ReadAhead(READ_AHEAD, READ_AHEAD_CAP)

    def run(worker: Worker, job: tuple[int, tuple[str, int, int | None]]) -> None:
        part, (remote, start, length) = job

        def one_attempt(ftp) -> None:
            done = ahead.delivered(part)
            if length is not None and done >= length:
                return  # all in: what failed was the server's last reply
            _fetch_one(ftp, remote, start + done, None if length is None else length - done,
                       ahead.pacer(part), functools.partial(ahead.deliver, part))

        try:
            attempts(worker, settings, f"download {remote}", one_attempt)
        except Abandoned:
            return  # the consumer raises the failure that ended the download, not this
        except BaseException as exc:
            ahead.fail(exc)
            raise
        ahead.end(part)

    jobs = InOrder(enumerate(ranges), workers, run, ahead=len(workers), growth=growth)
    jobs.start()  # the first range is handed on as it arrives, before InOrder has a result
    ran = iter(jobs)
    try:
        for part in range(len(ranges)):
            yield from ahead.taken(part)
            next(ran)  # the part has run: its worker may take another
    finally:
        jobs.stop()  # first: no worker takes a range that would not be paced
        ahead.stop()


def _fetch_one(ftp, remote: str, start: int, length: int | None, pace: Callable[[int], None],
               deliver: Callable[[memoryview], None]) -> None:
    """``length`` bytes of ``remote`` from ``start`` (None: to its end), ``deliver``ed block by block."""
    started = time.monotonic()
    conn = start_transfer(ftp, f"RETR {remote}", rest=start or None)
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        got = _receive(conn, length, pace, deliver)
    except BaseException:
        conn.close()
        raise
    if length is not None and got < length:
        conn.close()
        ftp.voidresp()  # a server that cut the transfer says so (426): a transient error, tried again
        raise StorageError(f"{remote} ended at {start + got}, before byte {start + length}")
    finish_download(ftp, conn, whole=length is None)
    LOG.debug("%s from %d: %d bytes down in %.2f s", remote, start, got, time.monotonic() - started)


def _receive(conn: socket.socket, length: int | None, pace: Callable[[int], None],
             deliver: Callable[[memoryview], None]) -> int:
    """Up to ``length`` bytes of a data connection (None: to its end), ``pace``d; the bytes received.

    Each READ_SIZE block is a mapping of its own (a chunk per ``recv`` fragments the heap), whose
    pages become memory as data lands in them and go back as soon as the consumer lets go of it.
    Only whole blocks (or the last) are delivered: a block cut short is received again.
    """
    got = 0
    pace(0)  # with its RETR sent: the first bytes wait in the socket buffer, ready once there is room
    while length is None or got < length:
        size = READ_SIZE if length is None else min(READ_SIZE, length - got)
        block = memoryview(mmap.mmap(-1, size))
        filled = 0
        while filled < size and (count := conn.recv_into(block[filled:])):
            filled += count
            pace(count)
        if filled == size or (filled and length is None):
            deliver(block if filled == size else block[:filled])
            got += filled
        if filled < size:
            break
    return got


def received_blocks(conn: socket.socket, block: int) -> Iterator[bytearray]:
    """A data connection's bytes to its end, in blocks of ``block`` (the last may be shorter): one block
    for the stages downstream to hand on, hash and write, however little each ``recv`` brings."""
    while True:
        buffer = bytearray(block)
        with memoryview(buffer) as view:
            got = 0
            while got < block and (count := conn.recv_into(view[got:])):
                got += count
        del buffer[got:]  # the end came: only the last block is shorter
        if got:
            yield buffer
        if got < block:
            return


def attempts(worker: Worker, settings: FtpSettings, action: str, operation: Callable[..., T],
              may_retry: Callable[[], bool] = lambda: True) -> T:
    """``operation(client)``, tried again on a fresh connection after a transient failure (if ``may_retry()``)."""
    for attempt in range(1, SEGMENT_ATTEMPTS + 1):
        try:
            return operation(worker.client())
        except BaseException as exc:
            worker.drop()
            error = translate(exc, action, settings)
            last = attempt == SEGMENT_ATTEMPTS or worker.cancelled or not may_retry()
            if not isinstance(error, StorageError) or not error.transient or last:
                raise error from exc
            LOG.warning("%s: %s; retrying this segment (attempt %d)", action, error, attempt + 1)
            time.sleep(attempt)
    raise AssertionError("unreachable")


def file_ranges(remote: str, size: int, offset: int) -> list[tuple[str, int, int | None]]:
    """A plain file from ``offset`` in RANGE_SIZE ranges; the last one reads to the end."""
    starts = list(range(offset, size, RANGE_SIZE))
    return [(remote, start, RANGE_SIZE if start + RANGE_SIZE < size else None) for start in starts]


def segment_ranges(remote: str, names: list[str], offset: int) -> list[tuple[str, int, int | None]]:
    """A segment directory's files from ``offset`` on: whole files, the first one from inside."""
    starts = sorted(int(name) for name in names)
    ranges = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else None
        if end is not None and end <= offset:
            continue
        ranges.append((segment_name(remote, start), max(0, offset - start), None))
    return ranges


def is_segment_listing(names: list[str]) -> bool:
    """The names of a segment directory: offsets, the first 0."""
    return bool(names) and all(len(n) == 16 and n.isdigit() for n in names) and min(names) == "0" * 16


def handed_over(head: list[bytes], rest: Iterable[bytes]) -> Iterator[bytes]:
    """``head`` then ``rest``, letting go of each part of ``head`` once it is handed out."""
    while head:
        yield head.pop(0)
    yield from rest


class SegmentedReads:
    """Mixin of the FTP driver: which paths are segment directories and how large files are, per session.

    The driver provides ``_entries(remote)``, ``_sizes`` and ``_segments``.
    """

    _sizes: dict[str, int]
    _segments: dict[str, list[str]]

    def _parallel_ranges(self, remote: str, offset: int, connections: int) -> list[tuple[str, int, int | None]] | None:
        """How to read ``remote`` over several connections, when size() found it large; else None.

        Without a size() first, no SIZE is spent: small files (metadata) are read in one RETR.
        """
        if connections < 2:
            return None
        if self._segments.get(remote):
            return self._segment_ranges(remote, offset)
        size = self._sizes.get(remote)
        if size is None or size - offset < 2 * RANGE_SIZE:
            return None
        return file_ranges(remote, size, offset)

    def _segment_ranges(self, remote: str, offset: int) -> list[tuple[str, int, int | None]]:
        """The segments of data stored as a directory (a parallel upload); empty for anything else."""
        names = self._segment_names(remote)
        return segment_ranges(remote, names, offset) if names else []

    def _segment_names(self, remote: str) -> list[str]:
        if remote not in self._segments:
            names = [name for name, _ in self._entries(remote)]
            self._segments[remote] = names if is_segment_listing(names) else []
        return self._segments[remote]
