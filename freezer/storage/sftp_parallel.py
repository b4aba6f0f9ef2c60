"""Large SFTP transfers over several SSH connections, each its own TCP connection, for long links.

One TCP connection moves at most its window per round trip, however fast the line. Uploads stripe
over the extra connections at offsets of the one temporary file (sftp_stripes.py); downloads read
ranges of the file over every connection at once and hand them out in order (``ranges_in_order``).
The stored layout is untouched: one file, renamed into place last. Memory: at most ``2 x N`` segments.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator

import paramiko

from freezer.storage.growth import Growth
from freezer.storage.sftp_connect import LONG_ROUND_TRIP
from freezer.storage.sftp_reads import PREFETCH_LIMIT  # reads in flight per connection, and why
from freezer.storage.sftp_requests import close_later, close_quietly, read_range
from freezer.storage.sftp_stripes import ExtraChannels

LOG = logging.getLogger(__name__)
MAX_CONNECTIONS = 16  # the cap of --ftp-connections
WAN_CONNECTIONS = 4  # auto, beyond sftp_connect.LONG_ROUND_TRIP
SEGMENT = 8 << 20  # bytes one connection reads at once when a download is split
PARALLEL_AFTER = 4 * SEGMENT  # smaller downloads stay on one connection: the extra logins would cost more


def connection_count(option: int, round_trip: float) -> int:
    """SSH connections per large transfer: ``--ftp-connections`` (capped), or auto from the round trip."""
    if option > 0:
        return min(option, MAX_CONNECTIONS)
    return WAN_CONNECTIONS if round_trip > LONG_ROUND_TRIP else 1


def growth_for(option: int, channels: ExtraChannels, round_trip: float) -> Growth | None:
    """Under auto, a download over several connections takes more while they make it faster."""
    if option:
        return None
    return Growth(lambda wanted: channels.grow(wanted - 1), round_trip, SEGMENT)


OpenFile = Callable[[paramiko.SFTPClient], paramiko.SFTPFile]  # a channel -> the file open for reading


@dataclasses.dataclass(frozen=True)
class Span:
    """What to read: from ``start`` up to ``end``, in requests of ``request_size``, over ``connections``."""

    start: int
    end: int
    request_size: int
    connections: int


def read_in_parallel(first: paramiko.SFTPClient, handle: paramiko.SFTPFile, extras: ExtraChannels,
                     open_file: OpenFile, span: Span, piece: int, growth: Growth | None = None) -> Iterator[bytes]:
    """``span`` of the file open as ``handle`` on ``first``, read over it and ``extras``, in pieces up to ``piece``.

    With ``growth`` (auto), more connections join while it reads (``extras.grow``).
    """
    reader = RangeReader(open_file, span.start, span.end, span.request_size, span.connections, growth)
    reader.add(first, handle)
    extras.live()
    extras.open_early()

    def join_extras() -> None:
        extras.wait()
        for channel in extras.live():
            reader.add(channel)

    threading.Thread(target=join_extras, name="sftp-join", daemon=True).start()
    for segment in reader:
        for start in range(0, len(segment), piece):
            yield segment[start:start + piece]


class RangeReader:
    """Segments of one remote file read by one thread per connection; the consumer takes them in order."""

    def __init__(self, open_file: OpenFile, start: int, end: int, request_size: int, connections: int,
                 growth: Growth | None = None):
        self.open_file, self.request_size, self.growth = open_file, request_size, growth
        self.reading: set[int] = set()  # the channels reading (their ids), so a grown set adds only new ones
        self.start, self.end = start, end
        self.ahead = 2 * max(connections, 1)  # segments read or being read beyond the one handed out
        self.segments: dict[int, memoryview] = {}
        self.next_claim = 0
        self.retry: list[int] = []  # segments whose connection failed, for another one
        self.next_out = 0
        self.count = (end - start + SEGMENT - 1) // SEGMENT
        self.error: BaseException | None = None
        self.last_error: BaseException | None = None  # of a connection that failed; raised once none is left
        self.stopped = False
        self.workers = 0
        self._cond = threading.Condition()

    def add(self, channel: paramiko.SFTPClient, handle: paramiko.SFTPFile | None = None) -> None:
        """One more connection reads segments from now on (through ``handle`` if the file is open on it)."""
        with self._cond:
            if id(channel) in self.reading:
                return
            self.reading.add(id(channel))
            self.workers += 1
        threading.Thread(target=self._work, args=(channel, handle), name="sftp-range", daemon=True).start()

    def __iter__(self) -> Iterator[memoryview]:
        try:
            while self.next_out < self.count:
                yield self._take(self.next_out)
        finally:
            self.stop()

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    def _take(self, index: int) -> memoryview:
        with self._cond:
            while index not in self.segments:
                if self.error is not None:
                    raise self.error
                if self.workers == 0:
                    raise EOFError("no connection left to read from")
                self._cond.wait()
            self.next_out += 1
            self._cond.notify_all()
            return self.segments.pop(index)

    def _claim(self) -> int | None:
        with self._cond:
            while (not self.stopped and self.error is None and not self.retry
                   and self.next_claim >= self.next_out + self.ahead):
                self._cond.wait()
            if self.stopped or self.error is not None:
                return None
            if self.retry:
                return self.retry.pop()
            if self.next_claim >= self.count:
                return None
            self.next_claim += 1
            return self.next_claim - 1

    def _work(self, channel: paramiko.SFTPClient, handle: paramiko.SFTPFile | None) -> None:
        """Read segments until none is left; on a failure, leave this one's segment to the other connections."""
        index = None
        try:
            handle = handle or self.open_file(channel)
            while (index := self._claim()) is not None:
                started = time.monotonic()
                data = self._read(channel, handle, index)
                with self._cond:
                    self.segments[index] = data
                    self._cond.notify_all()
                    wanted = self._wanted(time.monotonic() - started)
                if wanted:
                    threading.Thread(target=self._grow, args=(wanted,), name="sftp-grow", daemon=True).start()
        except BaseException as exc:
            LOG.debug("reading over one connection fewer", exc_info=True)
            with self._cond:
                if index is not None:
                    self.retry.append(index)
                self.last_error = exc
        finally:
            close_later(handle)
            with self._cond:
                self.workers -= 1
                if self.workers == 0 and self.last_error is not None:
                    self.error = self.last_error  # no connection left to read what is missing
                self._cond.notify_all()

    def _wanted(self, took: float) -> int:
        """Under the lock, as a segment read in ``took`` s is in: how many connections to grow to, or 0."""
        if self.growth is None or self.stopped or self.next_claim >= self.count:
            return 0
        return self.growth.ended(self.workers, took)

    def _grow(self, wanted: int) -> None:
        channels = []
        try:
            channels = self.growth.more(wanted)  # the extra connections, logged in
        finally:
            for channel in channels:
                self.add(channel)
            self._grown(wanted, channels)

    def _grown(self, wanted: int, channels: list) -> None:
        with self._cond:
            self.ahead = 2 * self.workers
            self.growth.joined(self.workers, short=len(channels) + 1 < wanted)
            self._cond.notify_all()

    def _read(self, channel: paramiko.SFTPClient, handle: paramiko.SFTPFile, index: int) -> memoryview:
        offset = self.start + index * SEGMENT
        return read_range(channel, handle, offset, min(SEGMENT, self.end - offset), self.request_size, PREFETCH_LIMIT)


def close_connection(channel: paramiko.SFTPClient) -> None:
    """Close an extra connection: its SFTP channel and its transport."""
    transport = channel.get_channel().get_transport()
    close_quietly(channel)
    close_quietly(transport)
