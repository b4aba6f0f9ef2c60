"""The actions by name: backup, restore, info and admin (freezer/actions/), for main.py."""

from __future__ import annotations

from freezer.actions.admin import AdminJob
from freezer.actions.backup import BackupJob
from freezer.actions.base import Job, require
from freezer.actions.info import InfoJob
from freezer.actions.restore import RestoreJob

JOBS = {"backup": BackupJob, "restore": RestoreJob, "info": InfoJob, "admin": AdminJob}

__all__ = ["JOBS", "AdminJob", "BackupJob", "InfoJob", "Job", "RestoreJob", "require"]
