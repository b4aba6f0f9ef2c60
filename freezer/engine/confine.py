"""Keep a restore of many levels inside its target directory.

GNU tar never writes through a symlink it extracted itself: it leaves an empty placeholder and makes
the link when the archive ends. That protection lasts one ``tar`` process, and each level runs in its
own, so a symlink restored by level 0 (or already in the target) would let level 1 write, rename or
purge outside. ``SymlinkGuard`` does across levels what tar does within one: before each level every
symlink in the target becomes an empty placeholder file, and once the last level is in, each link
whose placeholder nobody touched is made again.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator

PLACEHOLDER_MODE = 0


@dataclasses.dataclass(frozen=True)
class HeldLink:
    """A symlink replaced by a placeholder: what to make again, and how to know the placeholder."""

    path: str
    target: str
    uid: int
    gid: int
    mtime_ns: int
    placeholder: tuple[int, int]


class SymlinkGuard:
    """Replaces the symlinks below ``root`` with placeholders while levels are applied."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.held: dict[str, HeldLink] = {}

    def hold_all(self) -> int:
        """Replace every symlink below ``root`` with a placeholder; return how many were new."""
        links = list(_symlinks_below(self.root))
        for directory, names in _by_directory(links).items():
            with _times_kept(directory):
                for name in names:
                    self._hold(os.path.join(directory, name))
        return len(links)

    def release(self) -> None:
        """Make again each held link whose placeholder is still there, untouched."""
        held, self.held = self.held, {}
        for directory, names in _by_directory(held).items():
            if not os.path.isdir(directory) or not self._inside(directory):
                continue  # a later level removed the directory, and its links with it
            with _times_kept(directory):
                for name in names:
                    _restore_link(held[os.path.join(directory, name)])

    def link_above(self, member: str) -> HeldLink | None:
        """The held link that a member name (relative to ``root``) would pass through, if any."""
        parts = [p for p in member.split("/") if p not in ("", ".")]
        for depth in range(1, len(parts)):
            held = self.held.get(os.path.join(self.root, *parts[:depth]))
            if held is not None:
                return held
        return None

    def _hold(self, path: str) -> None:
        info = os.lstat(path)
        target = os.readlink(path)
        temp = os.path.join(os.path.dirname(path), f".freezer-link-{uuid.uuid4().hex[:12]}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PLACEHOLDER_MODE)
        try:
            placeholder = os.fstat(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)  # replaces the link itself, never what it points to
        self.held[path] = HeldLink(path, target, info.st_uid, info.st_gid, info.st_mtime_ns,
                                   (placeholder.st_dev, placeholder.st_ino))

    def _inside(self, directory: str) -> bool:
        real = os.path.realpath(directory)
        return real == directory and (real == self.root or real.startswith(self.root + os.sep))


def _symlinks_below(root: str) -> Iterator[str]:
    """Every symlink below ``root``, without following any."""
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    yield entry.path
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)


def _by_directory(paths) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for path in paths:
        grouped.setdefault(os.path.dirname(path), []).append(os.path.basename(path))
    return grouped


def _restore_link(link: HeldLink) -> None:
    try:
        info = os.lstat(link.path)
    except FileNotFoundError:
        return  # a later level removed it
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != link.placeholder or info.st_size:
        return  # a later level put something else there
    os.unlink(link.path)
    os.symlink(link.target, link.path)
    try:
        os.lchown(link.path, link.uid, link.gid)
    except PermissionError:
        pass  # not root: the link is ours, as tar would leave it
    os.utime(link.path, ns=(link.mtime_ns, link.mtime_ns), follow_symlinks=False)


class _times_kept:
    """Put a directory's access and modification times back after its entries change."""

    def __init__(self, directory: str):
        self.directory = directory

    def __enter__(self) -> None:
        info = os.lstat(self.directory)
        self.times = (info.st_atime_ns, info.st_mtime_ns)

    def __exit__(self, *exc) -> None:
        try:
            os.utime(self.directory, ns=self.times, follow_symlinks=False)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.EPERM):
                raise


_DOT_DOT = re.compile(r"^tar: (.*): Member name contains '\.\.'$")
_NOT_A_DIR = re.compile(r"^tar: (.*): Cannot (?:open|mkdir|create symlink to .*|hard link to .*|rename .*|"
                        r"stat|utime|change mode to .*|change ownership to .*|remove|rmdir)"
                        r": Not a directory$")
_HARD_LINK = re.compile(r"^tar: (.*): Cannot hard link to [‘'`](.*)[’']: .*$")
_STRIPPED = re.compile(r"^tar: Removing leading `([^']*)' from (member names|hard link targets)$")


def refusal(stderr: str, listing: str, guard: SymlinkGuard) -> str | None:
    """Why tar's output shows a member that tried to leave the target, naming it; None if none did."""
    for line in stderr.splitlines():
        if match := _DOT_DOT.match(line):
            return f"member {match.group(1)} has '..' in its name"
        if (match := _NOT_A_DIR.match(line)) and (held := guard.link_above(match.group(1))):
            return f"member {match.group(1)} would go through {_described(held, guard)}"
        if (match := _HARD_LINK.match(line)) and (held := guard.link_above(match.group(2))):
            return f"hard link {match.group(1)} to {match.group(2)} would go through {_described(held, guard)}"
    for line in stderr.splitlines():
        if match := _STRIPPED.match(line):
            return _stripped_reason(match.group(1), match.group(2), listing)
    return None


def _described(held: HeldLink, guard: SymlinkGuard) -> str:
    return f"the symlink {os.path.relpath(held.path, guard.root)} -> {held.target}"


def _stripped_reason(prefix: str, what: str, listing: str) -> str:
    if what == "member names":
        absolute = next((name for name in listing.splitlines() if name.startswith(prefix)), None)
        if absolute:
            return f"member {absolute} has an absolute name"
        return f"a member name starts with {prefix!r}"
    return f"a hard link points outside the backup (its target starts with {prefix!r})"
