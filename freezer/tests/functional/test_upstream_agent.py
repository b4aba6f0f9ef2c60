"""Upstream freezer-agent with ``contrib/upstream-freezer/*.patch`` applied, against this suite's servers.

The patched agent backs up and restores through FTP (pyftpdlib) and SFTP (OpenSSH sshd), refuses an
SFTP server whose host key is unknown, and shares backups with this project's agent both ways.
Its venv (``.venv-upstream``) is built once by ``contrib/upstream-freezer/build-venv.sh``, which
``tools/setup-env.sh test`` runs; the upstream tree comes from ``../shared/third_party/freezer``
(or ``$FREEZER_UPSTREAM_DIR``) and the tests skip without it, as the devstack test does.
"""

from __future__ import annotations

import os
import subprocess
import unittest

from freezer.testing.servers import PyFtpd
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree, write

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.path.join(REPO, "contrib", "upstream-freezer", "build-venv.sh")
UPSTREAM_TREE = os.environ.get("FREEZER_UPSTREAM_DIR") or os.path.join(REPO, "..", "shared", "third_party", "freezer")
UPSTREAM_VENV = os.environ.get("FREEZER_UPSTREAM_VENV") or os.path.join(REPO, ".venv-upstream")
UPSTREAM_AGENT = os.path.join(UPSTREAM_VENV, "bin", "freezer-agent")
HOSTNAME = "upstream-e2e"


def _require_upstream_agent() -> None:
    """Skip without the upstream tree; build the venv when it is missing or its patches changed."""
    if not os.path.isfile(os.path.join(UPSTREAM_TREE, "setup.cfg")):
        raise unittest.SkipTest(f"no upstream freezer at {UPSTREAM_TREE}: set $FREEZER_UPSTREAM_DIR")
    env = dict(os.environ, FREEZER_UPSTREAM_DIR=UPSTREAM_TREE)
    proc = subprocess.run(["bash", BUILD, UPSTREAM_VENV], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{BUILD} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def _to_seconds(tree: dict) -> dict:
    """``describe_tree`` with whole-second mtimes: tar archives (upstream's format) keep no more."""
    return {path: tuple(value // 10**9 if index == 2 else value for index, value in enumerate(entry))
            for path, entry in tree.items()}


class UpstreamAgentTests:
    """Runs both agents on one storage; the test classes start the server and give each agent's options."""

    @classmethod
    def setUpClass(cls):
        _require_upstream_agent()
        super().setUpClass()

    def setUp(self):
        super().setUp()
        make_tree(self.source)
        self.target = os.path.join(self.tmp, "restored")
        self.home = os.path.join(self.tmp, "upstream-home")
        os.makedirs(self.home)

    def upstream_storage_args(self) -> list[str]:
        raise NotImplementedError

    def storage_args(self) -> list[str]:
        return [*self.server.agent_options(self.container), "--hostname", HOSTNAME]

    def upstream(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        """Run the patched upstream agent, without this checkout on its path and without OpenStack credentials."""
        env = {key: value for key, value in os.environ.items()
               if key != "PYTHONPATH" and not key.startswith("OS_")}
        env["HOME"] = self.home
        argv = [UPSTREAM_AGENT, *self.upstream_storage_args(), "--backup-name", self.backup_name,
                "--hostname", HOSTNAME, "--log-file", os.path.join(self.tmp, "upstream-agent.log"), *args]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != expect:
            self.fail(f"upstream agent exit {proc.returncode}, expected {expect}\nargv: {argv}\n"
                      f"stderr: {proc.stderr[-3000:]}\nlog: {self.upstream_log()[-3000:]}")
        return proc

    def upstream_log(self) -> str:
        path = os.path.join(self.tmp, "upstream-agent.log")
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def upstream_backup(self) -> None:
        """A backup at the next level: upstream makes a new level 0 each time without these options."""
        self.upstream("--action", "backup", "--path-to-backup", self.source, "--incremental", "--max-level", "2")

    def upstream_restore(self) -> None:
        self.upstream("--action", "restore", "--restore-abs-path", self.target)

    def assertRestored(self) -> None:
        self.assertEqual(_to_seconds(describe_tree(self.source)), _to_seconds(describe_tree(self.target)))

    def test_incremental_round_trip_and_ours_restores_it(self):
        self.upstream_backup()  # level 0 into an empty container: listdir of a missing directory
        write(f"{self.source}/added.txt", "level one\n")
        os.remove(f"{self.source}/random.bin")
        self.upstream_backup()
        self.upstream_restore()  # upstream's FTP restore used to spin forever at the end of the data
        self.assertRestored()
        self.assertNotIn(self.server.password, self.upstream_log())
        self.target = os.path.join(self.tmp, "restored-by-ours")
        self.assertEqual(2, self.restore(self.target)["levels_applied"])
        self.assertRestored()


class TestUpstreamFtp(UpstreamAgentTests, AgentTestCase):
    """pyftpdlib; the container is absolute because upstream's listdir changes the working directory."""

    container = "/backups"

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(PyFtpd(self.tmp))

    def upstream_storage_args(self):
        return ["--storage", "ftp", "--container", self.container, "--ftp-host", self.server.host,
                "--ftp-port", str(self.server.port), "--ftp-username", self.server.username,
                "--ftp-password", self.server.password]


class TestUpstreamSftp(UpstreamAgentTests, AgentTestCase):
    """OpenSSH sshd; both agents read the server key from one known_hosts file."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.tmp))
        self.container = self.server.container()
        with open(self.server.host_key + ".pub", encoding="ascii") as public:
            kind, key = public.read().split()[:2]
        write(self.server.known_hosts, f"[{self.server.host}]:{self.server.port} {kind} {key}\n")
        self.credentials = ["--ftp-password", self.server.password]

    def upstream_storage_args(self):
        return ["--storage", "sftp", "--container", self.container, "--ftp-host", self.server.host,
                "--ftp-port", str(self.server.port), "--ftp-username", self.server.username,
                "--ftp-known-hosts", self.server.known_hosts, *self.credentials]

    def test_upstream_restores_what_ours_wrote_with_a_key(self):
        self.backup()
        self.credentials = ["--ssh-key", self.server.client_key]
        self.upstream_restore()
        self.assertRestored()

    def test_unknown_host_key_is_refused(self):
        write(self.server.known_hosts, "")
        self.upstream("--action", "backup", "--path-to-backup", self.source, expect=1)
        self.assertIn("not found in known_hosts", self.upstream_log())
        self.assertFalse(os.path.exists(self.container))
