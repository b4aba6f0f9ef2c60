"""Stream stages: digests, piped processes, and bounded prefetch between threads (``common.prefetch``).

Bytes flow as iterators of chunks. Compression and encryption run as separate
processes (all cores, no GIL), joined by OS pipes; Python only moves chunks.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from freezer.common.config import child_environment
from freezer.common.prefetch import prefetch
from freezer.errors import FreezerError

CHUNK_SIZE = 1 << 20
PIPE_SIZE = 1 << 20


class PipelineError(FreezerError):
    """A process in a pipeline failed."""


class ChecksumError(FreezerError):
    """Data read back does not match the checksum recorded at backup time."""


class Digest:
    """SHA-256 and byte count of the chunks that pass through ``tap``."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0

    def tap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Yield ``chunks`` unchanged while counting and hashing them."""
        for chunk in chunks:
            self.sha256.update(chunk)
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def verified(chunks: Iterable[bytes], sha256: str | None, size: int | None, name: str,
             digest: Digest | None = None) -> Iterator[bytes]:
    """Yield ``chunks``, holding back the last one until size and checksum match; ``digest`` counts them."""
    digest = digest or Digest()
    pending = None
    for chunk in digest.tap(chunks):
        if pending is not None:
            yield pending
        pending = chunk
    if size is not None and digest.size != size:
        raise ChecksumError(f"{name} is {digest.size} bytes, expected {size}: refusing to restore it")
    if sha256 and digest.hexdigest() != sha256:
        raise ChecksumError(f"{name} fails its sha256 check (corrupted): refusing to restore it")
    if pending is not None:
        yield pending


def ahead(chunks: Iterable[bytes], in_caller: bool) -> Iterable[bytes]:
    """``chunks`` as they are when the caller's thread should produce them, else one thread ahead."""
    return chunks if in_caller else prefetch(chunks)


def file_chunks(path: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the content of a local file in chunks."""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


class Pipeline:
    """Processes joined stdout to stdin; stderr of each kept for error messages."""

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        *,
        feed_input: bool,
        read_output: bool,
        ok_codes: dict | None = None,
        keep_output: bool = False,
    ):
        self.commands = [list(c) for c in commands]
        self.ok_codes = ok_codes or {}
        self.procs: list[subprocess.Popen] = []
        self.errlogs = []
        self.output_log = tempfile.TemporaryFile() if keep_output and not read_output else None
        self.stdin = None
        upstream = subprocess.PIPE if feed_input else subprocess.DEVNULL
        for index, argv in enumerate(self.commands):
            last = index == len(self.commands) - 1
            errlog = tempfile.TemporaryFile()
            stdout = subprocess.PIPE if (read_output or not last) else (self.output_log or subprocess.DEVNULL)
            proc = _spawn(argv, upstream, stdout, errlog)
            if index == 0:
                self.stdin = proc.stdin
            else:
                upstream.close()  # the child holds its own copy
            upstream = proc.stdout
            self.procs.append(proc)
            self.errlogs.append(errlog)
        self.stdout = upstream if read_output else None

    def output_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the last process's output, then check every exit status."""
        assert self.stdout is not None
        while chunk := self.stdout.read(chunk_size):
            yield chunk
        self.wait()

    def feed(self, chunks: Iterable[bytes]) -> None:
        """Write ``chunks`` to the first process, then check every exit status."""
        try:
            for chunk in chunks:
                self.stdin.write(chunk)
            self.stdin.close()
        except BrokenPipeError:
            self.wait()  # a stage died early: report its own message
            raise PipelineError(f"{self._name(0)} stopped reading its input")
        self.wait()

    def wait(self) -> None:
        """Wait for every process; raise PipelineError naming the first that failed."""
        failures = []
        for index, proc in enumerate(self.procs):
            code = proc.wait()
            if code not in self.ok_codes.get(index, (0,)):
                failures.append((index, code))
        if failures:
            index, code = failures[0]
            raise PipelineError(f"{self._name(index)} failed (exit {code}): {self.stderr_of(index) or 'no message'}")

    def stderr_of(self, index: int) -> str:
        """The last lines a process wrote to stderr, without noise."""
        lines = [ln for ln in self.all_stderr_of(index).splitlines() if _worth_showing(ln)]
        return "; ".join(lines[-3:])

    def messages_of(self, index: int) -> list[str]:
        """Every line a process wrote to stderr, without noise."""
        return [ln for ln in self.all_stderr_of(index).splitlines() if _worth_showing(ln)]

    def all_stderr_of(self, index: int) -> str:
        """Everything a process wrote to stderr."""
        return _read_back(self.errlogs[index])

    def kept_output(self) -> str:
        """What the last process wrote to stdout, when started with ``keep_output``."""
        return _read_back(self.output_log) if self.output_log else ""

    def abort(self) -> None:
        """Kill every process that still runs; used when the consumer fails."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        self.close()

    def close(self) -> None:
        for stream in (self.stdin, self.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        for log in [*self.errlogs, self.output_log]:
            if log is not None:
                log.close()

    def _name(self, index: int) -> str:
        return os.path.basename(self.commands[index][0])


def _read_back(log) -> str:
    if log.closed:
        return ""
    log.seek(0)
    return log.read().decode("utf-8", "replace")


def _spawn(argv: list[str], stdin, stdout, stderr) -> subprocess.Popen:
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True,
                                env=child_environment())
    except FileNotFoundError as exc:
        raise FreezerError(f"{argv[0]} is not installed: install it or choose another --compression") from exc
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            _grow_pipe(pipe.fileno())
    return proc


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # a smaller pipe only costs speed


def _worth_showing(line: str) -> bool:
    noise = ("deprecated key derivation", "Using -iter or -pbkdf2", "Total bytes written:",
             ": Directory is new", ": Directory has been renamed")  # the last two: tar --verbose notes
    return bool(line.strip()) and not any(n in line for n in noise)


def which(*names: str) -> str | None:
    """The first of ``names`` found on PATH."""
    for name in names:
        if shutil.which(name):
            return name
    return None
