"""``--lock-path``: where the lock lives, who takes it, and the one line a second writer gets."""

import os

import fixtures
import testtools

from freezer.actions import lock
from freezer.common import config
from freezer.errors import FreezerError


class TestLockPlace(testtools.TestCase):
    def test_option_then_environment_then_none(self):
        self.assertEqual("/run/a", lock.directory("/run/a", {"OSLO_LOCK_PATH": "/run/b"}))
        self.assertEqual("/run/b", lock.directory(None, {"OSLO_LOCK_PATH": "/run/b"}))
        self.assertEqual("/run/b", lock.directory("", {"OSLO_LOCK_PATH": "/run/b"}))
        self.assertIsNone(lock.directory(None, {}))

    def test_file_name_is_one_safe_name(self):
        self.assertEqual("freezer-node1_etc.lock", lock.file_name("node1", "etc"))
        self.assertEqual("freezer-node1_a_b_c.lock", lock.file_name("node1", "a/b c"))

    def test_from_command_line_and_ini(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        self.assertEqual("/run/locks", config.build(["--lock-path", "/run/locks"]).lock_path)
        ini = os.path.join(tmp, "agent.ini")
        with open(ini, "w", encoding="utf-8") as handle:
            handle.write("[oslo_concurrency]\nlock_path = /var/lock/freezer\n")
        self.assertEqual("/var/lock/freezer", config.build(["--config", ini]).lock_path)


class TestLockHeld(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.locks = os.path.join(self.tmp, "locks")
        self.useFixture(fixtures.EnvironmentVariable("OSLO_LOCK_PATH"))

    def conf(self, *argv: str):
        return config.build(["--lock-path", self.locks, "--backup-name", "etc", "--hostname", "node1", *argv])

    def test_backup_holds_the_lock_and_writes_its_pid(self):
        with lock.held(self.conf("--action", "backup")) as path:
            self.assertEqual(os.path.join(self.locks, "freezer-node1_etc.lock"), path)
            with open(path, encoding="ascii") as handle:
                self.assertEqual(f"{os.getpid()}\n", handle.read())
        self.assertEqual(0o700, os.stat(self.locks).st_mode & 0o777)

    def test_second_writer_fails_at_once_naming_the_holder(self):
        with lock.held(self.conf("--action", "backup")):
            error = self.assertRaises(lock.LockHeld, self.enter, self.conf("--action", "admin"))
        self.assertIn(f"(pid {os.getpid()})", str(error))
        self.assertIn("'etc'", str(error))
        self.assertEqual(2, error.exit_code)
        self.assertEqual(1, len(str(error).splitlines()))

    def test_released_when_done(self):
        with lock.held(self.conf("--action", "backup")):
            pass
        with lock.held(self.conf("--action", "backup")) as path:
            self.assertIsNotNone(path)

    def test_readers_dry_runs_and_other_names_take_no_lock(self):
        with lock.held(self.conf("--action", "backup")):
            for argv in (["--action", "info"], ["--action", "restore"], ["--action", "verify"],
                         ["--action", "backup", "--dry-run"]):
                with lock.held(self.conf(*argv)) as path:
                    self.assertIsNone(path)
            other = config.build(["--lock-path", self.locks, "--backup-name", "home", "--hostname", "node1"])
            with lock.held(other) as path:
                self.assertTrue(path.endswith("freezer-node1_home.lock"))

    def test_no_lock_path_no_lock(self):
        with lock.held(config.build(["--backup-name", "etc"])) as path:
            self.assertIsNone(path)

    def test_unusable_directory_is_one_line_naming_the_option(self):
        blocker = os.path.join(self.tmp, "file")
        open(blocker, "w").close()
        conf = config.build(["--lock-path", os.path.join(blocker, "sub"), "--backup-name", "etc"])
        error = self.assertRaises(FreezerError, self.enter, conf)
        self.assertIn("--lock-path", str(error))

    @staticmethod
    def enter(conf):
        with lock.held(conf):
            pass
