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
        for pid, used in _tree(self.pid).items():
            self.seen[pid] = max(used, self.seen.get(pid, 0.0))
        self.own_cpu_s += time.thread_time() - began  # one thread at a time: before, in, or after _run


def _tree(root: int) -> dict[int, float]:
    """CPU seconds (user+sys) of ``root`` and of every process below it, by pid."""
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    below = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in below and pid not in below:
                below.add(pid)
                grew = True
    return {pid: used[pid] for pid in below if pid in used}
