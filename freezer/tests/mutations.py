"""Seeded random changes to a directory tree between backup levels, and what a restore must give back.

``TreeMutator(root, seed)`` builds a small tree and then changes it the ways that break incremental
tar chains: create, modify, delete, rename and swap (files and directories, across directories),
file <-> directory <-> symlink, symlink retarget, hard links, and a directory deleted just before
another is made (ext4 hands the freed inode to the new one). The same seed gives the same changes.
``describe(root)`` is what a restore is compared on: types, modes, contents, file mtimes, symlink
targets and hard-link groups.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat

NAMES = ("a", "b", "c", "d", "s1", "s2", "s9")  # few names, so a new entry often takes an old one's name
FILE_MODES = (0o644, 0o600, 0o640, 0o755)
DIR_MODES = (0o755, 0o750, 0o700)


def describe(root: str) -> dict:
    """Every entry below ``root`` (type, mode, content or target, file mtime) and the hard-link groups."""
    entries, inodes = {}, {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            mode = oct(stat.S_IMODE(info.st_mode))
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", mode)
            else:
                entries[rel] = ("file", mode, info.st_mtime_ns, _sha256(path))
                inodes.setdefault((info.st_dev, info.st_ino), []).append(rel)
    groups = sorted(sorted(paths) for paths in inodes.values() if len(paths) > 1)
    return {"entries": entries, "hard_links": groups}


def differences(expected: dict, actual: dict, limit: int = 12) -> list[str]:
    """Lines naming what ``actual`` gets wrong against ``expected`` (both from ``describe``)."""
    lines = []
    want, got = expected["entries"], actual["entries"]
    for rel in sorted(set(want) | set(got)):
        if want.get(rel) != got.get(rel):
            lines.append(f"{rel}: expected {want.get(rel)}, restored {got.get(rel)}")
    if expected["hard_links"] != actual["hard_links"]:
        lines.append(f"hard links: expected {expected['hard_links']}, restored {actual['hard_links']}")
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


class TreeMutator:
    """A tree below ``root`` and seeded random changes to it; ``log`` says what was done."""

    def __init__(self, root: str, seed: int):
        self.root = root
        self.rng = random.Random(seed)
        self.log: list[str] = []
        self.serial = 0

    def populate(self) -> None:
        """The starting tree: a few directories two deep, files, a symlink and a hard link."""
        for top in ("d1", "d2", "d3"):
            for sub in self.rng.sample(NAMES, 2):
                self._write(os.path.join(self.root, top, sub, "f"))
            self._write(os.path.join(self.root, top, "g"))
        os.symlink("../d2", os.path.join(self.root, "d1", "up"))
        os.link(os.path.join(self.root, "d1", "g"), os.path.join(self.root, "d3", "hard"))

    def mutate(self, count: int) -> list[str]:
        """Apply ``count`` random changes; return their descriptions."""
        done = []
        while len(done) < count:
            operation = self.rng.choice(OPERATIONS)
            change = operation(self)
            if change:
                done.append(change)
        self.log += done
        return done

    # the changes: each returns what it did, or None when the tree has nothing it applies to

    def create_file(self) -> str | None:
        path = self._new_path(self._pick(dirs=True, root=True))
        self._write(path)
        return f"create file {self._rel(path)}"

    def create_dir(self) -> str | None:
        path = self._new_path(self._pick(dirs=True, root=True))
        os.mkdir(path, self.rng.choice(DIR_MODES))
        os.chmod(path, self.rng.choice(DIR_MODES))
        if self.rng.random() < 0.7:
            self._write(os.path.join(path, self.rng.choice(NAMES)))
        return f"create dir {self._rel(path)}"

    def modify(self) -> str | None:
        path = self._pick(files=True)
        if not path:
            return None
        if self.rng.random() < 0.3:
            os.chmod(path, self.rng.choice(FILE_MODES))
            return f"chmod {self._rel(path)}"
        with open(path, "r+b") as handle:  # in place: hard links see it too
            handle.truncate(0)
            handle.write(self._content())
        return f"modify {self._rel(path)}"

    def delete(self) -> str | None:
        path = self._pick(files=True, dirs=True, links=True)
        if not path:
            return None
        _remove(path)
        return f"delete {self._rel(path)}"

    def rename(self) -> str | None:
        path = self._pick(files=True, dirs=True, links=True)
        if not path:
            return None
        parent = self._pick(dirs=True, root=True, outside=path)
        new = self._new_path(parent)
        os.rename(path, new)
        return f"rename {self._rel(path)} -> {self._rel(new)}"

    def swap(self) -> str | None:
        first = self._pick(dirs=True, files=True, links=True)
        second = first and self._pick(dirs=True, files=True, links=True, outside=first, unrelated=first)
        if not second:
            return None
        temp = os.path.join(self.root, ".swap")
        os.rename(first, temp)
        os.rename(second, first)
        os.rename(temp, second)
        return f"swap {self._rel(first)} <-> {self._rel(second)}"

    def replace_type(self) -> str | None:
        path = self._pick(files=True, dirs=True, links=True)
        if not path:
            return None
        _remove(path)
        kind = self.rng.choice(("file", "dir", "link"))
        if kind == "file":
            self._write(path)
        elif kind == "dir":
            os.mkdir(path)
            self._write(os.path.join(path, self.rng.choice(NAMES)))
        else:
            os.symlink(self._link_target(path), path)
        return f"replace {self._rel(path)} with a {kind}"

    def symlink(self) -> str | None:
        existing = self._pick(links=True) if self.rng.random() < 0.5 else None
        path = existing or self._new_path(self._pick(dirs=True, root=True))
        temp = os.path.join(os.path.dirname(path), ".link")
        os.symlink(self._link_target(path), temp)
        os.rename(temp, path)
        return f"{'retarget' if existing else 'create'} symlink {self._rel(path)} -> {os.readlink(path)}"

    def hard_link(self) -> str | None:
        source = self._pick(files=True)
        if not source:
            return None
        path = self._new_path(self._pick(dirs=True, root=True))
        os.link(source, path)
        return f"hard link {self._rel(path)} = {self._rel(source)}"

    def reuse_inode(self) -> str | None:
        gone = self._pick(dirs=True)
        if not gone:
            return None
        _remove(gone)
        path = self._new_path(self._pick(dirs=True, root=True))
        os.mkdir(path)
        self._write(os.path.join(path, self.rng.choice(NAMES)))
        return f"delete dir {self._rel(gone)}, create dir {self._rel(path)}"

    def chmod_dir(self) -> str | None:
        path = self._pick(dirs=True)
        if not path:
            return None
        os.chmod(path, self.rng.choice(DIR_MODES))
        return f"chmod dir {self._rel(path)}"

    # helpers

    def _entries(self) -> list[tuple[str, str]]:
        """Every (path, kind) below the root, symlinks not followed."""
        found = []
        for parent, dirs, files in os.walk(self.root):
            for name in sorted(dirs + files):
                path = os.path.join(parent, name)
                found.append((path, _kind(path)))
        return sorted(found)

    def _pick(self, files: bool = False, dirs: bool = False, links: bool = False, root: bool = False,
              outside: str | None = None, unrelated: str | None = None) -> str | None:
        """A random entry of the kinds asked for; ``outside``: not it nor below it."""
        kinds = {kind for kind, wanted in (("file", files), ("dir", dirs), ("link", links)) if wanted}
        choices = [path for path, kind in self._entries() if kind in kinds]
        choices += [self.root] if root else []
        if outside:
            choices = [p for p in choices if p != outside and not p.startswith(outside + os.sep)]
        if unrelated:
            choices = [p for p in choices if not unrelated.startswith(p + os.sep)]
        return self.rng.choice(choices) if choices else None

    def _new_path(self, parent: str) -> str:
        """A name not yet in ``parent``: one of the few NAMES when free, else a fresh one."""
        free = [name for name in NAMES if not os.path.lexists(os.path.join(parent, name))]
        if free and self.rng.random() < 0.8:
            return os.path.join(parent, self.rng.choice(free))
        self.serial += 1
        return os.path.join(parent, f"n{self.serial}")

    def _link_target(self, path: str) -> str:
        """A relative target (an entry, maybe a directory, or nothing) or an absolute dangling one."""
        if self.rng.random() < 0.1:
            return "/nonexistent/target"
        other = self._pick(files=True, dirs=True, outside=path)
        if not other or self.rng.random() < 0.15:
            return "missing"
        return os.path.relpath(other, os.path.dirname(path))

    def _write(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(self._content())
        os.chmod(path, self.rng.choice(FILE_MODES))

    def _content(self) -> bytes:
        self.serial += 1
        return f"{self.serial}\n".encode() * self.rng.choice((1, 10, 3000))

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)


OPERATIONS = (TreeMutator.create_file, TreeMutator.create_dir, TreeMutator.modify, TreeMutator.delete,
              TreeMutator.rename, TreeMutator.rename, TreeMutator.swap, TreeMutator.swap,
              TreeMutator.replace_type, TreeMutator.symlink, TreeMutator.hard_link, TreeMutator.reuse_inode,
              TreeMutator.reuse_inode, TreeMutator.chmod_dir)


def _kind(path: str) -> str:
    mode = os.lstat(path).st_mode
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"


def _remove(path: str) -> None:
    if _kind(path) == "dir":
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
