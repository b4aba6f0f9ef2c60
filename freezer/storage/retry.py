"""Retry with backoff after a transient failure, around any network driver.

Which failures are transient is the error's own ``transient`` flag (freezer/errors.py):
a refused connection or a wrong password fails at once, a timeout or a dropped connection is retried.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from freezer.errors import ConnectError, StorageError
from freezer.storage.base import Storage, checked_names

LOG = logging.getLogger(__name__)
T = TypeVar("T")
#: the longest pause between two attempts, however many came before
MAX_PAUSE = 15.0


class Retrying(Storage):
    """Reconnect and repeat an operation that failed with a transient StorageError.

    Operations that can be replayed are retried: everything but ``put_stream`` of a one-shot
    iterator once data has gone. ``get_stream`` resumes from the last byte handed out. A driver that
    uploads in requests it holds in memory (``upload_retry``: the object stores) gets this retry loop
    for each of them instead, and its uploads are not replayed whole on top: one layer per failure.
    """

    def __init__(self, inner: Storage, attempts: int = 3, backoff: float = 1.0, patience: float = 0.0):
        self.inner = inner
        self.kind = inner.kind
        self.attempts = attempts
        self.backoff = backoff
        self.patience = patience  # --storage-retry-time: beyond ``attempts``, go on this long in all
        self.retried_per_request = hasattr(inner, "upload_retry")
        if self.retried_per_request:
            inner.upload_retry = self._retry

    def describe(self) -> str:
        return self.inner.describe()

    def _retry(self, action: str, operation: Callable[[], T], replayable: Callable[[], bool] = lambda: True) -> T:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return operation()
            except StorageError as exc:
                delay = self._pause(attempt, started)
                if not exc.transient or delay is None or not replayable():
                    raise
                LOG.warning("%s: %s; retrying in %.1fs (attempt %d)", action, exc, delay, attempt + 1)
                self.inner.reset()
                time.sleep(delay)
                attempt += 1

    def _pause(self, attempt: int, started: float) -> float | None:
        """The pause before attempt ``attempt + 1``, or None once attempts and patience are spent.

        Pauses double (from ``backoff``, at most MAX_PAUSE) and are jittered, so agents that meet a busy
        server together come back apart.
        """
        ceiling = min(MAX_PAUSE, self.backoff * 2 ** (attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if attempt < self.attempts:
            return delay
        if time.monotonic() - started + delay <= self.patience:
            return delay
        return None

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        if self.retried_per_request:
            return self.inner.put_stream(path, chunks)
        if isinstance(chunks, (list, tuple)):
            return self._retry(f"upload {path}", lambda: self.inner.put_stream(path, chunks))
        once = _OneShot(chunks)
        # Once data has gone, the stream cannot be sent again: the first error is the one to report.
        return self._retry(f"upload {path}", lambda: self.inner.put_stream(path, once), lambda: not once.started)

    def put_bytes(self, path: str, data: bytes) -> int:
        if self.retried_per_request:
            return self.inner.put_bytes(path, data)
        return self._retry(f"upload {path}", lambda: self.inner.put_bytes(path, data))

    def get_bytes(self, path: str) -> bytes:
        return self._retry(f"download {path}", lambda: self.inner.get_bytes(path))

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Yield ``path``; a connection lost midway is resumed where it stopped, ``attempts`` times at most."""
        done = offset
        started = time.monotonic()
        attempt = 1
        while True:
            stream, first = self._retry(f"download {path}", functools.partial(self._open_at, path, done))
            try:
                while first is not None:
                    yield first
                    done += len(first)
                    first = next(stream, None)
                return
            except StorageError as exc:
                delay = self._pause(attempt, started)
                if not exc.transient or delay is None:
                    raise
                LOG.warning("download %s: %s; resuming at byte %d in %.1fs (attempt %d)", path, exc, done, delay,
                            attempt + 1)
                self.inner.reset()
                time.sleep(delay)
                attempt += 1

    def _open_at(self, path: str, offset: int) -> tuple[Iterator[bytes], bytes | None]:
        return _started(self.inner.get_stream(path, offset))

    def listdir(self, path: str) -> list[str]:
        """The driver's listing, its names checked here too: object stores' keys are never path-checked."""
        return checked_names(self._retry(f"list {path}", lambda: self.inner.listdir(path)), path, self.kind)

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        listings = self._retry(f"list {len(paths)} directories", lambda: self.inner.listdirs(paths))
        return [checked_names(names, path, self.kind) for path, names in zip(paths, listings, strict=True)]

    def rmtree(self, path: str) -> None:
        self._retry(f"remove {path}", lambda: self.inner.rmtree(path))

    def size(self, path: str) -> int:
        return self._retry(f"size of {path}", lambda: self.inner.size(path))

    def expect_reads(self, paths: Sequence[str] = ()) -> None:
        self._retry(f"connect to {self.describe()}", lambda: self.inner.expect_reads(paths))

    def expect_writes(self) -> None:
        self._retry(f"connect to {self.describe()}", self.inner.expect_writes)

    def sibling(self) -> Storage | None:
        """The bare driver's sibling: its work falls back to this storage, and its retries, on a failure."""
        return self.inner.sibling()

    def claim(self, path: str) -> bool:
        """Retried like any operation. A first attempt that created ``path`` but lost its reply makes
        the retry see ``path`` taken on file servers (object stores recognise their own claim): the
        caller then claims another path, and admin collects the empty one (see ``layout.incomplete``).
        """
        return self._retry(f"claim {path}", lambda: self.inner.claim(path))

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> None:
        self.inner.reset()


class _OneShot:
    """An iterator that may be started once: a retry after data was consumed must fail."""

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = iter(chunks)
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        if self.started:
            raise ConnectError("connection lost in the middle of an upload that cannot be replayed")
        self.started = True
        return self.chunks


def _started(stream: Iterator[bytes]) -> tuple[Iterator[bytes], bytes | None]:
    return stream, next(stream, None)
