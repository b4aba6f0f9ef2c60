"""``--snapshot``: the LVM command sequence, cleanup on failure, and the errors users meet.

This kernel has no device-mapper, so lvcreate cannot run here; ``fakelvm`` stands in for the
six tools and logs each call, and the agent and tar run for real on what the "snapshot" shows.
"""

import json
import os
import shutil

from freezer.tests import fakelvm
from freezer.tests.functional.base import describe_tree, make_tree
from freezer.tests.functional.test_local import LocalAgentTest


class SnapshotTest(LocalAgentTest):
    def setUp(self):
        super().setUp()
        self.volume = os.path.join(self.tmp, "volume")
        self.source = os.path.join(self.volume, "data")
        make_tree(self.source)
        self.mounts = os.path.join(self.tmp, "mounts")
        os.makedirs(self.mounts)
        bin_dir = self.bin_dir = os.path.join(self.tmp, "bin")
        fakelvm.install(bin_dir)
        self.log = os.path.join(self.tmp, "lvm.log")
        self.env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LVM_LOG": self.log,
                    "FAKE_LVM_ORIGIN": self.volume}

    def agent(self, *args, env=None, **kwargs):
        """The agent, its FAKE_LVM_* settings handed to the fake tools (which see none of its environment)."""
        fakelvm.configure(self.bin_dir, env or {})
        return super().agent(*args, env=env, **kwargs)

    def snapshot_backup(self, *args, expect=0, fail=None, extra_env=None):
        env = dict(self.env, FAKE_LVM_FAIL=fail or "", **(extra_env or {}))
        return self.agent("--action", "backup", "--path-to-backup", self.source, "--snapshot",
                          "--lvm-dirmount", self.mounts, *args, expect=expect, env=env)

    def metadata_files(self):
        for parent, _dirs, files in os.walk(self.container):
            yield from (os.path.join(parent, name) for name in files if name == "metadata")

    def calls(self):
        with open(self.log, encoding="utf-8") as handle:
            return [line.split()[0] for line in handle]

    def test_backup_reads_the_snapshot_and_cleans_up(self):
        expected = describe_tree(self.source)
        self.snapshot_backup()
        self.assertEqual(["findmnt", "lvs", "lvcreate", "mount", "lvs", "umount", "lvremove"], self.calls())
        with open(self.log, encoding="utf-8") as handle:
            lvcreate = handle.read().splitlines()[2]
        self.assertIn("--snapshot --size 1G --name data_freezer_", lvcreate)
        self.assertIn("--permission r vg0/data", lvcreate)
        self.assertEqual([], os.listdir(self.mounts))
        shutil.rmtree(self.volume)
        restored = os.path.join(self.tmp, "restored")
        self.restore(restored)
        self.assertEqual(expected, describe_tree(restored))

    def test_metadata_names_the_real_path(self):
        self.snapshot_backup("--lvm-snapsize", "5G")
        recorded = [json.load(open(path, encoding="utf-8"))["path_to_backup"] for path in self.metadata_files()]
        self.assertEqual([self.source], recorded)
        with open(self.log, encoding="utf-8") as handle:
            self.assertIn("--size 5G", handle.read())

    def test_failed_backup_still_unmounts_and_removes(self):
        for tool in ("gzip", "pigz"):  # the compressor fails once the snapshot is mounted
            with open(os.path.join(self.bin_dir, tool), "w", encoding="utf-8") as script:
                script.write("#!/bin/sh\necho 'simulated failure' >&2\nexit 3\n")
            os.chmod(os.path.join(self.bin_dir, tool), 0o755)
        proc = self.snapshot_backup("--compression", "gzip", expect=None)
        self.assertOneLineError(proc)
        self.assertEqual(["findmnt", "lvs", "lvcreate", "mount", "umount", "lvremove"], self.calls())
        self.assertEqual([], os.listdir(self.mounts))

    def test_overflowed_snapshot_leaves_no_complete_backup(self):
        proc = self.snapshot_backup(expect=None, extra_env={"FAKE_LVM_OVERFLOW": "1"})
        self.assertOneLineError(proc, "ran out of room", "--lvm-snapsize")
        self.assertEqual([], list(self.metadata_files()))
        self.assertEqual("umount lvremove".split(), self.calls()[-2:])

    def test_failed_mount_removes_the_snapshot(self):
        proc = self.snapshot_backup(expect=None, fail="mount")
        self.assertOneLineError(proc, "--snapshot", "mount", "simulated failure")
        self.assertEqual(["findmnt", "lvs", "lvcreate", "mount", "lvremove"], self.calls())
        self.assertEqual([], os.listdir(self.mounts))

    def test_not_a_logical_volume(self):
        proc = self.snapshot_backup(expect=None, fail="lvs")
        self.assertOneLineError(proc, "not an LVM logical volume", "--snapshot")
        self.assertEqual(["findmnt", "lvs"], self.calls())

    def test_missing_lvm_tools(self):
        os.unlink(os.path.join(self.tmp, "bin", "lvcreate"))
        env = dict(self.env, PATH=os.path.join(self.tmp, "bin") + ":" + _path_without_lvm())
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--snapshot",
                          expect=None, env=env)
        self.assertOneLineError(proc, "lvcreate", "lvm2", "--snapshot")
        self.assertFalse(os.path.exists(self.log))


def _path_without_lvm() -> str:
    """``$PATH`` minus the directories that hold a real lvcreate."""
    dirs = os.environ["PATH"].split(":")
    return ":".join(d for d in dirs if not os.path.exists(os.path.join(d, "lvcreate")))


class SnapshotUpstreamOptionsTest(SnapshotTest):
    """Upstream's --lvm-* options: name, permission, source volume, volume group, extents."""

    def logged(self, tool):
        with open(self.log, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.startswith(tool + " ")]

    def test_named_writable_snapshot_of_the_given_volume(self):
        expected = describe_tree(self.source)
        self.snapshot_backup("--lvm-snapname", "nightly_snap", "--lvm-snap-perm", "rw",
                             "--lvm-srcvol", "/dev/vg0/data", "--lvm-volgroup", "vg0")
        [lvcreate] = self.logged("lvcreate")
        self.assertIn("--name nightly_snap --permission rw /dev/vg0/data", lvcreate)
        [mount] = self.logged("mount")
        self.assertIn("-o rw /dev/vg0/nightly_snap", mount)
        self.assertEqual(["lvremove --force vg0/nightly_snap"], self.logged("lvremove"))
        restored = os.path.join(self.tmp, "restored")
        self.restore(restored)
        self.assertEqual(expected, describe_tree(restored))

    def test_source_volume_must_hold_the_path(self):
        proc = self.snapshot_backup("--lvm-srcvol", "/dev/vg0/other", expect=None)
        self.assertOneLineError(proc, "--lvm-srcvol /dev/vg0/other is vg0/other", "vg0/data")
        self.assertEqual([], self.logged("lvcreate"))

    def test_wrong_volume_group_is_refused(self):
        proc = self.snapshot_backup("--lvm-volgroup", "vg9", expect=None)
        self.assertOneLineError(proc, "--lvm-volgroup vg9", "group vg0")
        self.assertEqual([], self.logged("lvcreate"))

    def test_percentage_size_is_in_extents(self):
        self.snapshot_backup("--lvm-snapsize", "80%FREE")
        [lvcreate] = self.logged("lvcreate")
        self.assertIn("--extents 80%FREE", lvcreate)
        [mount] = self.logged("mount")
        self.assertIn("-o ro ", mount)
