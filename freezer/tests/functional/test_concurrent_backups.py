"""Several agents backing up one backup name at once: every run that exits 0 restores its own source."""

from __future__ import annotations

import json
import os
import subprocess
import time

from freezer.tests.functional.base import AGENT, describe_tree, local_date, write
from freezer.tests.functional.test_local import LocalAgentTest

AGENTS = 8


class TestConcurrentIncrementals(LocalAgentTest):
    def test_each_agent_restores_its_own_source(self):
        write(f"{self.source}/common.txt", "level 0\n")
        self.backup()
        runs = []
        for n in range(AGENTS):
            source = os.path.join(self.tmp, f"source-{n}")
            write(f"{source}/common.txt", f"agent {n}\n")
            write(f"{source}/only-{n}.txt", f"agent {n} alone\n" * (n + 1))
            out = os.path.join(self.tmp, f"result-{n}.json")
            argv = [AGENT, *self.storage_args(), "--backup-name", self.backup_name, "--action", "backup",
                    "--path-to-backup", source, "--metadata-out", out]
            runs.append((source, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        stamps = set()
        for n, (source, out, proc) in enumerate(runs):
            _, stderr = proc.communicate(timeout=300)
            if proc.returncode != 0:
                continue  # a run may fail (no free slot); only the ones that exit 0 promise a restore
            with open(out, encoding="utf-8") as handle:
                result = json.load(handle)
            self.assertNotIn(result["time_stamp"], stamps, "two backups share a timestamp")
            stamps.add(result["time_stamp"])
            target = os.path.join(self.tmp, f"restored-{n}")
            self.restore(target, "--restore-from-date", local_date(result["time_stamp"]))
            self.assertEqual(describe_tree(source), describe_tree(target), f"agent {n}: {stderr.decode()}")
        self.assertGreaterEqual(len(stamps), AGENTS // 2, "most agents should find a slot")

    def test_admin_prunes_old_timestamp_markers(self):
        write(f"{self.source}/a.txt", "a\n")
        self.backup("--no-incremental")
        markers = os.path.join(self.storage_root(), "data", "tar", f"{self._hostname()}_{self.backup_name}",
                               ".timestamps")
        self.assertEqual(1, len(os.listdir(markers)))
        first = os.listdir(markers)[0]
        time.sleep(1.1)
        self.backup("--no-incremental")
        time.sleep(1.1)  # the cutoff (now) after both timestamps
        self.agent("--action", "admin", "--remove-older-than", "0", "--remove-incomplete-after", "0")
        self.assertNotIn(first, os.listdir(markers))

    def _hostname(self) -> str:
        import socket

        return socket.gethostname()
