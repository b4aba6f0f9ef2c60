"""What every action shares: the options it requires, its storage and its result document."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from oslo_config import cfg

from freezer.actions import progress
from freezer.common import dates
from freezer.errors import FreezerError
from freezer.storage.base import Storage
from freezer.storage.chains import BackupRef
from freezer.storage.layout import BackupSet

LOG = logging.getLogger(__name__)


def require(conf: cfg.ConfigOpts, *options: str) -> None:
    """Fail with one line naming the first missing option."""
    for option in options:
        if conf[option] in (None, ""):
            raise FreezerError(f"--{option.replace('_', '-')} is required for --action {conf.action}")


class Job:
    """One action against one storage; ``run`` returns the result document."""

    def __init__(self, conf: cfg.ConfigOpts, storage: Storage, read_from: str | None = None,
                 before_commit: Callable[[], None] | None = None):
        self.conf = conf
        self.storage = storage
        self.read_from = read_from
        self.before_commit = before_commit
        self.progress = progress.Progress.for_terminal(bool(conf.quiet))
        self.started = time.monotonic()

    def backups(self) -> BackupSet:
        return BackupSet(self.storage, self.conf.hostname, self.conf.backup_name)

    def result(self, **fields) -> dict:
        base = {"action": self.conf.action, "backup_name": self.conf.backup_name,
                "hostname": self.conf.hostname, "container": self.conf.container,
                "storage": self.conf.storage, "location": self.storage.describe(),
                "duration": round(time.monotonic() - self.started, 3)}
        base.update(fields)
        return base

    def run(self) -> dict:
        raise NotImplementedError




def ref_fields(ref: BackupRef | None) -> dict | None:
    """A backup as the result document names it: level, timestamps and date."""
    if ref is None:
        return None
    return {"level": ref.level, "time_stamp": ref.ts, "l0_time_stamp": ref.l0_ts, "date": dates.show(ref.ts)}


