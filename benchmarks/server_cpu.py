"""The CPU a loopback server and its session processes use during a run, sampled from /proc.

sshd's session processes are not reaped in a way that adds their time to the listener's, so each
process below the server is read while it lives: every ``interval`` seconds, and at the end. A
process that ends between two samples loses what it used since the last one (at most
``interval``): the figure is a lower bound.
"""

from __future__ import annotations

import os
import threading
import time

from freezer.testing.servers import process_tree

TICK = os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """A sampler of the CPU seconds of ``pid`` and its descendants; use as a context manager."""

    def __init__(self, pid: int | None, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self.own_cpu_s = 0.0  # what sampling cost this process, for callers that measure their own CPU
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-cpu", daemon=True)

    def __enter__(self) -> ServerCpu:
        if self.pid:
            self._sample()
            self.start = dict(self.seen)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.pid:
            self._stop.set()
            self._thread.join()
            self._sample()

    def seconds(self) -> float:
        """CPU seconds used since entering, by the server and every process below it."""
        return sum((used - self.start.get(pid, 0.0) for pid, used in self.seen.items()), 0.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        began = time.thread_time()
        for pid, fields in process_tree(self.pid).items():
            used = (int(fields[11]) + int(fields[12])) / TICK
            self.seen[pid] = max(used, self.seen.get(pid, 0.0))
        self.own_cpu_s += time.thread_time() - began  # one thread at a time: before, in, or after _run

