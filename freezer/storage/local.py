"""Storage in a directory of the local file system (or a mounted share)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Iterator

from freezer.common.settings import LocalSettings
from freezer.errors import NoSpace, NotFound, PermissionDenied, StorageError
from freezer.storage.base import Storage, temporary_name

READ_CHUNK = 1 << 20


class LocalStorage(Storage):
    """Files below ``root``; uploads go to a temporary name renamed into place."""

    kind = "local"
    streams_in_caller = True

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))

    def describe(self) -> str:
        return f"local:{self.root}"

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path)

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        target = self._full(path)
        temp = temporary_name(target)
        written = 0
        with self._errors(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                with open(temp, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                        written += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, target)
            except BaseException:
                _remove_quietly(temp)
                raise
            _fsync_dir(os.path.dirname(target))
        return written

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        with self._errors(path):
            handle = open(self._full(path), "rb")
        with handle:
            with self._errors(path):
                handle.seek(offset)
            while True:
                with self._errors(path):  # not around the yield: the consumer's own errors stay its own
                    chunk = handle.read(READ_CHUNK)
                if not chunk:
                    return
                yield chunk

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._full(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def rmtree(self, path: str) -> None:
        with self._errors(path):
            full = self._full(path)
            if os.path.isdir(full) and not os.path.islink(full):  # a link goes, never what it points to
                shutil.rmtree(full)
            elif os.path.lexists(full):
                os.unlink(full)

    def size(self, path: str) -> int:
        with self._errors(path):
            return os.stat(self._full(path)).st_size

    def claim(self, path: str) -> bool:
        full = self._full(path)
        with self._errors(path):
            os.makedirs(os.path.dirname(full), exist_ok=True)
            try:
                os.mkdir(full)
            except FileExistsError:
                return False
            _fsync_dir(os.path.dirname(full))
        return True

    def _errors(self, path: str) -> _OsErrors:
        return _OsErrors(self, path)


class _OsErrors:
    """Turn OSError into the storage error family, naming the path."""

    def __init__(self, storage: LocalStorage, path: str):
        self.storage = storage
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, OSError):
            return False
        where = os.path.join(self.storage.root, self.path)
        if exc.errno == errno.ENOENT:
            raise NotFound(f"{where} does not exist") from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PermissionDenied(
                f"cannot write or read {where}: {exc.strerror} (check --container)"
            ) from exc
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"no space left on {self.storage.root} (free space or change --container)") from exc
        raise StorageError(f"{where}: {exc.strerror or exc}") from exc


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def from_settings(settings: LocalSettings) -> LocalStorage:
    """``--storage local``: the container is the directory."""
    return LocalStorage(settings.container)
