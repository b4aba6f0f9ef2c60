"""``--lock-path DIR``: one lock file per backup name, so two agents never write the same backup at once.

Upstream freezer reads ``lock_path`` (``[oslo_concurrency]``, default ``$OSLO_LOCK_PATH``) as the
directory of oslo.concurrency's lock files, which only its os-brick engine takes. Here ``backup`` and
``admin`` hold ``DIR/freezer-<hostname>_<backup name>.lock`` (``flock``) while they run; a second
agent for the same name fails at once with one line. Without a lock path nothing is locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator

from freezer.errors import FreezerError

#: the actions that write to a backup name's chains
WRITERS = ("backup", "admin")
ENV = "OSLO_LOCK_PATH"


class LockHeld(FreezerError):
    """Another agent holds the lock of this backup name."""


def directory(lock_path: str | None, environ: dict | None = None) -> str | None:
    """``--lock-path``, else ``$OSLO_LOCK_PATH`` (upstream's default), else None."""
    env = os.environ if environ is None else environ
    chosen = lock_path if lock_path not in (None, "") else env.get(ENV)
    return os.path.expanduser(chosen) if chosen else None


def file_name(hostname: str, backup_name: str) -> str:
    """``freezer-<hostname>_<backup name>.lock``, with anything but ``[A-Za-z0-9._-]`` as ``_``."""
    return "freezer-" + re.sub(r"[^A-Za-z0-9._-]", "_", f"{hostname}_{backup_name}") + ".lock"


@contextlib.contextmanager
def held(conf) -> Iterator[str | None]:
    """Hold the backup name's lock while a writing action runs; yields its path, or None if not locked."""
    folder = directory(conf.lock_path)
    if not folder or conf.action not in WRITERS or conf.dry_run or not conf.backup_name:
        yield None
        return
    path = os.path.join(folder, file_name(conf.hostname, conf.backup_name))
    fd = _open(folder, path)
    try:
        _take(fd, path, conf.backup_name)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # closing releases the flock; the file stays, so no other agent races on its inode


def _open(folder: str, path: str) -> int:
    """The lock file, opened (and its directory made, mode 0700) or one line naming --lock-path."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise FreezerError(f"--lock-path {folder}: cannot open {path}: {exc.strerror}") from exc


def _take(fd: int, path: str, backup_name: str) -> None:
    """Take the lock without waiting; LockHeld naming the holder's pid if another agent has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FreezerError(f"--lock-path: cannot lock {path}: {exc.strerror}") from exc
        raise LockHeld(f"another freezer-agent{_holder(path)} is writing backup {backup_name!r} "
                       f"(it holds {path}): try again when it has finished") from None


def _holder(path: str) -> str:
    """`` (pid N)`` from the lock file, or nothing if it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="ascii") as handle:
            return f" (pid {int(handle.readline())})"
    return ""
