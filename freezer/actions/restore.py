"""``--action restore``: the levels of a chain applied in order, confined to the target."""

from __future__ import annotations

import logging
import os

from freezer.actions import authenticity, consistency
from freezer.actions.base import Job, ref_fields, require
from freezer.actions.progress import RestoreLine
from freezer.actions.restore_target import RestoreTarget
from freezer.common import dates
from freezer.engine import confine, tar
from freezer.engine.confine import SymlinkGuard
from freezer.engine.streams import Digest, PipelineError, ahead, prefetch, verified
from freezer.errors import FreezerError, NotFound
from freezer.storage.chains import BackupRef
from freezer.storage.layout import BackupSet
from freezer.storage.metadata import Metadata
from freezer.storage.multiple import MultiStorage

LOG = logging.getLogger(__name__)



class RestoreJob(Job):
    """Restore the newest state (or the state at ``--restore-from-date``)."""

    def run(self) -> dict:
        require(self.conf, "restore_abs_path", "backup_name")
        target = os.path.abspath(os.path.expanduser(self.conf.restore_abs_path))
        if not isinstance(self.storage, MultiStorage) or len(self.storage.storages) < 2:
            return self._restore(target)
        _check_target(target, self.conf.overwrite)  # the same for every copy: not worth trying each
        return self._restore_from_copies(target, self.storage)

    def _restore_from_copies(self, target: str, copies: MultiStorage) -> dict:
        """``[storage:NAME]`` copies: each level from the first copy, and all again from the next copy
        when one fails (a corrupted copy must not stop a restore that another copy can do)."""
        last = len(copies.storages) - 1
        for index in range(last + 1):
            self.storage = copies.preferring(index)
            try:
                return self._restore(target)
            except FreezerError as exc:
                if index == last:
                    raise _no_copy_left(exc, copies) from None
                LOG.warning("restore from %s failed: %s; trying %s first", copies.copy_name(index), exc,
                            copies.copy_name(index + 1))
        raise AssertionError("unreachable")

    def _restore(self, target: str) -> dict:
        """Restore from ``self.storage`` into ``target``."""
        until = dates.parse(self.conf.restore_from_date, "--restore-from-date") \
            if self.conf.restore_from_date else None
        backups = self.backups()
        if not self.conf.dry_run:
            self.storage.expect_reads()  # on a long link the extra connections log in while the chain is listed
        plan = backups.plan_restore(until)
        if not plan:
            when = f" up to {self.conf.restore_from_date}" if until else ""
            raise NotFound(f"no backup {backups.prefix!r}{when} in {self.storage.describe()} "
                           "(check --backup-name, --hostname and --container)")
        if not self.conf.dry_run:
            self.storage.expect_reads([backups.data_path(ref) for ref in plan])  # sizes asked with the metadata
        records = {ref: backups.read_metadata(ref) for ref in plan}  # every level sound before any is applied
        for record in records.values():
            self._pass_file(record)
        try:
            authenticity.check_plan(self.conf, backups.prefix, plan, records)
        except FreezerError as exc:
            raise type(exc)(f"{exc}; nothing was restored") from None
        _check_target(target, self.conf.overwrite)
        levels = [{**ref_fields(ref), "size": records[ref].data_size} for ref in plan]
        if self.conf.dry_run:
            return self.result(level=plan[-1].level, time_stamp=plan[-1].ts, size=0, dry_run=True,
                               restore_abs_path=target, levels=levels)
        line = RestoreLine(plan, records)
        area = RestoreTarget(target)
        if not area.staged and authenticity.authenticated(self.conf):
            self._check_data_first(backups, plan, records)
        with self.progress.showing(line.render):
            size, files = self._apply_all(backups, plan, records, area, line)
        checked = self._checked(area, records[plan[-1]])
        area.commit()
        return self.result(**checked, level=plan[-1].level, time_stamp=plan[-1].ts, size=size,
                           restore_abs_path=target, levels_applied=len(plan), levels=levels, files=files)

    def _apply_all(self, backups: BackupSet, plan: list[BackupRef], records: dict[BackupRef, Metadata],
                   area: RestoreTarget, line: RestoreLine) -> tuple[int, int]:
        """Apply every level with symlinks held; the caller moves them into place (``area.commit``)."""
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
        return size, files

    def _check_data_first(self, backups: BackupSet, plan: list[BackupRef], records: dict[BackupRef, Metadata]) -> None:
        """In place (--overwrite), tar writes as it reads: prove each level's data first, a pass of its own."""
        for ref in plan:
            record = records[ref]
            path = backups.data_path(ref)
            LOG.info("checking %s before restoring it in place", ref.relpath)
            for _chunk in verified(self.storage.get_stream(path), record.data_sha256, record.data_size, path):
                pass

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
        stored = verified(self.storage.get_stream(path), metadata.data_sha256, expected, path, digest)
        # Decryption holds the GIL: in a thread of its own, reading and hashing overlap it.
        chunks = tar.plain_chunks(prefetch(stored) if pass_file else stored, pass_file)
        try:
            pipeline.feed(ahead(chunks, self.storage.streams_in_caller))
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

    def _checked(self, area: RestoreTarget, newest: Metadata) -> dict:
        """The consistency check on the files before they are moved into the target: a mismatch never lands."""
        try:
            return self._check_consistency(area.path, newest, area.target)
        except consistency.ConsistencyError as exc:
            area.discard()
            state = (f"nothing was restored ({area.target} is as it was)" if area.staged else
                     f"the files stay in {area.target} (restored in place, --overwrite)")
            raise type(exc)(f"{exc}; {state}") from None

    def _check_consistency(self, restored: str, newest: Metadata, target: str) -> dict:
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
        consistency.compare(restored, expected, target)
        LOG.info("consistency check passed: %s", expected)
        return {"consistency_checksum": expected.strip().lower()}

    def _pass_file(self, metadata: Metadata) -> str | None:
        if not metadata.encryption:
            return None
        if not self.conf.encrypt_pass_file:
            raise FreezerError("this backup is encrypted: give its passphrase with --encrypt-pass-file")
        return self.conf.encrypt_pass_file




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


def _no_copy_left(exc: FreezerError, copies: MultiStorage) -> FreezerError:
    """The error when every copy failed: the last one's failure, and how to read a copy first."""
    names = ", ".join(f"[{name}]" for name in copies.names)
    error = FreezerError(f"restore failed from every copy ({names}); from the last, "
                         f"{copies.copy_name(len(copies.names) - 1)}: {exc} (the warnings above give the "
                         "others'; reads go to the first [storage:NAME] section of --config: move another "
                         "one first to read its copy)")
    error.exit_code = exc.exit_code
    return error


def _check_target(target: str, overwrite: bool) -> None:
    if os.path.exists(target) and not os.path.isdir(target):
        raise FreezerError(f"--restore-abs-path {target} exists and is not a directory")
    if os.path.isdir(target) and os.listdir(target) and not overwrite:
        raise FreezerError(f"--restore-abs-path {target} is not empty: empty it or add --overwrite")
