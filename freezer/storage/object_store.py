"""What S3 and Swift share: keys under a prefix, one object or many parts, listings by prefix, claims.

A driver subclasses ObjectStore and supplies only its protocol's requests (the ``_`` hooks below);
the keys it is handed, and so the layout on the server, are the same for every object store.
"""

from __future__ import annotations

import abc
import itertools
import posixpath
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from freezer.storage import chunking
from freezer.storage.base import CLAIM_MARKER, Storage

T = TypeVar("T")
#: how each request of an upload is repeated: (what, request) -> its result
RequestRetry = Callable[[str, Callable[[], Any]], Any]


def _once(action: str, request: Callable[[], T]) -> T:
    """No retry: the request runs once (a bare driver's default)."""
    return request()


def directory_prefix(key: str) -> str:
    """The prefix every key below ``key`` starts with: ``key/``, or nothing at the top."""
    return key.rstrip("/") + "/" if key else ""


class ObjectStore(Storage):
    """Objects under ``settings.prefix`` in one bucket or container; ``/`` in a path separates key parts.

    An upload of one part is one object; a longer one goes up in parts (``part_size`` each) and becomes
    visible whole when the driver joins them. Each request of an upload is retried by ``upload_retry``,
    which the Retrying wrapper sets: a stream cannot be replayed, but the part in flight can.
    """

    def __init__(self, settings: Any):
        self.settings = settings
        self._session = None
        self._ready = False
        self._token = uuid.uuid4().hex  # written into our claims: a retried claim knows its own
        self._claimed: set[str] = set()  # paths this instance won: claiming one again is False
        self.upload_retry: RequestRetry = _once

    # -- what each driver supplies -------------------------------------------------------------

    @property
    @abc.abstractmethod
    def part_size(self) -> int:
        """Bytes per part of a large upload."""

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new client of the server."""

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Create the bucket or containers before the first write, when absent."""

    @abc.abstractmethod
    def _put_object(self, path: str, key: str, body: bytes) -> None:
        """Store ``body`` as the one object ``key``."""

    @abc.abstractmethod
    def _put_parts(self, path: str, key: str, parts: Iterator[bytes]) -> int:
        """Store ``parts`` as object ``key``, visible only once all are there; leave nothing on failure."""

    @abc.abstractmethod
    def _download(self, path: str, key: str, offset: int) -> Iterator[bytes]:
        """Yield object ``key`` from byte ``offset``."""

    @abc.abstractmethod
    def _list(self, path: str, prefix: str, delimiter: str | None) -> Iterable[str]:
        """Keys starting with ``prefix`` (with a delimiter: and the ``.../`` prefixes that group the rest)."""

    @abc.abstractmethod
    def _remove(self, path: str, key: str, keys: list[str]) -> None:
        """Delete object ``key`` and ``keys`` (all below it), and what the driver keeps beside them."""

    @abc.abstractmethod
    def _object_size(self, path: str, key: str) -> int:
        """Size of object ``key``."""

    @abc.abstractmethod
    def _put_claim(self, path: str) -> bool:
        """Write this instance's claim marker below ``path``; True if no other claimant has one."""

    @abc.abstractmethod
    def _error(self, exc: Exception, action: str, path: str) -> Exception:
        """``exc`` of the client library as one of the ``freezer.errors`` family."""

    # -- the Storage interface, the same for every object store ---------------------------------

    @property
    def session(self) -> Any:
        """The client, connected on first use and again after ``reset``."""
        if self._session is None:
            self._session = self._connect()
        return self._session

    def describe(self) -> str:
        return self.settings.where

    def key(self, path: str) -> str:
        """The object key of ``path``: below the prefix, without leading or trailing ``/``."""
        prefix = self.settings.prefix
        return posixpath.join(prefix, path.strip("/")) if prefix else path.strip("/")

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        self.upload_retry(f"prepare the upload of {path}", self._ensure_ready)
        key = self.key(path)
        parts = chunking.parts(chunks, self.part_size)
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:
            self.upload_request("upload", path, lambda: self._put_object(path, key, first))
            return len(first)
        return self._put_parts(path, key, itertools.chain((first, second), parts))

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        try:
            yield from self._download(path, self.key(path), offset)
        except Exception as exc:
            raise self._error(exc, "download", path) from exc

    def listdir(self, path: str) -> list[str]:
        prefix = directory_prefix(self.key(path))
        names = {entry[len(prefix):].rstrip("/") for entry in self._list(path, prefix, "/")}
        return sorted(name for name in names if name)

    def rmtree(self, path: str) -> None:
        below = path.rstrip("/") + "/"
        self._claimed = {p for p in self._claimed if p != path and not p.startswith(below)}
        key = self.key(path)
        self._remove(path, key, list(self._list(path, directory_prefix(key) or "/", None)))

    def size(self, path: str) -> int:
        return self.request("size of", path, lambda: self._object_size(path, self.key(path)))

    def claim(self, path: str) -> bool:
        """Put this instance's marker below ``path`` (see ``CLAIM_MARKER``); a path won once is not won again."""
        if path in self._claimed:
            return False
        self._ensure_ready()
        if not self._put_claim(path):
            return False
        self._claimed.add(path)
        return True

    def claim_key(self, path: str) -> str:
        """The key of the claim marker of ``path``."""
        return self.key(posixpath.join(path, CLAIM_MARKER))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def reset(self) -> None:
        self.close()

    # -- helpers for the drivers ----------------------------------------------------------------

    def request(self, action: str, path: str, call: Callable[[], T]) -> T:
        """``call()``, its failure translated into the ``freezer.errors`` family."""
        try:
            return call()
        except Exception as exc:
            raise self._error(exc, action, path) from exc

    def upload_request(self, action: str, path: str, call: Callable[[], T]) -> T:
        """``request`` for one request of an upload, retried by ``upload_retry``.

        ``call`` must reach the client through ``session`` (or a property over it) each time, so that a
        retry after ``reset`` uses a new connection.
        """
        return self.upload_retry(f"{action} {path}", lambda: self.request(action, path, call))

    def _ensure_ready(self) -> None:
        if not self._ready:
            self._prepare()
            self._ready = True
