"""``[storage:NAME]`` sections: one backup to local disk and an FTP server at once, source read once."""

import os
import shutil

from freezer.testing import servers
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree, mount_small_disk, write


class MultipleStorageTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.server = self.useFixture(servers.PyFtpd(self.tmp))
        self.local = os.path.join(self.tmp, "local-copy")
        self.ftp_root = os.path.join(self.server.root, "ftp-copy")
        self.ini = os.path.join(self.tmp, "job.ini")
        self.write_ini(self.server.port)
        make_tree(self.source)

    def write_ini(self, ftp_port):
        with open(self.ini, "w", encoding="utf-8") as handle:
            handle.write(f"[job]\nbackup_name = {self.backup_name}\n\n"
                         f"[storage:disk]\nstorage = local\ncontainer = {self.local}\n\n"
                         f"[storage:remote]\nstorage = ftp\ncontainer = ftp-copy\nftp_host = {self.server.host}\n"
                         f"ftp_port = {ftp_port}\nftp_username = {self.server.username}\n"
                         f"ftp_password = {self.server.password}\n")

    def storage_args(self):
        return ["--config", self.ini]

    def files(self, root):
        found = {}
        for parent, _dirs, names in os.walk(root):
            for name in names:
                with open(os.path.join(parent, name), "rb") as handle:
                    found[os.path.relpath(os.path.join(parent, name), root)] = handle.read()
        return found

    def test_backup_lands_in_both_with_one_tar(self):
        bin_dir, calls = os.path.join(self.tmp, "bin"), os.path.join(self.tmp, "tar-calls")
        os.makedirs(bin_dir)
        with open(os.path.join(bin_dir, "tar"), "w", encoding="utf-8") as script:
            script.write(f'#!/bin/sh\necho "$1" >> {calls}\nexec {shutil.which("tar")} "$@"\n')
        os.chmod(os.path.join(bin_dir, "tar"), 0o755)
        self.agent("--action", "backup", "--path-to-backup", self.source,
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        with open(calls, encoding="utf-8") as handle:
            self.assertEqual(["--create"], handle.read().split())
        local, remote = self.files(self.local), self.files(self.ftp_root)
        self.assertEqual(4, len(local))  # data, engine_metadata, metadata and the index
        self.assertEqual(local, remote)

    def test_restore_takes_the_storage_that_has_the_backup(self):
        expected = describe_tree(self.source)
        self.backup()
        shutil.rmtree(self.local)
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(expected, target)

    def test_incremental_levels_in_both(self):
        self.backup()
        with open(os.path.join(self.source, "new.txt"), "w", encoding="utf-8") as handle:
            handle.write("new")
        self.assertEqual(1, self.backup()["level"])
        self.assertEqual(self.files(self.local), self.files(self.ftp_root))

    def test_one_storage_down_fails_the_backup_in_one_line(self):
        with socket_closed() as port:
            self.write_ini(port)
            proc = self.agent("--action", "backup", "--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "refused")
        metadata = [name for name in self.files(self.local) if name.endswith("metadata")
                    and not name.endswith("engine_metadata")]
        self.assertEqual([], metadata)  # no complete backup anywhere

    def test_full_disk_midway_stops_both_uploads(self):
        mount_small_disk(self, self.local, os.getuid())
        write(f"{self.source}/big.bin", os.urandom(4 * 1024 * 1024))
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none",
                          expect=None)
        self.assertOneLineError(proc, "no space left", self.local)
        for root in (self.local, self.ftp_root):
            self.assertEqual([], list(self.files(root)), root)  # nothing complete, nothing half-written

    def test_section_without_storage_is_one_line(self):
        with open(self.ini, "a", encoding="utf-8") as handle:
            handle.write("\n[storage:broken]\ncontainer = x\n")
        proc = self.agent("--action", "info", expect=None)
        self.assertOneLineError(proc, "[storage:broken] needs storage")


class socket_closed:
    """A local port with nothing listening on it."""

    def __enter__(self):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc):
        return False
