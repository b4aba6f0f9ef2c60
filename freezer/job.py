"""The actions by name: backup, restore, info and admin (freezer/actions/), for main.py.

Each action's module is imported when that action runs: an info or admin run never loads the
backup and restore engine (tar, ciphers, incremental state), nor a backup the restore side.
"""

from __future__ import annotations

from freezer.actions.base import Job, require


def job_class(action: str) -> type[Job]:
    """The Job class of ``action`` (backup, restore, info or admin), its module imported now."""
    if action == "backup":
        from freezer.actions.backup import BackupJob  # with restore: ~25 ms of imports that info/admin skip

        return BackupJob
    if action == "restore":
        from freezer.actions.restore import RestoreJob

        return RestoreJob
    if action == "info":
        from freezer.actions.info import InfoJob

        return InfoJob
    if action == "admin":
        from freezer.actions.admin import AdminJob

        return AdminJob
    raise KeyError(action)


__all__ = ["Job", "job_class", "require"]
