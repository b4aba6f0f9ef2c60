"""``--upload-limit`` / ``--download-limit``: bytes per second to and from any storage.

One wrapper around the Storage interface, applied by the registry to every driver: each byte
handed to a driver, or taken from one, is paid for from a token bucket first. Upstream runs the
agent under ``trickle`` for the same effect; this needs no extra tool and works for every storage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from freezer.common.settings import Limits
from freezer.storage.base import Storage

#: largest piece paid for at once: small enough that pacing stays smooth at low limits
MAX_PIECE = 64 * 1024


class TokenBucket:
    """At most ``rate`` bytes per second, with a burst of a tenth of a second (never more)."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate = rate
        self.burst = rate / 10
        self.clock, self.sleep = clock, sleep
        self.tokens = 0.0
        self.stamp: float | None = None
        self.lock = threading.Lock()

    def take(self, count: int) -> None:
        """Wait until ``count`` bytes may pass."""
        with self.lock:
            now = self.clock()
            if self.stamp is not None:
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= count
            debt = -self.tokens / self.rate if self.tokens < 0 else 0.0
            if debt:
                self.sleep(debt)  # under the lock: concurrent streams share the one limit

    def piece_size(self) -> int:
        return max(1, min(MAX_PIECE, self.rate // 20))


def paced(chunks: Iterable[bytes], bucket: TokenBucket) -> Iterator[bytes]:
    """``chunks`` cut into small pieces, each handed on once it is paid for."""
    size = bucket.piece_size()
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), size):
                piece = view[start:start + size]
                bucket.take(len(piece))
                yield bytes(piece)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a download given up early releases its connection now


class Throttled(Storage):
    """``inner`` with uploads and downloads held to a rate (None: that direction is free)."""

    def __init__(self, inner: Storage, upload: int | None, download: int | None):
        self.inner = inner
        self.kind = inner.kind
        self.upload = TokenBucket(upload) if upload else None
        self.download = TokenBucket(download) if download else None

    def describe(self) -> str:
        return self.inner.describe()

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        if self.upload is None:
            return self.inner.put_stream(path, chunks)
        if isinstance(chunks, (list, tuple)):  # small and replayable: pay, then send as is
            self.upload.take(sum(len(chunk) for chunk in chunks))
            return self.inner.put_stream(path, chunks)
        return self.inner.put_stream(path, paced(chunks, self.upload))

    def put_bytes(self, path: str, data: bytes) -> int:
        if self.upload is not None:
            self.upload.take(len(data))
        return self.inner.put_bytes(path, data)

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        stream = self.inner.get_stream(path, offset)
        return stream if self.download is None else paced(stream, self.download)

    def get_bytes(self, path: str) -> bytes:
        data = self.inner.get_bytes(path)
        if self.download is not None:
            self.download.take(len(data))
        return data

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        return self.inner.listdirs(paths)

    def expect_reads(self, paths: Sequence[str] = ()) -> None:
        self.inner.expect_reads(paths)

    def expect_writes(self) -> None:
        self.inner.expect_writes()

    def sibling(self) -> Storage | None:
        """None under a limit (a limited transfer gets no company); else the driver's own."""
        return None if self.upload or self.download else self.inner.sibling()

    def claim(self, path: str) -> bool:
        return self.inner.claim(path)

    def rmtree(self, path: str) -> None:
        self.inner.rmtree(path)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> None:
        self.inner.reset()

    def __getattr__(self, name: str):
        """Anything else a driver offers passes through unchanged."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def limited(storage: Storage, limits: Limits) -> Storage:
    """``storage`` held to ``--upload-limit`` / ``--download-limit``, or itself when neither is set."""
    if limits.upload is None and limits.download is None:
        return storage
    return Throttled(storage, limits.upload, limits.download)
