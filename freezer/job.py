"""The four actions: backup, restore, info and admin, each over any Storage."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable

from oslo_config import cfg

from freezer import __version__
from freezer.common import config, dates
from freezer.engine import confine, tar
from freezer.engine.confine import SymlinkGuard
from freezer.engine.streams import Digest, PipelineError, file_chunks, prefetch, verified
from freezer.restore_target import RestoreTarget
from freezer.storage.base import FreezerError, NotFound, Storage
from freezer.storage.layout import (
    BackupRef,
    BackupSet,
    LevelPlan,
    LevelPolicy,
    chains_to_remove,
    group_chains,
    next_timestamp,
    plan_level,
    restore_plan,
    settings_change,
)
from freezer.storage.metadata import BadMetadata, Metadata

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

    def backups(self) -> BackupSet:
        return BackupSet(self.storage, self.conf.hostname, self.conf.backup_name)

    def result(self, **fields) -> dict:
        base = {"action": self.conf.action, "backup_name": self.conf.backup_name,
                "hostname": self.conf.hostname, "container": self.conf.container,
                "storage": self.conf.storage}
        base.update(fields)
        return base

    def run(self) -> dict:
        raise NotImplementedError


class BackupJob(Job):
    """Back up ``--path-to-backup`` as the next level of the newest chain."""

    def run(self) -> dict:
        require(self.conf, "path_to_backup", "backup_name")
        source = os.path.abspath(os.path.expanduser(self.conf.path_to_backup))
        if not os.path.exists(source):
            raise FreezerError(f"--path-to-backup {source} does not exist")
        backups = self.backups()
        existing = backups.list_backups()
        now = int(time.time())
        plan = self._plan(existing, now)
        ts = next_timestamp(existing, now)
        ref = BackupRef(plan.l0_ts or ts, ts, plan.level)
        if self.conf.dry_run:
            return self.result(**self._record(source, ref), size=0, dry_run=True)
        LOG.info("backing up %s to %s as level %d", source, self.storage.describe(), ref.level)
        with tempfile.TemporaryDirectory(prefix="freezer-") as workdir:
            snapshot = os.path.join(workdir, "snapshot")
            if plan.parent:
                _download(self.storage, backups.engine_metadata_path(plan.parent), snapshot)
            digest, warnings = self._upload_data(backups.data_path(ref), self.read_from or source, snapshot)
            self.storage.put_stream(backups.engine_metadata_path(ref), file_chunks(snapshot))
        metadata = self._metadata(ref, source, digest)
        if self.before_commit:
            self.before_commit()
        backups.write_metadata(ref, metadata)
        LOG.info("backup %s complete: %d bytes", ref.relpath, digest.size)
        return self.result(**self._record(source, ref), l0_time_stamp=ref.l0_ts,
                           size=digest.size, sha256=metadata["data_sha256"], warnings=warnings)

    def _record(self, source: str, ref: BackupRef) -> dict:
        """Upstream agent's backup record fields, which freezer-api and ``freezer backup-list`` show."""
        return {"level": ref.level, "curr_backup_level": ref.level, "time_stamp": ref.ts,
                "path_to_backup": source, "fs_real_path": source, "vol_snap_path": source,
                "client_os": sys.platform, "client_version": __version__, "compression": self.conf.compression,
                "mode": self.conf.mode, "engine_name": self.conf.engine_name, "backup_media": "fs",
                "max_level": self.conf.max_level or "", "always_level": self.conf.always_level or "",
                "log_file": self.conf.log_file or "", "encrypted": bool(self.conf.encrypt_pass_file)}

    def _plan(self, existing: list[BackupRef], now: int) -> LevelPlan:
        policy = LevelPolicy(incremental=config.incremental(self.conf), max_level=self.conf.max_level,
                             always_level=self.conf.always_level,
                             restart_always_level=self.conf.restart_always_level)
        plan = plan_level(group_chains(existing), now, policy)
        if plan.level > 0 and plan.parent is None:
            LOG.warning("level %d has no parent backup: starting a new chain", plan.level)
            return LevelPlan(0, None, None)
        if plan.parent is not None:
            reason = self._chain_break(plan.parent)
            if reason:
                LOG.warning("%s: starting a new chain (level 0)", reason)
                return LevelPlan(0, None, None)
        return plan

    def _chain_break(self, parent: BackupRef) -> str | None:
        """Why the next backup cannot build on ``parent`` (bad metadata, other settings), or None."""
        try:
            record = self.backups().read_metadata(parent)
        except BadMetadata as exc:
            return str(exc)
        return settings_change(record, self.conf.compression, bool(self.conf.encrypt_pass_file))

    def _upload_data(self, path: str, source: str, snapshot: str) -> tuple[Digest, list[str]]:
        options = tar.TarOptions(compression=self.conf.compression,
                                 encrypt_pass_file=self.conf.encrypt_pass_file,
                                 excludes=tuple(self.conf.exclude),
                                 dereference=self.conf.dereference_symlink or "")
        pipeline = tar.start_backup(source, snapshot, options)
        digest = Digest()
        try:
            self.storage.put_stream(path, prefetch(digest.tap(prefetch(pipeline.output_chunks()))))
        except BaseException:
            pipeline.abort()
            raise
        warnings = [w for w in pipeline.stderr_of(0).split("; ") if w]
        for warning in warnings:
            LOG.warning("%s", warning)
        pipeline.close()
        return digest, warnings

    def _metadata(self, ref: BackupRef, source: str, digest: Digest) -> dict:
        return {"engine_name": tar.NAME, "compression": self.conf.compression,
                "encryption": bool(self.conf.encrypt_pass_file), "level": ref.level,
                "time_stamp": ref.ts, "l0_time_stamp": ref.l0_ts, "hostname": self.conf.hostname,
                "backup_name": self.conf.backup_name, "path_to_backup": source,
                "data_size": digest.size, "data_sha256": digest.hexdigest(),
                "agent": f"freezer {__version__}"}


class RestoreJob(Job):
    """Restore the newest state (or the state at ``--restore-from-date``)."""

    def run(self) -> dict:
        require(self.conf, "restore_abs_path", "backup_name")
        target = os.path.abspath(os.path.expanduser(self.conf.restore_abs_path))
        until = dates.parse(self.conf.restore_from_date, "--restore-from-date") \
            if self.conf.restore_from_date else None
        backups = self.backups()
        plan = restore_plan(backups.chains(), until)
        if not plan:
            when = f" up to {self.conf.restore_from_date}" if until else ""
            raise NotFound(f"no backup {backups.prefix!r}{when} in {self.storage.describe()} "
                           "(check --backup-name, --hostname and --container)")
        records = {ref: backups.read_metadata(ref) for ref in plan}  # every level sound before any is applied
        for record in records.values():
            self._pass_file(record)
        _check_target(target, self.conf.overwrite)
        if self.conf.dry_run:
            return self.result(level=plan[-1].level, time_stamp=plan[-1].ts, size=0, dry_run=True)
        size = self._apply_all(backups, plan, records, RestoreTarget(target))
        return self.result(level=plan[-1].level, time_stamp=plan[-1].ts, size=size,
                           restore_abs_path=target, levels_applied=len(plan))

    def _apply_all(self, backups: BackupSet, plan: list[BackupRef], records: dict[BackupRef, Metadata],
                   area: RestoreTarget) -> int:
        """Apply every level with symlinks held; move into place only when all of them went in."""
        guard = SymlinkGuard(area.open())
        size = 0
        for index, ref in enumerate(plan):
            try:
                guard.hold_all()
                size += self._apply(backups, ref, records[ref], guard)
            except BaseException as exc:
                guard.release()
                area.discard()
                if isinstance(exc, FreezerError):
                    raise _restore_failed(exc, plan, index, area) from exc
                raise
        guard.release()
        area.commit()
        return size

    def _apply(self, backups: BackupSet, ref: BackupRef, metadata: Metadata, guard: SymlinkGuard) -> int:
        pass_file = self._pass_file(metadata)
        path = backups.data_path(ref)
        expected = metadata.data_size
        if metadata.data_sha256 is None:
            LOG.warning("level %d (%s) is not verified: its metadata has no data_sha256 "
                        "(written by upstream freezer?)", ref.level, ref.relpath)
        if expected is not None and self.storage.size(path) != expected:
            raise FreezerError(f"{path} is {self.storage.size(path)} bytes, expected {expected}: "
                               "refusing to restore it")
        LOG.info("restoring %s into %s", ref.relpath, guard.root)
        pipeline = tar.start_restore(guard.root, metadata.compression, pass_file)
        chunks = verified(self.storage.get_stream(path), metadata.data_sha256, expected, path)
        try:
            pipeline.feed(prefetch(chunks))
        except PipelineError as exc:
            refused = _refused_member(pipeline, guard)
            pipeline.abort()
            if refused:
                raise refused from exc
            hint = " (wrong --encrypt-pass-file?)" if pass_file else ""
            raise FreezerError(f"{exc}{hint}") from exc
        except BaseException:
            pipeline.abort()
            raise
        refused = _refused_member(pipeline, guard)
        pipeline.close()
        if refused:
            raise refused
        return expected or 0

    def _pass_file(self, metadata: Metadata) -> str | None:
        if not metadata.encryption:
            return None
        if not self.conf.encrypt_pass_file:
            raise FreezerError("this backup is encrypted: give its passphrase with --encrypt-pass-file")
        return self.conf.encrypt_pass_file


class InfoJob(Job):
    """List the chains of a backup name: levels, dates and sizes."""

    def run(self) -> dict:
        require(self.conf, "backup_name")
        backups = self.backups()
        rows = []
        for chain in backups.chains():
            for ref in chain.backups:
                rows.append(_info_row(backups, ref))
        return self.result(backups=rows)


class AdminJob(Job):
    """Remove old chains (``--remove-older-than`` or ``--remove-from-date``)."""

    def run(self) -> dict:
        require(self.conf, "backup_name")
        cutoff = self._cutoff()
        backups = self.backups()
        doomed = chains_to_remove(backups.chains(), cutoff)
        for chain in doomed:
            LOG.info("removing chain %s (%d backups)", dates.show(chain.l0_ts), len(chain.backups))
            if not self.conf.dry_run:
                backups.remove_chain(chain)
        return self.result(removed=[c.l0_ts for c in doomed], cutoff=cutoff, dry_run=self.conf.dry_run)

    def _cutoff(self) -> int:
        if self.conf.remove_from_date:
            return dates.parse(self.conf.remove_from_date, "--remove-from-date")
        if self.conf.remove_older_than is not None:
            return int(time.time() - self.conf.remove_older_than * 86400)
        raise FreezerError("--action admin needs --remove-older-than DAYS or --remove-from-date DATE")


def _info_row(backups: BackupSet, ref: BackupRef) -> dict:
    """One backup as ``--action info`` lists it; bad metadata marks it unreadable, not the listing."""
    row = {"l0_time_stamp": ref.l0_ts, "level": ref.level, "time_stamp": ref.ts, "date": dates.show(ref.ts)}
    try:
        metadata = backups.read_metadata(ref)
    except BadMetadata as exc:
        LOG.warning("%s", exc)
        return {**row, "size": None, "compression": None, "encryption": None, "unreadable": str(exc)}
    return {**row, "size": metadata.data_size, "compression": metadata.compression,
            "encryption": metadata.encryption}


JOBS = {"backup": BackupJob, "restore": RestoreJob, "info": InfoJob, "admin": AdminJob}


def _download(storage: Storage, path: str, local_path: str) -> None:
    with open(local_path, "wb") as out:
        for chunk in storage.get_stream(path):
            out.write(chunk)


def _refused_member(pipeline, guard: SymlinkGuard) -> FreezerError | None:
    """A member that tried to leave the target, as the error that fails the restore."""
    tar_stage = len(pipeline.procs) - 1
    reason = confine.refusal(pipeline.all_stderr_of(tar_stage), pipeline.kept_output(), guard)
    if reason is None:
        return None
    return FreezerError(f"refused: {reason}; a backup written by freezer never holds such a member "
                        "(the storage may have been tampered with)")


def _restore_failed(exc: FreezerError, plan: list[BackupRef], index: int, area: RestoreTarget) -> FreezerError:
    """The error of a failed level, saying what the target holds now and how to get a consistent one."""
    ref = plan[index]
    what = f"level {ref.level} of {dates.show(ref.ts)} ({ref.relpath})"
    if area.staged:
        state = area.state_after_failure()
    elif index == 0:
        state = (f"{area.target} holds part of the level 0 (not a consistent state): "
                 "empty it and restore an earlier chain with --restore-from-date")
    else:
        last_good = plan[index - 1]
        state = (f"{area.target} holds the levels before it and part of this one: restore again with "
                 f"--restore-from-date {dates.show(last_good.ts).replace(' ', 'T')} for the state "
                 "before it")
    error = FreezerError(f"restore failed at {what}: {exc}; {state}")
    error.exit_code = exc.exit_code
    return error


def _check_target(target: str, overwrite: bool) -> None:
    if os.path.exists(target) and not os.path.isdir(target):
        raise FreezerError(f"--restore-abs-path {target} exists and is not a directory")
    if os.path.isdir(target) and os.listdir(target) and not overwrite:
        raise FreezerError(f"--restore-abs-path {target} is not empty: empty it or add --overwrite")
