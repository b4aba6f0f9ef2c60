"""``--consistency-check`` / ``--consistency-checksum``: one checksum of a file set, taken before a
backup and compared after a restore (upstream's semantics; the digest itself is this agent's).

The checksum covers what tar backs up: each entry's path relative to the root, its type, a regular
file's content and a symlink's target, in sorted order; excluded names and, unless mount points are
crossed, other file systems are left out as tar leaves them out.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterator, Sequence

from freezer.errors import FreezerError

BLOCK = 1 << 20


class ConsistencyError(FreezerError):
    """The restored files are not the files that were backed up."""


def checksum(path: str, excludes: Sequence[str] = (), cross_mounts: bool = False) -> str:
    """The sha256 of the file set at ``path`` (a directory, or one file under its own name)."""
    total = hashlib.sha256()
    for rel, full in _entries(path, excludes, cross_mounts):
        total.update(_describe(rel, full))
    return total.hexdigest()


def compare(restored: str, expected: str, where: str) -> None:
    """Fail with one line unless the files at ``restored`` have the checksum ``expected``."""
    actual = checksum(restored)
    if actual != expected.strip().lower():
        raise ConsistencyError(f"consistency check failed: the files restored in {where} have checksum "
                               f"{actual}, the backup recorded {expected.strip()}")


def _entries(path: str, excludes: Sequence[str], cross_mounts: bool) -> Iterator[tuple[str, str]]:
    if not os.path.isdir(path) or os.path.islink(path):
        yield os.path.basename(path), path
        return
    device = os.lstat(path).st_dev
    for parent, dirs, files in os.walk(path):
        dirs.sort()
        kept = []
        for name in dirs:
            full = os.path.join(parent, name)
            rel = os.path.relpath(full, path)
            if _excluded(name, rel, excludes):
                continue
            yield rel, full
            if os.path.islink(full) or (not cross_mounts and os.lstat(full).st_dev != device):
                continue  # tar stores the link, or the mount point without what is mounted there
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(parent, name), path)
            if not _excluded(name, rel, excludes):
                yield rel, os.path.join(parent, name)


def _excluded(name: str, rel: str, excludes: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(rel, pattern) for pattern in excludes)


def _describe(rel: str, full: str) -> bytes:
    """One entry as hashed bytes: kind, path and content (or link target)."""
    if os.path.islink(full):
        body = b"L" + os.fsencode(os.readlink(full))
    elif os.path.isdir(full):
        body = b"D"
    elif os.path.isfile(full):
        body = b"F" + _file_digest(full)
    else:
        body = b"S"  # device, fifo or socket: present, no content
    return hashlib.sha256(os.fsencode(rel) + b"\0" + body).digest()


def _file_digest(path: str) -> bytes:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
    except OSError as exc:
        raise ConsistencyError(f"consistency check: cannot read {path}: {exc.strerror}") from exc
    return digest.digest()
