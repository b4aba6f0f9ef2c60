"""Where a restore writes: a staging directory moved into place at the end, or the target itself.

An absent or empty ``--restore-abs-path`` is restored through a hidden staging directory inside it,
so a failed restore leaves it as it was. A non-empty one (``--overwrite``) is restored in place, as
upstream freezer does: a failure there leaves earlier levels and part of the failing one.
"""

from __future__ import annotations

import os
import shutil
import uuid

STAGING_PREFIX = ".freezer-restore-"


class RestoreTarget:
    """The directory levels are applied to, and what to do with it on success or failure."""

    def __init__(self, target: str):
        self.target = target
        self.created: str | None = None
        self.staged = not os.path.isdir(target) or not os.listdir(target)
        self.path = target

    def open(self) -> str:
        """Make the directory to extract into and return it."""
        if not os.path.isdir(self.target):
            self.created = _topmost_missing(self.target)
            os.makedirs(self.target)
        if self.staged:
            self.path = os.path.join(self.target, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
            os.mkdir(self.path, 0o700)
        return self.path

    def commit(self) -> None:
        """Move a staged restore into the target, with the attributes of the backup's root."""
        if not self.staged:
            return
        root = os.lstat(self.path)
        for name in os.listdir(self.path):
            os.rename(os.path.join(self.path, name), os.path.join(self.target, name))
        os.rmdir(self.path)
        _copy_attributes(root, self.target)

    def discard(self) -> None:
        """Undo a staged restore: the target is as it was (absent, or empty)."""
        if not self.staged:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        if self.created:
            shutil.rmtree(self.created, ignore_errors=True)

    def state_after_failure(self) -> str:
        """What a failure leaves, for the error line."""
        if self.staged:
            return f"nothing was restored ({self.target} is as it was)"
        return f"{self.target} now holds the levels before it and part of this one"


def _topmost_missing(path: str) -> str:
    """The highest directory of ``path`` that does not exist yet (the one to remove on failure)."""
    missing = path
    parent = os.path.dirname(missing)
    while parent != missing and not os.path.exists(parent):
        missing, parent = parent, os.path.dirname(parent)
    return missing


def _copy_attributes(source: os.stat_result, target: str) -> None:
    """Owner, mode and times of the backup's root onto the target, as far as we may set them."""
    changes = (lambda: os.chown(target, source.st_uid, source.st_gid),
               lambda: os.chmod(target, source.st_mode & 0o7777),
               lambda: os.utime(target, ns=(source.st_atime_ns, source.st_mtime_ns)))
    for change in changes:
        try:
            change()
        except PermissionError:
            pass  # not root, or not our directory: it keeps what it had, as tar would leave it
