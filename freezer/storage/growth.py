"""How many connections a transfer on a long link should have, found by measuring it.

One TCP connection moves a window per round trip; how many fill the line depends on the line and
on both ends' windows, which nothing reports. FTP's segments (ftp_parallel.InOrder) and SFTP's
ranges (sftp_parallel.RangeReader) report each segment's end here and grow when told to.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)
GROWN_CAP = 8  # auto grows a long link's transfer to at most this many connections (memory: ftp.rst, sftp.rst)
GAIN = 1.25  # a doubling that did not raise the rate segments end at by this much is the last
WINDOW_BOUND = 3 << 19  # bytes (1.5 MiB) each connection keeps in flight, at least, for a doubling to pay


class Growth:
    """Auto on a long link: double a transfer's connections while that makes it faster, up to ``cap``.

    ``more(n)`` is how the transfer gets its connections up to ``n``. The first doubling is decided
    on the transfer's first segment end; later ones on a round: as many ends as there are
    connections, timed from the first end after the last change (logins and slow start are behind
    it then). A doubling needs each connection to keep WINDOW_BOUND in flight
    (its rate x the round trip): far below it, the line or the server is what limits, and more
    connections would only share it; after the first, it also needs segments to end GAIN x faster.
    """

    def __init__(self, more: Callable[[int], list], round_trip: float, segment: int,
                 cap: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.more, self.round_trip, self.segment, self.clock = more, round_trip, segment, clock
        self.cap = cap or GROWN_CAP
        self.round_started: float | None = None
        self.took: list[float] = []
        self.last_rate: float | None = None
        self.settled = False
        self.growing = False  # more connections asked for and not joined yet

    def ended(self, size: int, took: float) -> int:
        """As ``wanted``, called as each segment ends: how many to grow to now, or 0 (none, or already asked)."""
        if self.growing:
            return 0
        wanted = self.wanted(size, took)
        self.growing = wanted > size
        return wanted if self.growing else 0

    def wanted(self, size: int, took: float) -> int:
        """A segment that took ``took`` s ended, on a transfer of ``size`` connections: how many it should have."""
        if self.settled or size >= self.cap:
            return size
        now = self.clock()
        if self.round_started is None:
            self.round_started = now
            if self.last_rate is not None:
                return size
            # The transfer's first end: its connections started together, so this one segment tells
            # what each moves, and a long link need not wait a whole round (a second at 100 ms).
            return self._decided(size, size / max(took, 1e-6), took, now)
        self.took.append(took)
        if len(self.took) < size:
            return size
        rate = len(self.took) / max(now - self.round_started, 1e-6)  # segments a second, all connections
        return self._decided(size, rate, statistics.median(self.took), now)

    def _decided(self, size: int, rate: float, took: float, now: float) -> int:
        """Double if each connection keeps WINDOW_BOUND in flight and the rate rose GAIN x; else settle."""
        in_flight = self.segment / max(took, 1e-6) * self.round_trip
        pays = in_flight >= WINDOW_BOUND and (self.last_rate is None or rate >= self.last_rate * GAIN)
        LOG.debug("%d connections: %.2f segments/s, %.0f KiB in flight each", size, rate, in_flight / 1024)
        self.round_started, self.took, self.last_rate = now, [], rate
        self.settled = not pays
        return min(self.cap, 2 * size) if pays else size

    def joined(self, size: int, short: bool = False) -> None:
        """The transfer has ``size`` connections now; ``short``: fewer than asked (the server's limit)."""
        self.round_started, self.took, self.growing = None, [], False
        self.settled = self.settled or short or size >= self.cap
