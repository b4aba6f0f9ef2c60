"""Hard links a level would store only in part, found after tar wrote it.

Tar stores a file whose data or inode changed since the last level under every name (the inode's
times are the same for each), but a directory stored whole (new, moved or replaced) stores an
unchanged file too, while its other names in unchanged directories are left as they were. Extraction
then writes that name as a file of its own and the link is gone: the format cannot say "this name is
still linked to one restored earlier". Such a level is not kept; the backup starts a new chain.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from freezer.engine import incremental


class SplitLink(incremental.NewChain):
    """A level would store one name of a hard-linked file but not another."""


def check(source: str, snapshot_path: str, since: tuple[bytes, bytes]) -> None:
    """Raise SplitLink if the level tar recorded in ``snapshot_path`` splits a hard-link group.

    ``source`` is what tar backed up; ``since`` the time of the snapshot the level started from.
    """
    root = source if os.path.isdir(source) else os.path.dirname(source)
    snapshot = incremental.read(snapshot_path)
    before = int(since[0]) * 10**9 + int(since[1])
    unchanged = {}  # (device, inode) of old hard-linked files stored in this level -> names stored
    for name in _names(snapshot, b"Y"):
        info = _lstat(root, name)
        if info and stat.S_ISREG(info.st_mode) and info.st_nlink > 1 \
                and max(info.st_mtime_ns, info.st_ctime_ns) < before:
            unchanged.setdefault((info.st_dev, info.st_ino), []).append(name)
    if not unchanged:
        return
    # Rare (an old hard-linked file in a moved directory): look among the names not stored.
    for name in _names(snapshot, b"N"):
        info = _lstat(root, name)
        if info and (info.st_dev, info.st_ino) in unchanged:
            stored = unchanged[(info.st_dev, info.st_ino)][0]
            raise SplitLink(f"{_shown(stored)} is stored but its hard link {_shown(name)} is not "
                            "(a directory holding one of them moved or was replaced): an incremental level "
                            "would restore them as two files")


def _names(snapshot: incremental.Snapshot, flag: bytes) -> Iterator[bytes]:
    """The names (relative to tar's directory) that the dumpdirs mark with ``flag`` ('Y' or 'N')."""
    for directory in snapshot.directories:
        for entry in directory.entries:
            if entry[:1] == flag:
                yield os.path.join(directory.name, entry[1:])


def _lstat(root: str, name: bytes) -> os.stat_result | None:
    try:
        return os.lstat(os.path.join(os.fsencode(root), name))
    except OSError:
        return None  # gone since tar read it: the next level sees that


def _shown(name: bytes) -> str:
    return os.fsdecode(name).removeprefix("./")
