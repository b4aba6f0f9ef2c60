"""Many agents against a server that takes only a few connections at once: they wait their turn."""

from __future__ import annotations

import os
import subprocess

from freezer.testing import servers
from freezer.tests.functional.base import AGENT, AgentTestCase, write

AGENTS, SERVER_LIMIT = 20, 4


class TestConnectionLimit(AgentTestCase):
    def test_every_agent_finishes_within_the_retry_time(self):
        server = self.useFixture(servers.PyFtpd(self.tmp, False, "--max-cons", str(SERVER_LIMIT)))
        write(f"{self.source}/f.bin", os.urandom(256 * 1024))
        procs = []
        for n in range(AGENTS):
            argv = [AGENT, "--action", "backup", "--storage", "ftp", "--ftp-host", "127.0.0.1",
                    "--ftp-port", str(server.port), "--ftp-username", server.username,
                    "--ftp-password", server.password, "--container", "backups", "--backup-name", f"b{n}",
                    "--path-to-backup", self.source, "--compression", "none", "--storage-retry-time", "240"]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        failures, retried = [], 0
        for n, proc in enumerate(procs):
            stderr = proc.communicate(timeout=600)[1].decode(errors="replace")
            retried += "retrying in" in stderr
            if proc.returncode != 0:
                failures.append(f"agent {n}: {stderr.strip().splitlines()[-1:]}")
        self.assertEqual([], failures)
        self.assertGreater(retried, 0, "the server's limit was never met: the test proves nothing")

    def test_no_patience_keeps_three_attempts(self):
        server = self.useFixture(servers.PyFtpd(self.tmp, False, "--refuse-first", "1000"))
        write(f"{self.source}/f", "x")
        proc = subprocess.run([AGENT, "--action", "backup", "--storage", "ftp", "--ftp-host", "127.0.0.1",
                               "--ftp-port", str(server.port), "--ftp-username", server.username,
                               "--ftp-password", server.password, "--container", "backups", "--backup-name", "b",
                               "--path-to-backup", self.source, "--storage-retry-time", "0"],
                              capture_output=True, text=True, timeout=120)
        self.assertNotEqual(0, proc.returncode)
        self.assertEqual(2, proc.stderr.count("retrying in"), proc.stderr)
