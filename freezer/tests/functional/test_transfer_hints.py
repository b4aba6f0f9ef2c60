"""A backup or a restore tells its storage that data moves next, before the round trips that precede it."""

import os

import fixtures
import testtools

from freezer.actions.backup import BackupJob
from freezer.actions.restore import RestoreJob
from freezer.common import config
from freezer.errors import ServerBusy
from freezer.storage.local import LocalStorage
from freezer.storage.multiple import MultiStorage
from freezer.storage.retry import Retrying
from freezer.storage.throttle import Throttled
from freezer.tests.functional.base import write


class Hinted(LocalStorage):
    """A local storage that records the hints it gets and the listings it is asked for, in order."""

    def __init__(self, root: str, calls: list[str]):
        super().__init__(root)
        self.calls = calls

    def expect_writes(self) -> None:
        self.calls.append("expect_writes")

    def expect_reads(self, paths=()) -> None:
        self.calls.append("expect_reads")
        self.paths = list(paths)

    def listdir(self, path: str) -> list[str]:
        self.calls.append("list")
        return super().listdir(path)

    def listdirs(self, paths):
        self.calls.append("list")
        return super().listdirs(paths)


class TestActionsHint(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.source, self.store = os.path.join(self.tmp, "source"), os.path.join(self.tmp, "store")
        write(os.path.join(self.source, "f"), "x")
        self.calls: list[str] = []

    def job(self, cls, *options: str):
        conf = config.build(["--storage", "local", "--container", self.store, "--backup-name", "b",
                             "--path-to-backup", self.source, "--compression", "none", *options])
        self.storage = Hinted(self.store, self.calls)
        return cls(conf, self.storage)

    def test_a_backup_says_so_before_it_lists_its_chain(self):
        self.job(BackupJob, "--action", "backup").run()
        self.assertEqual(["expect_writes", "list"], self.calls[:2])
        self.assertNotIn("expect_reads", self.calls)

    def test_a_dry_run_does_not(self):
        self.job(BackupJob, "--action", "backup", "--dry-run").run()
        self.assertNotIn("expect_writes", self.calls)

    def test_a_restore_says_so_before_it_lists_and_again_with_the_data_it_reads(self):
        self.job(BackupJob, "--action", "backup").run()
        self.calls.clear()
        self.job(RestoreJob, "--action", "restore", "--restore-abs-path", os.path.join(self.tmp, "r")).run()
        self.assertEqual(["expect_reads", "list"], self.calls[:2])
        again = self.calls.index("expect_reads", 1)
        self.assertGreater(again, self.calls.index("list"))  # once it has its plan
        self.assertEqual(1, len(self.storage.paths))
        self.assertRegex(self.storage.paths[0], r"^data/tar/[^/]+_b/\d+/0_\d+/data$")
        self.assertNotIn("expect_writes", self.calls)


class Flaky(Hinted):
    """Its first hint fails as a busy server's connect would."""

    def __init__(self, root: str, calls: list[str]):
        super().__init__(root, calls)
        self.failures = 1

    def expect_writes(self) -> None:
        super().expect_writes()
        if self.failures:
            self.failures -= 1
            raise ServerBusy("421 try again later")

    def expect_reads(self, paths=()) -> None:
        super().expect_reads(paths)
        if self.failures:
            self.failures -= 1
            raise ServerBusy("421 try again later")


class TestHintsReachTheDrivers(testtools.TestCase):
    def test_a_failed_connect_in_a_hint_is_retried_as_any(self):
        root = self.useFixture(fixtures.TempDir()).path
        for hint in ("expect_writes", "expect_reads"):
            calls: list[str] = []
            getattr(Retrying(Flaky(root, calls), backoff=0.01), hint)()
            self.assertEqual([hint, hint], calls)

    def test_through_retries_and_limits_and_to_every_copy(self):
        calls: list[str] = []
        root = self.useFixture(fixtures.TempDir()).path
        first, second = Hinted(root, calls), Hinted(root, calls)
        MultiStorage([Retrying(Throttled(first, 1000, None)), second]).expect_writes()
        self.assertEqual(["expect_writes", "expect_writes"], calls)
        calls.clear()
        MultiStorage([Retrying(Throttled(first, 1000, None)), second]).expect_reads()
        self.assertEqual(["expect_reads"], calls)  # reads go to the first copy first
