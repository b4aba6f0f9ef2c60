"""``--action backup``: the next level of the newest chain, in a slot claimed first."""

from __future__ import annotations

import functools
import logging
import os
import random
import sys
import tempfile
import time

from freezer import __version__
from freezer.actions import authenticity, consistency
from freezer.actions.base import Job, ref_fields, require
from freezer.actions.engine_upload import EngineMetadataUpload
from freezer.actions.progress import BackupLine, LineCounter
from freezer.common import config
from freezer.engine import auth, hardlinks, incremental, tar
from freezer.engine.streams import Digest, ahead, file_chunks, prefetch
from freezer.errors import FreezerError
from freezer.storage import metadata as level_metadata
from freezer.storage.base import Storage
from freezer.storage.chains import (
    BackupRef,
    LevelPlan,
    LevelPolicy,
    group_chains,
    next_timestamp,
    plan_level,
    settings_change,
)
from freezer.storage.layout import BackupSet, IndexEntry, SlotTaken
from freezer.storage.metadata import BadMetadata, Metadata

LOG = logging.getLogger(__name__)
CLAIM_TRIES = 20  # timestamps tried when other backups of the same name take them first
CLAIM_JITTER = 0.5  # seconds, at most, between tries: agents started together fall out of step



class BackupJob(Job):
    """Back up ``--path-to-backup`` as the next level of the newest chain."""

    parent_record: Metadata | None = None  # the metadata of the level this one builds on

    @functools.cached_property
    def mac_secret(self) -> bytes | None:
        """The MAC's secret, read once per run."""
        return authenticity.mac_secret(self.conf)

    def run(self) -> dict:
        require(self.conf, "path_to_backup", "backup_name")
        source = os.path.abspath(os.path.expanduser(self.conf.path_to_backup))
        if not os.path.exists(source):
            raise FreezerError(f"--path-to-backup {source} does not exist")
        checksum = None
        if not self.conf.dry_run:
            if self.conf.sync:
                os.sync()  # --sync (upstream's default): flush file system buffers before reading
            checksum = self._consistency_checksum(self.read_from or source)
            # Then, on a long link, the extra connections log in while the chain is listed (after the
            # local work, which may be long: idle connections would be cut meanwhile).
            self.storage.expect_writes()
        backups = self.backups()
        newest = backups.newest_chain()  # the next level builds on it; older chains are not listed
        existing = list(newest.backups) if newest else []
        now = int(time.time())
        plan = self._plan(existing, now)
        ts = next_timestamp(existing, now)
        if self.conf.dry_run:
            planned = BackupRef(plan.l0_ts or ts, ts, plan.level)
            return self.result(**self._record(source, planned), size=0, dry_run=True,
                               l0_time_stamp=planned.l0_ts, parent=ref_fields(plan.parent))
        try:
            ref, (digest, warnings, metadata, counts) = self._claim_and_write(backups, plan, ts, source, checksum)
        except incremental.NewChain as exc:
            LOG.warning("%s: starting a new chain (level 0)", exc)
            plan, self.parent_record = LevelPlan(0, None, None), None
            ts = max(ts + 1, int(time.time()))
            ref, (digest, warnings, metadata, counts) = self._claim_and_write(backups, plan, ts, source, checksum)
        LOG.info("backup %s complete: %d bytes", ref.relpath, digest.size)
        return self.result(**self._record(source, ref), l0_time_stamp=ref.l0_ts,
                           size=digest.size, sha256=metadata["data_sha256"], warnings=warnings,
                           parent=ref_fields(plan.parent), **counts,
                           **({"consistency_checksum": checksum} if checksum else {}))

    def _claim_and_write(self, backups: BackupSet, plan: LevelPlan, ts: int, source: str,
                         checksum: str | None) -> tuple[BackupRef, tuple[Digest, list[str], dict, dict]]:
        """Claim a slot for ``plan`` and write the backup into it; give the slot back if that fails."""
        ref = self._claim(backups, plan, ts)
        LOG.info("backing up %s to %s as level %d", source, self.storage.describe(), ref.level)
        try:
            return ref, self._write(backups, plan, ref, source, checksum)
        except SlotTaken:
            raise  # the slot holds another backup's metadata: leave it alone
        except BaseException:
            _remove_quietly(backups, ref)
            raise

    def _claim(self, backups: BackupSet, plan: LevelPlan, ts: int) -> BackupRef:
        """Take a slot no other backup has, from ``ts`` on; a level 0 starts its own chain."""
        for _ in range(CLAIM_TRIES):
            ref = BackupRef(plan.l0_ts or ts, ts, plan.level)
            if backups.claim_timestamp(ts) and backups.claim(ref):  # one backup per second, whatever its level
                return ref
            LOG.info("%s is taken by another backup of %s: trying the next second", ref.relpath, backups.prefix)
            time.sleep(random.uniform(0, CLAIM_JITTER))
            ts = max(ts + 1, int(time.time()))
        raise FreezerError(f"no free backup slot for {backups.prefix} after {CLAIM_TRIES} tries: other agents "
                           "keep taking them (run one backup per --backup-name and --hostname at a time)")

    def _write(self, backups: BackupSet, plan: LevelPlan, ref: BackupRef, source: str,
               checksum: str | None) -> tuple[Digest, list[str], dict, dict]:
        """Upload data and engine metadata into the claimed slot, then the metadata that makes it exist."""
        secret = self.mac_secret
        kdf = authenticity.chain_kdf(self.parent_record if plan.parent else None)
        if secret:
            auth.derive_in_background(secret, kdf)
        with tempfile.TemporaryDirectory(prefix="freezer-") as workdir:
            snapshot = os.path.join(workdir, "snapshot")
            if plan.parent:
                self._parent_snapshot(backups, plan.parent, snapshot, secret)
                since = incremental.prepare(snapshot, plan.parent.level,  # NewChain: not built on it
                                            backups.engine_metadata_path(plan.parent))
            besides: list = []  # work beside this thread's, waited for (a little) if this one fails
            try:
                digest, warnings, counts = self._upload_data(backups, ref, self.read_from or source, snapshot,
                                                             plan.parent, besides)
                if plan.parent:
                    hardlinks.check(self.read_from or source, snapshot, since)  # SplitLink: not kept
                metadata = self._metadata(ref, source, digest, plan.parent)
                self._commit(backups, plan, ref, besides[0].finish(), metadata, checksum, kdf, besides[1])
                besides[1].finish()
            except BaseException:
                for work in besides:
                    work.abandon()
                raise
        return digest, warnings, metadata, counts

    def _commit(self, backups: BackupSet, plan: LevelPlan, ref: BackupRef, engine_sha256: str, metadata: dict,
                checksum: str | None, kdf: auth.Kdf, entry: IndexEntry) -> None:
        """Write ``metadata`` (signed, with a MAC, over the engine metadata stored), which makes the backup
        exist; its index ``entry`` is written beside it once the slot is known free."""
        if checksum:
            metadata["consistency_checksum"] = checksum
        if secret := self.mac_secret:
            record = level_metadata.from_document(metadata)
            metadata["auth"] = authenticity.sign_level(secret, kdf, backups.prefix, ref, record, plan.parent,
                                                       self.parent_record, engine_sha256).to_document()
        if self.before_commit:
            self.before_commit()
        backups.check_slot(ref)  # SlotTaken: neither the metadata nor the index entry is this backup's to write
        entry.add(level_metadata.from_document(metadata))
        backups.put_metadata(ref, metadata)

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
                self.parent_record = None
                return LevelPlan(0, None, None)
        return plan

    def _chain_break(self, parent: BackupRef) -> str | None:
        """Why the next backup cannot build on ``parent`` (bad metadata or MAC, other settings), or None."""
        backups = self.backups()
        try:
            record = backups.read_metadata(parent)
        except BadMetadata as exc:
            return str(exc)
        changed = settings_change(record, self.conf.compression, bool(self.conf.encrypt_pass_file))
        secret = self.mac_secret
        if changed is None and secret and record.auth is not None:
            try:
                authenticity.check_level(secret, backups.prefix, parent, record)
            except FreezerError as exc:
                changed = str(exc)
        self.parent_record = record
        return changed

    def _parent_snapshot(self, backups: BackupSet, parent: BackupRef, snapshot: str, secret: bytes | None) -> None:
        """Download the parent's engine metadata; with a MAC, it must be the one the parent recorded."""
        _download(self.storage, backups.engine_metadata_path(parent), snapshot)
        recorded = self.parent_record.auth if self.parent_record else None
        if secret and recorded and _file_sha256(snapshot) != recorded.engine_metadata_sha256:
            raise FreezerError(f"the engine metadata of {authenticity.describe(parent)} is not the one its MAC "
                               "recorded (changed on the storage): make a new chain with --no-incremental, "
                               "or remove that chain with --action admin")

    def _upload_data(self, backups: BackupSet, ref: BackupRef, source: str, snapshot: str, parent: BackupRef | None,
                     besides: list) -> tuple[Digest, list[str], dict]:
        """Stream tar's output to the level's data; return its digest, tar's warnings, and files and bytes
        read. Once tar exits, the engine metadata goes up beside it and the index is read for the level's
        entry (both appended to ``besides``)."""
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
            engine = EngineMetadataUpload(self.storage, backups.engine_metadata_path(ref), snapshot, pipeline.procs[0])
            besides.append(engine)
            besides.append(backups.index_entry_beside(ref, before=pipeline.procs[0].wait))
            with self.progress.showing(line.render), line.estimating(source, parent, self.progress.enabled):
                # One thread reads tar's pipe and hashes; the storage writes in this one (local: both here).
                # Encryption, which holds the GIL, gets a thread of its own so the hash overlaps it.
                stored = tar.stored_chunks(pipeline, options)
                stored = prefetch(stored) if options.encrypt_pass_file else stored
                chunks = ahead(digest.tap(stored), self.storage.streams_in_caller)
                self.storage.put_stream(backups.data_path(ref), chunks)
        except BaseException:
            for work in besides:
                work.stop()  # before tar is killed: nothing starts beside a backup that failed
            pipeline.abort()
            raise
        warnings = pipeline.messages_of(0)
        for warning in warnings:
            LOG.warning("%s", warning)
        counts = {"files": index.count(), "bytes_read": tar.bytes_read(pipeline.all_stderr_of(0))}
        pipeline.close()
        tar.check_name_lengths(source, warnings, index.path)
        return digest, warnings, counts

    def _metadata(self, ref: BackupRef, source: str, digest: Digest, parent: BackupRef | None) -> dict:
        return {"parent": {"level": parent.level, "time_stamp": parent.ts} if parent else None,
                "engine_name": tar.NAME, "compression": self.conf.compression,
                "encryption": bool(self.conf.encrypt_pass_file), "level": ref.level,
                "time_stamp": ref.ts, "l0_time_stamp": ref.l0_ts, "hostname": self.conf.hostname,
                "backup_name": self.conf.backup_name, "path_to_backup": source,
                "data_size": digest.size, "data_sha256": digest.hexdigest(),
                "agent": f"freezer {__version__}"}




def _remove_quietly(backups: BackupSet, ref: BackupRef) -> None:
    """Give back the slot of a backup that failed; what cannot be removed now, admin collects later."""
    try:
        backups.remove_level(ref)
    except (FreezerError, OSError) as exc:
        LOG.info("could not remove the unfinished %s (admin will): %s", ref.relpath, exc)


def _file_sha256(path: str) -> str:
    digest = Digest()
    for _chunk in digest.tap(file_chunks(path)):
        pass
    return digest.hexdigest()


def _download(storage: Storage, path: str, local_path: str) -> None:
    with open(local_path, "wb") as out:
        for chunk in storage.get_stream(path):
            out.write(chunk)


