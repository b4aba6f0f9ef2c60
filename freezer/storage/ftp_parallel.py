"""Several FTP connections working through one transfer's segments, results handed back in order.

Memory is bounded: at most ``ahead`` segments are taken before the oldest one is handed back, so a
transfer holds about ``ahead`` + 1 segment buffers whatever its length.
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from freezer.errors import StorageError
from freezer.storage.ftp_client import FtpSettings, close_quietly
from freezer.storage.ftp_session import open_session, say_goodbye
from freezer.storage.growth import Growth

LOG = logging.getLogger("freezer.storage.ftp")
J = TypeVar("J")
R = TypeVar("R")
MAX_CONNECTIONS = 16  # the cap of --ftp-connections
WAN_CONNECTIONS = 4  # auto on a long link: 4 windows of 4 MiB fill 1 Gbit/s up to a 130 ms round trip
# Seconds: below it one connection's 4 MiB window moves over 160 MiB/s, more than a 1 Gbit/s line,
# and a loaded machine or server never makes loopback look that far.
LAN_ROUND_TRIP = 0.025


def connections_for(setting: int, round_trip: float) -> int:
    """``--ftp-connections``: a number (capped), or 0 for auto, chosen by the round trip measured at login."""
    if setting > 0:
        return min(setting, MAX_CONNECTIONS)
    return 1 if round_trip < LAN_ROUND_TRIP else WAN_CONNECTIONS


class Worker:
    """One extra connection of a parallel transfer; dropped after a failure, reopened on next use."""

    def __init__(self, settings: FtpSettings):
        self.settings = settings
        self.ftp: ftplib.FTP | None = None
        self.cancelled = False  # its pool let it go: no reconnecting, the transfer is over
        # The last segment stored, its size not yet asked: (path, size or end, whether the size is exact).
        self.unchecked: tuple[str, int, bool] | None = None

    def client(self) -> ftplib.FTP:
        if self.cancelled:
            raise StorageError("the transfer was abandoned")
        if self.ftp is None:
            self.ftp = open_session(self.settings, measure=False).ftp
        return self.ftp

    def drop(self) -> None:
        if self.ftp is not None:
            close_quietly(self.ftp)
            self.ftp = None

    def quit(self) -> None:
        if self.ftp is not None:
            say_goodbye(self.ftp)
            self.ftp = None


class Pool:
    """The extra connections of one storage session, opened together, kept between transfers."""

    def __init__(self, settings: FtpSettings):
        self.settings = settings
        self.workers: list[Worker] = []
        self.limit = MAX_CONNECTIONS  # lowered when the server refuses a connection
        self.lent = 0  # connections given away (``lend``): they count against what a transfer takes
        self._warming: threading.Thread | None = None
        self._transfers = 0  # transfers running, whose workers are not to be lent
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """A transfer runs in the block: no worker is lent meanwhile (another thread may ask)."""
        with self._lock:
            self._transfers += 1
        try:
            yield
        finally:
            with self._lock:
                self._transfers -= 1

    def warm(self, wanted: int) -> None:
        """Start logging ``wanted`` workers in, in the background, while the transfer gets ready."""
        if self._warming is None and len(self.workers) < min(wanted, self.limit):
            self._warming = threading.Thread(target=self._quietly_grow, args=(wanted,), daemon=True)
            self._warming.start()

    def warming(self) -> bool:
        """Whether workers are being logged in (a backup's claim or a restore's size() asked for them)."""
        return self._warming is not None

    def _quietly_grow(self, wanted: int) -> None:
        try:
            self._grow(wanted)
        except StorageError:
            pass  # take() meets the refusal again and raises it

    def _wait_warm(self) -> None:
        if (warming := self._warming) is not None:  # read once: another thread may end it meanwhile
            warming.join()
            self._warming = None

    def take(self, wanted: int) -> list[Worker]:
        """Up to ``wanted`` connected workers: fewer, maybe none, when the server takes no more (421)."""
        self._wait_warm()
        return self._grow(wanted)

    def _grow(self, wanted: int) -> list[Worker]:
        wanted = max(min(wanted, self.limit) - self.lent, 0)
        had = len(self.workers)
        new = [Worker(self.settings) for _ in range(wanted - had)]
        errors = _connect_all(new)
        connected = [worker for worker, error in zip(new, errors, strict=True) if error is None]
        with self._lock:  # lend() may take one from another thread
            self.workers += connected
        refused = [error for error in errors if error is not None]
        if refused:
            self.limit = had + len(connected)  # what the server took, whatever another thread did since
            LOG.info("%s took %d more connection(s), not %d (%s): going on with %d",
                     self.settings.where, len(new) - len(refused), len(new), refused[0], len(self.workers))
        return self.workers[:wanted]

    def lend(self) -> ftplib.FTP | None:
        """A logged-in connection with nothing pending, given away for good; the transfers that follow
        take one connection fewer, so none waits for a login. None while a transfer runs or workers
        log in, or if none is idle. Safe from any thread."""
        with self._lock:
            if self._transfers or self._warming is not None:
                return None
            for worker in self.workers:
                if worker.ftp is not None and worker.unchecked is None:
                    self.workers.remove(worker)
                    ftp, worker.ftp = worker.ftp, None
                    self.lent += 1
                    return ftp
        return None

    def close(self) -> None:
        self._end_all(Worker.quit)

    def drop(self) -> None:
        self._end_all(Worker.drop)

    def _end_all(self, end: Callable[[Worker], None]) -> None:
        """Cancel every worker and ``end`` its connection (``quit`` politely, ``drop`` at once)."""
        self._wait_warm()
        with self._lock:  # none is lent while, or after, it is ended
            workers, self.workers = self.workers, []
        for worker in workers:
            worker.cancelled = True
            end(worker)


def _connect_all(workers: list[Worker]) -> list[StorageError | None]:
    """Log every worker in at the same time (their round trips overlap); the error of each, or None."""
    errors: list[StorageError | None] = [None] * len(workers)

    def connect(n: int) -> None:
        try:
            workers[n].client()
        except StorageError as exc:
            errors[n] = exc

    threads = [threading.Thread(target=connect, args=(n,), daemon=True) for n in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


class InOrder(Generic[J, R]):
    """Runs ``run(worker, job)`` for each job on the first free worker; results come back in job order.

    At most ``ahead`` jobs are taken beyond those handed back, or (``held_until_done``: a job's
    memory is let go once it has run, as an upload's is) beyond those done, so one slow job does
    not keep the other workers waiting. With ``growth``, workers join while it runs (``workers``
    grows in place, and ``ahead`` by as many). So does each ``late`` worker once its ``free()``
    returns the seconds its segment of the transfer's opening took, which growth counts as an end;
    a ``free()`` that raises fails the transfer.
    """

    def __init__(self, jobs: Iterator[J], workers: list[Worker], run: Callable[[Worker, J], R], ahead: int,
                 held_until_done: bool = False, growth: Growth | None = None,
                 late: list[tuple[Worker, Callable[[], float]]] | None = None):
        self.jobs, self.workers, self.run, self.ahead = jobs, workers, run, ahead
        self.held_until_done, self.growth = held_until_done, growth
        self.late = late or []
        self.waiting_late = len(self.late)  # late workers not joined yet: members all the same
        self.cond = threading.Condition()
        self.pull_lock = threading.Lock()
        self.reserved = self.pulled = self.handed = self.done = 0
        self.total: int | None = None
        self.results: dict[int, R] = {}
        self.failure: BaseException | None = None
        self.stopped = False
        self.started = False

    def start(self) -> None:
        """Set the workers going, before the first result is asked for (iterating starts them too)."""
        if self.started:
            return
        self.started = True
        threads = [threading.Thread(target=self._work, args=(w,), daemon=True) for w in self.workers]
        threads += [threading.Thread(target=self._join_when_free, args=late, daemon=True) for late in self.late]
        for thread in threads:
            thread.start()

    def __iter__(self) -> Iterator[R]:
        self.start()
        try:
            while (result := self._next()) is not _END:
                yield result
        finally:
            self.stop()

    def stop(self) -> None:
        """The consumer is gone: no worker takes another job."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _next(self):
        with self.cond:
            while True:
                if self.failure is not None:
                    raise self.failure
                if self.handed in self.results:
                    self.handed += 1
                    self.cond.notify_all()
                    return self.results.pop(self.handed - 1)
                if self.total is not None and self.handed >= self.total:
                    return _END
                self.cond.wait()

    def _work(self, worker: Worker) -> None:
        while (taken := self._take()) is not None:
            index, job = taken
            started = time.monotonic()
            try:
                result = self.run(worker, job)
            except BaseException as exc:  # handed to the consumer, which raises it
                self._fail(exc)
                return
            del taken, job  # its memory goes before the next job is taken
            with self.cond:
                self.results[index] = result
                self.done += 1
                self.cond.notify_all()
                wanted = self._wanted(time.monotonic() - started)
            if wanted:
                threading.Thread(target=self._grow, args=(wanted,), daemon=True).start()

    def _join_when_free(self, worker: Worker, free: Callable[[], float]) -> None:
        try:
            took = free()
        except BaseException as exc:  # the opening failed: so does the transfer
            self._fail(exc)
            return
        with self.cond:
            wanted = self._wanted(took)
            self.waiting_late -= 1  # a member all along: counted once, as it joins
            joined = self._enlist([worker])
        if wanted:
            threading.Thread(target=self._grow, args=(wanted,), daemon=True).start()
        if joined:
            self._work(worker)

    def _enlist(self, new: list[Worker]) -> bool:
        """Under the lock, add ``new`` workers to the running transfer (the caller starts their threads);
        False once it is done."""
        if self._done():
            return False
        self.workers += new
        self.ahead += len(new)
        self.cond.notify_all()
        return True

    def _wanted(self, took: float) -> int:
        """Under the lock, as a job that took ``took`` seconds ends: how many workers to grow to, or 0."""
        if self.growth is None or self._done():
            return 0
        return self.growth.ended(self._size(), took)

    def _grow(self, wanted: int) -> None:
        """Log more workers in (the pool's), then set each to work on the remaining jobs."""
        try:
            crew = self.growth.more(wanted)
        except BaseException:  # the server's refusals are the pool's business: go on with those there are
            LOG.debug("no more connections for this transfer", exc_info=True)
            crew = []
        busy = [worker for worker, _ in self.late]  # they join on their own
        with self.cond:
            new = [worker for worker in crew if worker not in self.workers and worker not in busy]
            self.growth.joined(self._size() + len(new), short=not new)  # none: the server takes no more
            if not new or not self._enlist(new):
                return
        LOG.debug("transfer grown to %d connections", len(self.workers))
        for worker in new:
            threading.Thread(target=self._work, args=(worker,), daemon=True).start()

    def _size(self) -> int:
        """The transfer's connections, counting the late ones still busy with its opening."""
        return len(self.workers) + self.waiting_late

    def _take(self) -> tuple[int, J] | None:
        with self.cond:
            while not self._done() and self.reserved >= self._let_go() + self.ahead:
                self.cond.wait()
            if self._done():
                return None
            self.reserved += 1
        with self.pull_lock:
            try:
                job = next(self.jobs)
            except StopIteration:
                with self.cond:
                    self.total = self.pulled
                    self.cond.notify_all()
                return None
            except BaseException as exc:
                self._fail(exc)
                return None
            self.pulled += 1
            return self.pulled - 1, job

    def _let_go(self) -> int:
        """How many jobs no longer hold their memory."""
        return self.done if self.held_until_done else self.handed

    def _done(self) -> bool:
        return self.stopped or self.failure is not None or self.total is not None

    def _fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.failure is None:
                self.failure = exc
            self.cond.notify_all()


_END = object()
