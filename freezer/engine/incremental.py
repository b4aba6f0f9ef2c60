"""GNU tar's snapshot file (``--listed-incremental``, format 2), read and rewritten before a level.

Why: when a directory is not at the path where the snapshot saw its inode, tar looks the inode up by
device and number and, if another directory of the last level had it, records a *rename* ('R'/'T'
entries in the archive's first directory) and dumps only changed files. Swapped directories, or a
new directory given a deleted one's inode, make renames that extraction cannot replay ("Cannot rename
./d3/s9 to ./d1/s9": tar exits 2 and the chain no longer restores). Tar has no option to stop it, but
its look-up compares the device number, and ``--no-check-device`` (always given) makes the match by
path compare inode numbers only. So a snapshot whose devices are all 0 (no file system has device 0)
keeps every unchanged directory incremental and makes every moved or replaced one new: it is dumped
whole, and the stream carries no rename for any tar (or upstream freezer) to replay. The snapshots
we store have devices 0 too, which marks a level as free of renames.
"""

from __future__ import annotations

import dataclasses

from freezer.errors import FreezerError

NO_DEVICE = b"0"  # in every directory record of a snapshot we store: its level and its parent's hold no rename
_VERSION_2 = b"-2\n"


class NewChain(FreezerError):
    """The next level cannot build on its parent safely: the backup starts a new chain instead."""


@dataclasses.dataclass
class Directory:
    """One directory record: the fields tar wrote, and its dumpdir entries ('Y', 'N', 'D' + name)."""

    nfs: bytes
    mtime: tuple[bytes, bytes]
    device: bytes
    inode: bytes
    name: bytes
    entries: list[bytes]


@dataclasses.dataclass
class Snapshot:
    """A whole snapshot file: the header line, the time of the backup that wrote it, its directories."""

    header: bytes
    time: tuple[bytes, bytes]
    directories: list[Directory]

    def to_bytes(self) -> bytes:
        """The file as tar reads it."""
        out = [self.header, self.time[0], b"\0", self.time[1], b"\0"]
        for d in self.directories:
            fields = (d.nfs, *d.mtime, d.device, d.inode, d.name, *d.entries)
            out += [field + b"\0" for field in fields] + [b"\0\0"]
        return b"".join(out)


def parse(data: bytes, where: str = "snapshot") -> Snapshot:
    """The snapshot in ``data``; FreezerError naming ``where`` when it is not format 2."""
    header, newline, body = data.partition(b"\n")
    if not newline or not (header + newline).endswith(_VERSION_2) or not header.startswith(b"GNU tar-"):
        raise FreezerError(f"{where} is not a GNU tar snapshot file of format 2 (it starts {data[:20]!r})")
    fields = body.split(b"\0")
    if len(fields) < 3 or fields[-1] != b"":
        raise FreezerError(f"{where} is cut short: not a whole GNU tar snapshot file")
    directories, at = [], 2
    try:
        while at < len(fields) - 1:
            entries_end = fields.index(b"", at + 6)
            if fields[entries_end + 1] != b"" or entries_end + 2 > len(fields) - 1:
                raise ValueError(at)
            directories.append(Directory(fields[at], (fields[at + 1], fields[at + 2]), fields[at + 3],
                                         fields[at + 4], fields[at + 5], fields[at + 6:entries_end]))
            at = entries_end + 2
    except (ValueError, IndexError):
        raise FreezerError(f"{where} has a broken directory record: not a whole GNU tar snapshot file") from None
    return Snapshot(header + newline, (fields[0], fields[1]), directories)


def read(path: str) -> Snapshot:
    """The snapshot file at ``path``."""
    with open(path, "rb") as handle:
        return parse(handle.read(), path)


def prepare(path: str, parent_level: int, name: str) -> tuple[bytes, bytes]:
    """Make the parent level's snapshot at ``path`` (stored as ``name``) ready for tar; return its time.

    NewChain if it is not a whole snapshot, or if the parent is an incremental level written with
    devices (by upstream freezer or an older agent): that level may hold a rename a restore cannot
    replay, and so would fail every level built on it.
    """
    try:
        snapshot = read(path)
    except FreezerError as exc:
        raise NewChain(str(exc).replace(path, name, 1)) from None
    if parent_level > 0 and any(d.device != NO_DEVICE for d in snapshot.directories):
        raise NewChain(f"level {parent_level} was written by an agent that let tar record directory renames, "
                       "which a restore may not replay")
    _write_without_devices(path, snapshot)
    return snapshot.time


def forget_devices(path: str) -> int:
    """Rewrite the snapshot file at ``path`` with every directory's device 0; return how many it holds."""
    snapshot = read(path)
    _write_without_devices(path, snapshot)
    return len(snapshot.directories)


def stored_form(path: str) -> bytes:
    """The snapshot file at ``path`` as a level stores it (every directory's device 0: no rename); the
    file is left as it is."""
    return _without_devices(read(path)).to_bytes()


def _without_devices(snapshot: Snapshot) -> Snapshot:
    for directory in snapshot.directories:
        directory.device = NO_DEVICE
    return snapshot


def _write_without_devices(path: str, snapshot: Snapshot) -> None:
    with open(path, "wb") as handle:
        handle.write(_without_devices(snapshot).to_bytes())
