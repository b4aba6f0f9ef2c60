"""One progress line on a terminal, redrawn by a timer thread, cleared at the end.

The data path only bumps counters it already keeps (Digest sizes); this thread reads them a few
times a second, so progress costs nothing per chunk. No line at all when stderr is not a terminal
(cron, the scheduler, a pipe) or with ``--quiet``. A library such as tqdm or rich would be driven
from the data path (``update`` per chunk) and add a dependency for one line, so this is our own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

INTERVAL = 0.25  # seconds between redraws
CLEAR = "\r\x1b[K"


class Progress:
    """Shows the text of ``render()`` on one line of ``stream`` while a ``showing`` block runs."""

    def __init__(self, enabled: bool, stream=None, interval: float = INTERVAL):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval

    @classmethod
    def for_terminal(cls, quiet: bool) -> Progress:
        """Enabled only when stderr is a terminal and ``--quiet`` is not given."""
        return cls(enabled=not quiet and _is_terminal(sys.stderr))

    @contextlib.contextmanager
    def showing(self, render: Callable[[], str]) -> Iterator[None]:
        """Redraw ``render()`` every ``interval`` seconds until the block ends, then clear the line."""
        if not self.enabled:
            yield
            return
        stop = threading.Event()
        drawer = threading.Thread(target=self._draw, args=(render, stop), name="progress", daemon=True)
        drawer.start()
        try:
            yield
        finally:
            stop.set()
            drawer.join(timeout=2)
            self._write(CLEAR)

    def _draw(self, render: Callable[[], str], stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                line = render()
            except Exception:  # noqa: BLE001 - a progress line must never break the job
                continue
            self._write(CLEAR + line[: _width(self.stream) - 1])

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _width(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, AttributeError, ValueError):
        return 80


class Rate:
    """Bytes per second since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def of(self, done: int) -> float:
        return done / self.elapsed()

    def eta(self, done: int, total: int | None) -> str:
        """``m:ss`` left at the current rate, or '' when the total or a rate is not known yet."""
        rate = self.of(done)
        if not total or done <= 0 or rate <= 0 or done >= total:
            return ""
        return " ETA " + duration((total - done) / rate)


def size(count: float | None) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 MiB``."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LineCounter:
    """Counts the lines of a file another process appends to, reading only what is new."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.lines = 0
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            try:
                with open(self.path, "rb") as handle:
                    handle.seek(self.offset)
                    while block := handle.read(1 << 20):
                        self.lines += block.count(b"\n")
                        self.offset += len(block)
            except OSError:
                pass
            return self.lines


def bytes_read_by(pid: int) -> int | None:
    """Bytes a process has read so far (Linux ``/proc/PID/io``), or None when not available."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def estimate_source(source: str, changed_since: int | None, stop: threading.Event) -> tuple[int, int]:
    """(bytes, files) tar will read from ``source``, roughly: every file, or those changed since a time."""
    total = files = 0
    if not os.path.isdir(source):
        with contextlib.suppress(OSError):
            return os.lstat(source).st_size, 1
        return 0, 0
    for root, _dirs, names in os.walk(source):
        if stop.is_set():
            break
        for name in names:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if changed_since is None or max(info.st_mtime, info.st_ctime) >= changed_since:
                total += info.st_size
                files += 1
    return total, files


class BackupLine:
    """``backup level 1: 120 files, 300.0 MiB read, 80.0 MiB stored, 95.0 MiB/s, ETA 0:04``."""

    def __init__(self, level: int, stored, index: LineCounter, tar_pid: int):
        self.level = level
        self.stored = stored  # anything with a growing ``size``: the Digest of the upload
        self.index = index
        self.tar_pid = tar_pid
        self.rate = Rate()
        self.estimate: int | None = None
        self.read = 0

    def render(self) -> str:
        self.read = bytes_read_by(self.tar_pid) or self.read
        done = self.read or self.stored.size
        return (f"backup level {self.level}: {self.index.count()} files, {size(self.read)} read, "
                f"{size(self.stored.size)} stored, {size(self.rate.of(done))}/s"
                f"{self.rate.eta(self.read, self.estimate)}")

    @contextlib.contextmanager
    def estimating(self, source: str, parent, enabled: bool) -> Iterator[None]:
        """Size up the source in a thread while the backup runs (only files changed since ``parent``)."""
        if not enabled:
            yield
            return
        stop = threading.Event()

        def work() -> None:
            total, _files = estimate_source(source, parent.ts if parent else None, stop)
            if not stop.is_set():
                self.estimate = total

        worker = threading.Thread(target=work, name="estimate", daemon=True)
        worker.start()
        try:
            yield
        finally:
            stop.set()


class RestoreLine:
    """``restore level 2 of 3 (level 1): 40.0 MiB of 120.0 MiB, 60.0 MiB/s, ETA 0:01``."""

    def __init__(self, plan, records):
        self.plan = plan  # the BackupRefs applied, in order
        self.records = records  # BackupRef -> Metadata
        self.index = 0
        self.counted = None  # the Digest of the level being applied
        self.rate = Rate()

    def start_level(self, index: int, counted) -> None:
        self.index, self.counted, self.rate = index, counted, Rate()

    def render(self) -> str:
        ref = self.plan[self.index]
        expected = self.records[ref].data_size
        done = self.counted.size if self.counted is not None else 0
        return (f"restore level {self.index + 1} of {len(self.plan)} (level {ref.level}): "
                f"{size(done)} of {size(expected)}, {size(self.rate.of(done))}/s{self.rate.eta(done, expected)}")
