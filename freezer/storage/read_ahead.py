"""The parts of a parallel download handed out in order as they arrive, within a byte budget.

Parts 0, 1, 2... are received at the same time over several connections, each in blocks. The
consumer takes the blocks of the part next in line as they arrive, so that part holds almost
nothing; every block of a later part waits in memory until the parts before it are taken. The
budget bounds that: a part receives while it and the parts before it hold less than ``limit``
(the parts nearest the consumer go first) and all of them less than ``cap`` (parts that got ahead
of earlier ones cannot push the total past it). The part next in line never waits, so the download
always moves. A part that waits leaves its bytes in the kernel's socket buffer, and the server
stops sending until there is room.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator

from freezer.errors import StorageError


class Abandoned(StorageError):
    """The download is over (done, failed or given up): a worker still receiving stops, not retried."""


class ReadAhead:
    """Blocks received per part, the bytes each part holds, and which part the consumer takes from."""

    def __init__(self, limit: int, cap: int):
        self.limit, self.cap = limit, cap
        self._blocks: dict[int, collections.deque[memoryview]] = collections.defaultdict(collections.deque)
        self._held: dict[int, int] = {}  # received and not taken, the block being filled included
        self._delivered: dict[int, int] = {}  # bytes handed over per part, over all its attempts
        self._ended: set[int] = set()
        self._next = 0
        self._failure: BaseException | None = None
        self._stopped = False
        self._cond = threading.Condition()

    def delivered(self, part: int) -> int:
        """Bytes of ``part`` handed over so far: a new attempt goes on from there."""
        with self._cond:
            return self._delivered.get(part, 0)

    def pacer(self, part: int) -> Callable[[int], None]:
        """For one attempt at ``part``: call it with each receive's byte count (0 before the first);
        it returns once the part may receive more, and raises once the download is over."""
        with self._cond:  # a block an earlier attempt was filling is gone
            self._held[part] = sum(map(len, self._blocks[part]))
            self._cond.notify_all()

        def pace(count: int) -> None:
            with self._cond:
                self._held[part] = self._held.get(part, 0) + count
                while self._must_wait(part):
                    self._cond.wait()
                if self._over():
                    raise Abandoned("the transfer was abandoned")
        return pace

    def deliver(self, part: int, block: memoryview) -> None:
        """A whole block of ``part`` (its bytes already paced), for the consumer; dropped once it is over."""
        with self._cond:
            if self._over():
                return
            self._blocks[part].append(block)
            self._delivered[part] = self._delivered.get(part, 0) + len(block)
            self._cond.notify_all()

    def end(self, part: int) -> None:
        """Every block of ``part`` is delivered."""
        with self._cond:
            self._ended.add(part)
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The download failed: the consumer raises ``error``, and nothing waits any more."""
        with self._cond:
            self._failure = self._failure or error
            self._cond.notify_all()

    def taken(self, part: int) -> Iterator[memoryview]:
        """The blocks of ``part`` as they arrive, until it ends; the consumer's side."""
        with self._cond:
            self._next = part  # it never waits from now on
            self._cond.notify_all()
        while (block := self._take(part)) is not None:
            yield block

    def stop(self) -> None:
        """The consumer is gone: nothing waits any more."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _take(self, part: int) -> memoryview | None:
        with self._cond:
            while not self._blocks[part] and part not in self._ended and self._failure is None:
                self._cond.wait()
            if self._failure is not None:
                raise self._failure
            if not self._blocks[part]:
                self._forget(part)
                return None
            block = self._blocks[part].popleft()
            self._held[part] = self._held.get(part, 0) - len(block)
            self._cond.notify_all()
            return block

    def _forget(self, part: int) -> None:
        for table in (self._blocks, self._held, self._delivered):
            table.pop(part, None)
        self._ended.discard(part)

    def _over(self) -> bool:
        return self._stopped or self._failure is not None

    def _must_wait(self, part: int) -> bool:
        if self._over() or part <= self._next:
            return False
        if sum(self._held.values()) >= self.cap:
            return True
        return sum(size for n, size in self._held.items() if n <= part) >= self.limit
