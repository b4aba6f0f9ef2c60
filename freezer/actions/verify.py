"""``--action verify``: prove a backup restorable without restoring it.

For each level of the chain (or only its newest, ``--verify-scope newest``): the metadata is sound,
the data has its recorded size and sha256, the engine metadata is there, and the data goes through
decryption and decompression into ``tar --list --incremental``, which reads every member without
writing any. Every problem is reported, not just the first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import suppress

from freezer.actions import authenticity
from freezer.actions.base import Job, require
from freezer.common import dates
from freezer.engine import codecs, tar
from freezer.engine.streams import Digest, Pipeline, PipelineError, prefetch
from freezer.errors import FreezerError, NotFound, StorageError
from freezer.storage.chains import BackupRef
from freezer.storage.layout import BackupSet
from freezer.storage.metadata import BadMetadata, Metadata

LOG = logging.getLogger(__name__)
LIST_COMMAND = ["tar", "--list", "--incremental", "--file=-", tar.READ_RECORD]


class VerifyFailed(FreezerError):
    """``--action verify`` found at least one problem."""


class VerifyJob(Job):
    """Check every level that a restore of the newest state (or ``--restore-from-date``) would apply."""

    def run(self) -> dict:
        require(self.conf, "backup_name")
        backups = self.backups()
        until = dates.parse(self.conf.restore_from_date, "--restore-from-date") \
            if self.conf.restore_from_date else None
        plan = backups.plan_restore(until)
        if not plan:
            raise NotFound(f"no backup {backups.prefix!r} in {self.storage.describe()} to verify "
                           "(check --backup-name, --hostname and --container)")
        chain_problem = self._authenticate(backups, plan)
        if self.conf.verify_scope == "newest":
            plan = plan[-1:]
        levels = [self._verify(backups, ref) for ref in plan]
        problems = [chain_problem] if chain_problem else []
        problems += [f"level {row['level']} of {row['date']}: {problem}"
                     for row in levels for problem in row["problems"]]
        for problem in problems:
            LOG.error("%s", problem)
        if problems:
            raise VerifyFailed(f"verify found {len(problems)} problem(s) in {backups.prefix}: {problems[0]}"
                               + ("; the others are logged above" if len(problems) > 1 else ""))
        LOG.info("verified %d level(s) of %s", len(levels), backups.prefix)
        return self.result(levels=levels, problems=[])

    def _authenticate(self, backups: BackupSet, plan: list[BackupRef]) -> str | None:
        """The whole chain's MACs and links, as a restore checks them; the problem found, or None."""
        try:
            records = {ref: backups.read_metadata(ref) for ref in plan}
        except (BadMetadata, StorageError):
            return None  # reported level by level below
        try:
            authenticity.check_plan(self.conf, backups.prefix, plan, records)
        except FreezerError as exc:
            return str(exc)
        return None

    def _verify(self, backups: BackupSet, ref: BackupRef) -> dict:
        row = {"level": ref.level, "time_stamp": ref.ts, "date": dates.show(ref.ts), "size": None,
               "members": None, "problems": []}
        problems = row["problems"]
        try:
            metadata = backups.read_metadata(ref)
        except (BadMetadata, StorageError) as exc:
            problems.append(str(exc))
            return row
        self._check_engine_metadata(backups, ref, problems)
        path = backups.data_path(ref)
        try:
            row["size"] = self.storage.size(path)
        except StorageError as exc:
            problems.append(f"data: {exc}")
            return row
        if metadata.data_size is not None and row["size"] != metadata.data_size:
            problems.append(f"{path} is {row['size']} bytes, the metadata says {metadata.data_size}")
        row["members"] = self._list(path, metadata, problems)
        return row

    def _check_engine_metadata(self, backups: BackupSet, ref: BackupRef, problems: list[str]) -> None:
        try:
            self.storage.size(backups.engine_metadata_path(ref))
        except StorageError as exc:
            problems.append(f"engine metadata (needed by the next level): {exc}")

    def _list(self, path: str, metadata: Metadata, problems: list[str]) -> int | None:
        """Stream the data through the restore codecs into ``tar --list``; the member count, or None.

        Decryption runs in the agent, as a restore's does (tar.plain_chunks): no child sees the pass file.
        """
        try:
            pass_file = self._pass_file(metadata)
            stages = self._stages(metadata)
        except FreezerError as exc:
            problems.append(str(exc))
            return None
        pipeline = Pipeline(stages, feed_input=True, read_output=False, keep_output=True)
        digest = Digest()
        stored = digest.tap(self.storage.get_stream(path))
        # Decryption holds the GIL: in a thread of its own, reading and hashing overlap it.
        source = prefetch(stored) if pass_file else stored
        try:
            undecoded = _feed_all(pipeline, tar.plain_chunks(source, pass_file), source)
        except StorageError as exc:
            pipeline.abort()
            problems.append(f"download of {path} failed: {exc}")
            return None
        except BaseException:
            pipeline.abort()
            raise
        if metadata.data_size is not None and digest.size != metadata.data_size:
            problems.append(f"{path}: {digest.size} bytes downloaded, the metadata says {metadata.data_size}")
        if metadata.data_sha256 and digest.hexdigest() != metadata.data_sha256:
            problems.append(f"{path} fails its sha256 check (corrupted)")
        elif not metadata.data_sha256:
            LOG.warning("%s has no recorded sha256 (written by upstream freezer?): only its stream was checked",
                        path)
        if undecoded is not None:
            pipeline.abort()
            problems.append(f"the stream does not decode: {undecoded}")
            return None
        try:
            pipeline.wait()
        except PipelineError as exc:
            hint = " (wrong --encrypt-pass-file?)" if metadata.encryption else ""
            problems.append(f"the stream does not decode: {exc}{hint}")
            pipeline.close()
            return None
        members = len([line for line in pipeline.kept_output().splitlines() if line.strip()])
        pipeline.close()
        return members

    def _pass_file(self, metadata: Metadata) -> str | None:
        """The pass file that decrypts this level's data; None when it is not encrypted."""
        if not metadata.encryption:
            return None
        if not self.conf.encrypt_pass_file:
            raise FreezerError("encrypted: give its passphrase with --encrypt-pass-file to check the stream")
        codecs.check_pass_file(self.conf.encrypt_pass_file)
        return self.conf.encrypt_pass_file

    def _stages(self, metadata: Metadata) -> list[list[str]]:
        decompress = codecs.decompress_command(metadata.compression)
        return ([decompress] if decompress else []) + [LIST_COMMAND]


def _feed_all(pipeline: Pipeline, chunks: Iterator[bytes], stored: Iterator[bytes]) -> FreezerError | None:
    """Write the plain ``chunks`` to the pipeline, then read what is left of ``stored`` (the digest needs all).

    Once a stage has died, or the data does not decrypt, nothing more is decrypted or written. Returns
    why the data did not decrypt (no ``Salted__`` header, say), or None; a storage error is raised.
    """
    undecoded = None
    try:
        for chunk in chunks:
            try:
                pipeline.stdin.write(chunk)
            except BrokenPipeError:
                break
    except StorageError:
        raise
    except FreezerError as exc:
        undecoded = exc
    for _chunk in stored:
        pass
    with suppress(BrokenPipeError, OSError):
        pipeline.stdin.close()
    return undecoded
