"""The CPU a loopback server and its session processes use during a run, sampled from /proc.

sshd's session processes are not reaped by the listener in a way that adds their time to its own,
so each process below the server is read while it lives: every ``interval`` seconds, and at the end.
"""

from __future__ import annotations

import os
import threading

TICK = os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """A sampler of the CPU seconds of ``pid`` and its descendants; use as a context manager."""

    def __init__(self, pid: int | None, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
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
        return sum(used - self.start.get(pid, 0.0) for pid, used in self.seen.items())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for pid, used in _tree(self.pid).items():
            self.seen[pid] = max(used, self.seen.get(pid, 0.0))


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
