"""``[storage:NAME]`` sections: one backup written to several storages at once, as upstream's
multiple storage does. The stream is read once and fanned out; reads take each file from the first
storage that has it, so a restore works while any one copy is complete.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from freezer.errors import NotFound, StorageError
from freezer.storage.base import Storage

LOG = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()
DEPTH = 4  # chunks buffered per storage: a slow storage holds the others back, within this much


class Cancelled(StorageError):
    """An upload stopped because another storage of the same backup failed."""


class _Feed:
    """The chunks one storage's upload thread consumes; ``dead`` once that upload has ended badly."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=DEPTH)
        self.error: BaseException | None = None
        self.cancelled = threading.Event()

    def put(self, item) -> None:
        while self.error is None:
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise self.error

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.cancelled.is_set():
                    raise Cancelled("upload cancelled: another storage failed") from None
                continue
            if item is _END:
                return
            yield item


class MultiStorage(Storage):
    """Several storages behind one interface: writes go to all of them, reads to the first that has it."""

    kind = "multiple"

    def __init__(self, storages: list[Storage], names: Sequence[str] = ()):
        if not storages:
            raise StorageError("no [storage:NAME] section gives a storage")
        self.storages = storages
        self.names = list(names) or [f"storage:{index + 1}" for index in range(len(storages))]

    def describe(self) -> str:
        return " + ".join(storage.describe() for storage in self.storages)

    def copy_name(self, index: int) -> str:
        """``[storage:NAME] (where)`` of copy ``index``, for messages."""
        return f"[{self.names[index]}] ({self.storages[index].describe()})"

    def preferring(self, index: int) -> MultiStorage:
        """The same storages, reads going to copy ``index`` first (then the others, in order)."""
        order = [index] + [other for other in range(len(self.storages)) if other != index]
        return MultiStorage([self.storages[i] for i in order], [self.names[i] for i in order])

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        if isinstance(chunks, (list, tuple)):
            return [storage.put_stream(path, chunks) for storage in self.storages][0]
        feeds = [_Feed() for _ in self.storages]
        counts: list[int] = [0] * len(feeds)
        threads = [threading.Thread(target=self._upload, args=(index, path, feeds, counts), daemon=True,
                                    name=f"upload-{index}") for index in range(len(feeds))]
        for thread in threads:
            thread.start()
        try:
            for chunk in chunks:
                for feed in feeds:
                    feed.put(chunk)
            for feed in feeds:
                feed.put(_END)
        except BaseException as exc:
            for feed in feeds:
                feed.cancelled.set()
            for thread in threads:
                thread.join()
            if any(exc is feed.error for feed in feeds):
                raise _first_cause(feeds) from None
            raise
        for thread in threads:
            thread.join()
        if any(feed.error is not None for feed in feeds):
            raise _first_cause(feeds)
        return counts[0]

    def _upload(self, index: int, path: str, feeds: list[_Feed], counts: list[int]) -> None:
        feed = feeds[index]
        try:
            counts[index] = self.storages[index].put_stream(path, feed.chunks())
        except BaseException as exc:  # handed to the reading thread, which stops every upload
            feed.error = exc
            if isinstance(exc, StorageError) and not isinstance(exc, Cancelled):
                feed.error = type(exc)(f"{self.storages[index].describe()}: {exc}")
                feed.error.__cause__ = exc
            for other in feeds:
                other.cancelled.set()

    def put_bytes(self, path: str, data: bytes) -> int:
        for storage in self.storages:
            storage.put_bytes(path, data)
        return len(data)

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        stream, first = self._first(lambda storage: _started(storage.get_stream(path, offset)), path)
        while first is not None:
            yield first
            first = next(stream, None)

    def get_bytes(self, path: str) -> bytes:
        return self._first(lambda storage: storage.get_bytes(path), path)

    def size(self, path: str) -> int:
        return self._first(lambda storage: storage.size(path), path)

    def listdir(self, path: str) -> list[str]:
        """Every name any storage has: a backup missing from one copy is still found in another."""
        return sorted(set().union(*(storage.listdir(path) for storage in self.storages)))

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        listings = [storage.listdirs(paths) for storage in self.storages]
        return [sorted(set().union(*names)) for names in zip(*listings, strict=True)]

    def expect_reads(self, paths: Sequence[str] = ()) -> None:
        self.storages[0].expect_reads(paths)  # reads go to the first copy first

    def expect_writes(self) -> None:
        for storage in self.storages:
            storage.expect_writes()

    def claim(self, path: str) -> bool:
        """Claim ``path`` on every storage; when one has it taken, give back the others and say taken."""
        taken = []
        for storage in self.storages:
            if not storage.claim(path):
                for owned in taken:
                    owned.rmtree(path)
                return False
            taken.append(storage)
        return True

    def rmtree(self, path: str) -> None:
        for storage in self.storages:
            storage.rmtree(path)

    def close(self) -> None:
        for storage in self.storages:
            storage.close()

    def reset(self) -> None:
        for storage in self.storages:
            storage.reset()

    def _first(self, operation: Callable[[Storage], T], path: str) -> T:
        """``operation`` on the first storage that has ``path``."""
        for storage in self.storages:
            try:
                return operation(storage)
            except NotFound:
                LOG.debug("%s not in %s", path, storage.describe())
        raise NotFound(f"{path} is in none of the storages ({self.describe()})")


def _first_cause(feeds: list[_Feed]) -> BaseException:
    """The error that stopped the uploads: a storage's own failure before any cancellation."""
    errors = [feed.error for feed in feeds if feed.error is not None]
    return sorted(errors, key=lambda error: isinstance(error, Cancelled))[0]


def _started(stream: Iterator[bytes]) -> tuple[Iterator[bytes], bytes | None]:
    return stream, next(stream, None)
