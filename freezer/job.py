"""The four actions: backup, restore, info and admin, each over any Storage."""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable

from oslo_config import cfg

from freezer import __version__, consistency, progress
from freezer.common import config, dates
from freezer.engine import confine, tar
from freezer.engine.confine import SymlinkGuard
from freezer.engine.streams import Digest, PipelineError, file_chunks, prefetch, verified
from freezer.progress import BackupLine, LineCounter, RestoreLine
from freezer.restore_target import RestoreTarget
from freezer.storage.base import FreezerError, NotFound, Storage
from freezer.storage.layout import (
    ENGINE,
    BackupRef,
    BackupSet,
    Leftovers,
    LevelPlan,
    LevelPolicy,
    SlotTaken,
    chains_to_remove,
    group_chains,
    incomplete_levels,
    leftovers,
    next_timestamp,
    plan_level,
    restore_plan,
    settings_change,
)
from freezer.storage.metadata import BadMetadata, Metadata

LOG = logging.getLogger(__name__)
CLAIM_TRIES = 20  # timestamps tried when other backups of the same name take them first
CLAIM_JITTER = 0.5  # seconds, at most, between tries: agents started together fall out of step


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
        if self.conf.dry_run:
            planned = BackupRef(plan.l0_ts or ts, ts, plan.level)
            return self.result(**self._record(source, planned), size=0, dry_run=True,
                               l0_time_stamp=planned.l0_ts, parent=_ref_fields(plan.parent))
        if self.conf.sync:
            os.sync()  # --sync (upstream's default): flush file system buffers before reading
        checksum = self._consistency_checksum(self.read_from or source)
        ref = self._claim(backups, plan, ts)
        LOG.info("backing up %s to %s as level %d", source, self.storage.describe(), ref.level)
        try:
            digest, warnings, metadata, counts = self._write(backups, plan, ref, source, checksum)
        except SlotTaken:
            raise  # the slot holds another backup's metadata: leave it alone
        except BaseException:
            _remove_quietly(backups, ref)
            raise
        LOG.info("backup %s complete: %d bytes", ref.relpath, digest.size)
        return self.result(**self._record(source, ref), l0_time_stamp=ref.l0_ts,
                           size=digest.size, sha256=metadata["data_sha256"], warnings=warnings,
                           parent=_ref_fields(plan.parent), **counts,
                           **({"consistency_checksum": checksum} if checksum else {}))

    def _claim(self, backups: BackupSet, plan: LevelPlan, ts: int) -> BackupRef:
        """Take a slot no other backup has, from ``ts`` on; a level 0 starts its own chain."""
        for _ in range(CLAIM_TRIES):
            ref = BackupRef(plan.l0_ts or ts, ts, plan.level)
            if backups.claim(ref):
                return ref
            LOG.info("%s is taken by another backup of %s: trying the next second", ref.relpath, backups.prefix)
            time.sleep(random.uniform(0, CLAIM_JITTER))
            ts = max(ts + 1, int(time.time()))
        raise FreezerError(f"no free backup slot for {backups.prefix} after {CLAIM_TRIES} tries: other agents "
                           "keep taking them (run one backup per --backup-name and --hostname at a time)")

    def _write(self, backups: BackupSet, plan: LevelPlan, ref: BackupRef, source: str,
               checksum: str | None) -> tuple[Digest, list[str], dict, dict]:
        """Upload data and engine metadata into the claimed slot, then the metadata that makes it exist."""
        with tempfile.TemporaryDirectory(prefix="freezer-") as workdir:
            snapshot = os.path.join(workdir, "snapshot")
            if plan.parent:
                _download(self.storage, backups.engine_metadata_path(plan.parent), snapshot)
            digest, warnings, counts = self._upload_data(backups.data_path(ref), self.read_from or source,
                                                         snapshot, ref, plan.parent)
            self.storage.put_stream(backups.engine_metadata_path(ref), file_chunks(snapshot))
        metadata = self._metadata(ref, source, digest)
        if checksum:
            metadata["consistency_checksum"] = checksum
        if self.before_commit:
            self.before_commit()
        backups.write_metadata(ref, metadata)
        return digest, warnings, metadata, counts

    def _consistency_checksum(self, source: str) -> str | None:
        """``--consistency-check``: the checksum of the files about to be backed up."""
        if not self.conf.consistency_check:
            return None
        value = consistency.checksum(source, tuple(self.conf.exclude), self.conf.cross_mount_points)
        LOG.info("consistency checksum of %s: %s", source, value)
        return value

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

    def _upload_data(self, path: str, source: str, snapshot: str, ref: BackupRef,
                     parent: BackupRef | None) -> tuple[Digest, list[str], dict]:
        """Stream tar's output to ``path``; return its digest, tar's warnings, and files and bytes read."""
        index = LineCounter(os.path.join(os.path.dirname(snapshot), "index"))
        options = tar.TarOptions(compression=self.conf.compression,
                                 encrypt_pass_file=self.conf.encrypt_pass_file,
                                 excludes=tuple(self.conf.exclude),
                                 dereference=self.conf.dereference_symlink or "", index_file=index.path,
                                 one_file_system=not self.conf.cross_mount_points)
        pipeline = tar.start_backup(source, snapshot, options)
        digest = Digest()
        line = BackupLine(ref.level, digest, index, pipeline.procs[0].pid)
        try:
            with self.progress.showing(line.render), line.estimating(source, parent, self.progress.enabled):
                self.storage.put_stream(path, prefetch(digest.tap(prefetch(pipeline.output_chunks()))))
        except BaseException:
            pipeline.abort()
            raise
        warnings = pipeline.messages_of(0)
        for warning in warnings:
            LOG.warning("%s", warning)
        counts = {"files": index.count(), "bytes_read": tar.bytes_read(pipeline.all_stderr_of(0))}
        pipeline.close()
        return digest, warnings, counts

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
        levels = [{**_ref_fields(ref), "size": records[ref].data_size} for ref in plan]
        if self.conf.dry_run:
            return self.result(level=plan[-1].level, time_stamp=plan[-1].ts, size=0, dry_run=True,
                               restore_abs_path=target, levels=levels)
        line = RestoreLine(plan, records)
        with self.progress.showing(line.render):
            size, files = self._apply_all(backups, plan, records, RestoreTarget(target), line)
        checked = self._check_consistency(target, records[plan[-1]])
        return self.result(**checked, level=plan[-1].level, time_stamp=plan[-1].ts, size=size,
                           restore_abs_path=target, levels_applied=len(plan), levels=levels, files=files)

    def _apply_all(self, backups: BackupSet, plan: list[BackupRef], records: dict[BackupRef, Metadata],
                   area: RestoreTarget, line: RestoreLine) -> tuple[int, int]:
        """Apply every level with symlinks held; move into place only when all of them went in."""
        guard = SymlinkGuard(area.open())
        size = files = 0
        for index, ref in enumerate(plan):
            try:
                guard.hold_all()
                digest = Digest()
                line.start_level(index, digest)
                applied, members = self._apply(backups, ref, records[ref], guard, digest)
                size, files = size + applied, files + members
            except BaseException as exc:
                guard.release()
                area.discard()
                if isinstance(exc, FreezerError):
                    raise _restore_failed(exc, plan, index, area) from exc
                raise
        guard.release()
        area.commit()
        return size, files

    def _apply(self, backups: BackupSet, ref: BackupRef, metadata: Metadata, guard: SymlinkGuard,
               digest: Digest) -> tuple[int, int]:
        """Apply one level; return its bytes and the number of members tar extracted."""
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
        chunks = verified(self.storage.get_stream(path), metadata.data_sha256, expected, path, digest)
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
        members = pipeline.kept_output().count("\n")
        pipeline.close()
        if refused:
            raise refused
        return expected or digest.size, members

    def _check_consistency(self, target: str, newest: Metadata) -> dict:
        """``--consistency-checksum`` (or ``--consistency-check``: the recorded one) against the restored files."""
        expected = self.conf.consistency_checksum
        if not expected and self.conf.consistency_check:
            expected = newest.consistency_checksum
            if not expected:
                raise consistency.ConsistencyError(
                    f"--consistency-check: the backup restored in {target} recorded no checksum "
                    "(it was made without --consistency-check)")
        if not expected:
            return {}
        consistency.compare(target, expected, target)
        LOG.info("consistency check passed: %s", expected)
        return {"consistency_checksum": expected.strip().lower()}

    def _pass_file(self, metadata: Metadata) -> str | None:
        if not metadata.encryption:
            return None
        if not self.conf.encrypt_pass_file:
            raise FreezerError("this backup is encrypted: give its passphrase with --encrypt-pass-file")
        return self.conf.encrypt_pass_file


class InfoJob(Job):
    """List the chains of a backup name: levels, dates and sizes."""

    def run(self) -> dict:
        if not self.conf.backup_name:
            return self.result(names=[_name_row(self.storage, host, name) for host, name in backup_names(self.storage)])
        backups = self.backups()
        rows = []
        for chain in backups.chains():
            for ref in chain.backups:
                rows.append(_info_row(backups, ref))
        incomplete = [{"l0_time_stamp": ref.l0_ts, "level": ref.level, "time_stamp": ref.ts,
                       "date": dates.show(ref.ts)} for ref in incomplete_levels(backups.inventory())]
        if not rows and not incomplete:
            raise NotFound(f"no backup named {self.conf.backup_name!r} for --hostname {self.conf.hostname} in "
                           f"{self.storage.describe()}: --action info without --backup-name lists the backups there")
        return self.result(backups=rows, incomplete=incomplete)


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
        gone = self._remove_leftovers(backups)
        return self.result(removed=[c.l0_ts for c in doomed], cutoff=cutoff, dry_run=self.conf.dry_run,
                           removed_incomplete=[{"l0_time_stamp": r.l0_ts, "level": r.level, "time_stamp": r.ts}
                                               for r in gone.levels],
                           removed_partials=[backups.partial_path(*partial) for partial in gone.partials])

    def _remove_leftovers(self, backups: BackupSet) -> Leftovers:
        """Levels that never completed and stray partial uploads older than --remove-incomplete-after."""
        found = leftovers(backups.inventory(), int(time.time()), self.conf.remove_incomplete_after)
        for ref in found.levels:
            LOG.info("removing incomplete backup %s (%s)", ref.relpath, dates.show(ref.ts))
        for partial in found.partials:
            LOG.info("removing stray partial upload %s", backups.partial_path(*partial))
        if self.conf.dry_run:
            return found
        for l0_ts in found.chains:
            backups.remove_chain_at(l0_ts)
        for ref in found.levels:
            if ref.l0_ts not in found.chains:
                backups.remove_level(ref)
        for partial in found.partials:
            backups.remove_partial(*partial)
        return found

    def _cutoff(self) -> int:
        if self.conf.remove_from_date:
            return dates.parse(self.conf.remove_from_date, "--remove-from-date")
        if self.conf.remove_older_than is not None:
            return int(time.time() - self.conf.remove_older_than * 86400)
        raise FreezerError("--action admin needs --remove-older-than DAYS or --remove-from-date DATE")


def backup_names(storage: Storage) -> list[tuple[str, str]]:
    """(host, backup name) of every backup set in the container, from its ``metadata/<engine>/`` tree."""
    found = []
    for prefix in storage.listdir(f"metadata/{ENGINE}"):
        host, _, name = prefix.partition("_")
        if host and name and "/" not in name:
            found.append((host, name))
    return sorted(found)


def _name_row(storage: Storage, host: str, name: str) -> dict:
    """One backup set as ``--action info`` without ``--backup-name`` lists it."""
    backups = BackupSet(storage, host, name)
    chains = backups.chains()
    refs = [ref for chain in chains for ref in chain.backups]
    sizes = [_info_row(backups, ref)["size"] for ref in refs]
    newest = max((ref.ts for ref in refs), default=None)
    return {"hostname": host, "backup_name": name, "chains": len(chains), "levels": len(refs),
            "newest": dates.show(newest) if newest else None, "newest_time_stamp": newest,
            "size": sum(size for size in sizes if size is not None)}


def _ref_fields(ref: BackupRef | None) -> dict | None:
    """A backup as the result document names it: level, timestamps and date."""
    if ref is None:
        return None
    return {"level": ref.level, "time_stamp": ref.ts, "l0_time_stamp": ref.l0_ts, "date": dates.show(ref.ts)}


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


def _remove_quietly(backups: BackupSet, ref: BackupRef) -> None:
    """Give back the slot of a backup that failed; what cannot be removed now, admin collects later."""
    try:
        backups.remove_level(ref)
    except (FreezerError, OSError) as exc:
        LOG.info("could not remove the unfinished %s (admin will): %s", ref.relpath, exc)


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
