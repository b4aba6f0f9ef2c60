"""Upstream's backup options with file backups: one file system, consistency checksums, sync."""

import json
import os
import subprocess

from freezer.tests.functional.base import describe_tree, make_tree, write
from freezer.tests.functional.test_local import LocalAgentTest


class OneFileSystemTest(LocalAgentTest):
    """A tmpfs mounted inside the source: left out by default, as upstream's tar; kept on request."""

    def setUp(self):
        super().setUp()
        write(f"{self.source}/on-root-fs.txt", "here\n")
        self.mount = os.path.join(self.source, "mnt")
        os.makedirs(self.mount)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "freezer-test-mount", self.mount], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mount], check=False)
        write(f"{self.mount}/on-tmpfs.txt", "elsewhere\n")

    def restored(self, *backup_args):
        self.backup(*backup_args)
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        return describe_tree(target)

    def test_stays_on_one_file_system_by_default(self):
        tree = self.restored()
        self.assertIn("on-root-fs.txt", tree)
        self.assertIn("mnt", tree)  # the mount point itself, empty
        self.assertNotIn("mnt/on-tmpfs.txt", tree)

    def test_cross_mount_points_on_request(self):
        tree = self.restored("--cross-mount-points")
        self.assertIn("mnt/on-tmpfs.txt", tree)


class ConsistencyTest(LocalAgentTest):
    def setUp(self):
        super().setUp()
        make_tree(self.source)
        self.target = os.path.join(self.tmp, "restored")

    def test_backup_records_checksum_restore_checks_it(self):
        backup = self.backup("--consistency-check")
        checksum = backup["consistency_checksum"]
        self.assertEqual(64, len(checksum))
        restored = self.restore(self.target, "--consistency-checksum", checksum)
        self.assertEqual(checksum, restored["consistency_checksum"])

    def test_restore_with_consistency_check_uses_the_recorded_checksum(self):
        checksum = self.backup("--consistency-check")["consistency_checksum"]
        write(f"{self.source}/added-later.txt", "new\n")
        checksum_1 = self.backup("--consistency-check")["consistency_checksum"]
        self.assertNotEqual(checksum, checksum_1)
        self.assertEqual(checksum_1, self.restore(self.target, "--consistency-check")["consistency_checksum"])

    def test_wrong_checksum_fails_with_one_line(self):
        self.backup("--consistency-check")
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target,
                          "--consistency-checksum", "0" * 64, expect=None)
        self.assertOneLineError(proc, "consistency check failed", "0" * 64)

    def test_backup_without_checksum_cannot_be_checked(self):
        self.backup()
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, "--consistency-check",
                          expect=None)
        self.assertOneLineError(proc, "recorded no checksum", "--consistency-check")

    def test_excluded_files_are_outside_the_checksum(self):
        write(f"{self.source}/noise.log", "changes every minute\n")
        checksum = self.backup("--consistency-check", "--exclude", "*.log")["consistency_checksum"]
        self.restore(self.target, "--consistency-checksum", checksum)

    def test_checksum_is_in_the_metadata(self):
        checksum = self.backup("--consistency-check")["consistency_checksum"]
        recorded = []
        for parent, _dirs, files in os.walk(self.container):
            if "metadata" in files:
                with open(os.path.join(parent, "metadata"), encoding="utf-8") as handle:
                    recorded.append(json.load(handle).get("consistency_checksum"))
        self.assertEqual([checksum], recorded)


class SyncTest(LocalAgentTest):
    def test_sync_and_nosync_both_back_up(self):
        write(f"{self.source}/f", "x")
        self.assertEqual(0, self.backup("--sync")["level"])
        self.assertEqual(1, self.backup("--nosync")["level"])
