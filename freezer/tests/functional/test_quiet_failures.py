"""Every failure is one line on stderr: no traceback, no thread or ``__del__`` report, the right option named."""

import glob
import os
import subprocess

from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import AGENT, AgentTestCase, write

NOISE = ("Traceback", "Exception ignored", "Exception in thread")


class QuietFailure(AgentTestCase):
    def assertQuietFailure(self, proc, *words: str) -> None:
        """One error line naming ``words``, and nothing a user should not see."""
        self.assertOneLineError(proc, *words)
        for noise in NOISE:
            self.assertNotIn(noise, proc.stderr)


class TestBlackholedServer(QuietFailure):
    """A port that takes the connection and never answers, with a short timeout."""

    def setUp(self):
        super().setUp()
        self.hole = self.useFixture(servers.Blackhole())
        write(f"{self.source}/f", "x")

    def backup_to(self, *options: str):
        self.storage_args = lambda: ["--container", "backups", "--storage-retry-time", "0", *options]
        return self.agent("--path-to-backup", self.source, expect=None)

    def test_ftp_names_ftp_timeout(self):
        proc = self.backup_to("--storage", "ftp", "--ftp-host", self.hole.host, "--ftp-port", str(self.hole.port),
                              "--ftp-username", "u", "--ftp-password", "p", "--ftp-timeout", "1")
        self.assertQuietFailure(proc, "did not answer in time", "--ftp-host", "--ftp-timeout")

    def test_sftp_names_ftp_host_and_ssh_timeout(self):
        proc = self.backup_to("--storage", "sftp", "--ftp-host", self.hole.host, "--ftp-port", str(self.hole.port),
                              "--ftp-username", "u", "--ftp-password", "p", "--ssh-timeout", "1",
                              "--ssh-known-hosts", os.path.join(self.tmp, "known_hosts"))
        self.assertQuietFailure(proc, "did not answer in time", "--ftp-host", "--ftp-port", "--ssh-timeout")
        self.assertNotIn("--ftp-timeout", proc.stderr)

    def test_ssh_names_ssh_host_and_ssh_timeout(self):
        proc = self.backup_to("--storage", "ssh", "--ssh-host", self.hole.host, "--ssh-port", str(self.hole.port),
                              "--ssh-username", "u", "--ssh-password", "p", "--ssh-timeout", "1",
                              "--ssh-known-hosts", os.path.join(self.tmp, "known_hosts"))
        self.assertQuietFailure(proc, "did not answer in time", "--ssh-host", "--ssh-port", "--ssh-timeout")
        self.assertNotIn("--ftp-", proc.stderr)


class TestSftpServerKilledDuringRestore(QuietFailure):
    def test_one_line_and_nothing_else(self):
        server = self.useFixture(Sshd(self.tmp))
        self.storage_args = lambda: server.agent_options()
        write(f"{self.source}/big.bin", os.urandom(64 << 20))
        self.backup("--compression", "none")
        target = os.path.join(self.tmp, "restored")
        argv = [AGENT, *self.storage_args(), "--backup-name", self.backup_name, "--action", "restore",
                "--restore-abs-path", target, "--ssh-timeout", "5"]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as restore:
            # A restore into an absent target is staged in a hidden directory inside it.
            servers.wait_until(lambda: glob.glob(f"{target}/.freezer-restore-*/big.bin"), restore)
            self.assertGreater(servers.kill_server(server.proc.pid), 1)  # the master and the session
            stdout, stderr = restore.communicate(timeout=300)
        proc = subprocess.CompletedProcess(argv, restore.returncode, stdout, stderr)
        self.assertQuietFailure(proc, "refused", "--ftp-port", "nothing was restored")
        self.assertFalse(os.path.exists(target))
