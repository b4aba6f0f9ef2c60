"""``--lock-path`` with the real agent: a backup name another process has locked is not written."""

import contextlib
import fcntl
import os

from freezer.tests.functional.base import write
from freezer.tests.functional.test_local import LocalAgentTest


class TestLockPath(LocalAgentTest):
    def setUp(self):
        super().setUp()
        self.locks = os.path.join(self.tmp, "locks")
        write(f"{self.source}/f", "x")

    @contextlib.contextmanager
    def held_elsewhere(self):
        """Hold the backup name's lock file as another agent would (flock on the same file)."""
        os.makedirs(self.locks, exist_ok=True)
        path = os.path.join(self.locks, f"freezer-node1_{self.backup_name}.lock")
        with open(path, "w", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write("4242\n")
            handle.flush()
            yield path

    def backup_args(self, *extra: str) -> list[str]:
        return ["--action", "backup", "--hostname", "node1", "--path-to-backup", self.source, *extra]

    def test_locked_name_fails_at_once_and_writes_nothing(self):
        with self.held_elsewhere():
            proc = self.agent(*self.backup_args("--lock-path", self.locks), expect=2)
        self.assertOneLineError(proc, "another freezer-agent (pid 4242)", repr(self.backup_name))
        self.assertFalse(os.path.exists(self.container))
        result = self.result_of(*self.backup_args("--lock-path", self.locks))
        self.assertEqual(0, result["level"])

    def test_from_an_ini_section_as_upstream_writes_it(self):
        ini = os.path.join(self.tmp, "agent.ini")
        write(ini, f"[oslo_concurrency]\nlock_path = {self.locks}\n")
        with self.held_elsewhere():
            proc = self.agent(*self.backup_args("--config", ini), expect=2)
        self.assertOneLineError(proc, "another freezer-agent")

    def test_from_the_environment_as_upstream_defaults(self):
        with self.held_elsewhere():
            proc = self.agent(*self.backup_args(), expect=2, env={"OSLO_LOCK_PATH": self.locks})
            self.assertOneLineError(proc, "another freezer-agent")
            info = self.agent("--action", "info", "--hostname", "node1", expect=2,
                              env={"OSLO_LOCK_PATH": self.locks})
        self.assertOneLineError(info, "no backup named")  # a reader takes no lock

    def test_admin_is_a_writer_too(self):
        self.backup("--hostname", "node1")
        with self.held_elsewhere():
            proc = self.agent("--action", "admin", "--hostname", "node1", "--remove-older-than", "0",
                              "--lock-path", self.locks, expect=2)
        self.assertOneLineError(proc, "another freezer-agent")
