"""``--action info`` warns about a chain past LONG_CHAIN backups: the real agent on local storage."""

import json
import os

from freezer.storage.chains import LONG_CHAIN
from freezer.tests.functional.base import write
from freezer.tests.functional.test_local import LocalAgentTest


class TestLongChainWarning(LocalAgentTest):
    def info(self, *args: str) -> tuple[dict, list[str]]:
        """``--action info``'s JSON result and its warning lines on stderr."""
        out = os.path.join(self.tmp, "info.json")
        proc = self.agent("--action", "info", "--metadata-out", out, *args)
        with open(out, encoding="utf-8") as handle:
            return json.load(handle), [line for line in proc.stderr.splitlines() if ": WARNING: " in line]

    def test_warned_once_past_the_threshold(self):
        write(f"{self.source}/f", "x")
        for _ in range(LONG_CHAIN):
            self.backup("--compression", "none")
        result, warnings = self.info()
        self.assertEqual(([], []), (result["long_chains"], warnings))
        last = self.backup("--compression", "none")
        self.assertEqual(LONG_CHAIN, last["level"])  # one chain, levels 0..30
        result, warnings = self.info()
        self.assertEqual([{"l0_time_stamp": result["backups"][0]["l0_time_stamp"],
                           "date": result["backups"][0]["date"], "backups": LONG_CHAIN + 1,
                           "highest_level": LONG_CHAIN, "restore_reads": LONG_CHAIN + 1}], result["long_chains"])
        self.assertEqual(1, len(warnings), warnings)
        self.assertTrue(warnings[0].startswith("freezer-agent: WARNING: backup 'test-backup': the chain of "))
        for words in (f"holds {LONG_CHAIN + 1} backups", f"reads {LONG_CHAIN + 1}", "--max-level",
                      "--restart-always-level"):
            self.assertIn(words, warnings[0])
        self.assertEqual(0, self.agent("--action", "info").returncode)  # a warning, not a failure
        self.assertEqual([], self.info("--quiet")[1])
        self.backup("--compression", "none", "--max-level", "5")  # bounding it starts a new chain
        result, warnings = self.info()
        self.assertEqual(1, len(result["long_chains"]))  # the old chain is still long until admin removes it
        self.assertEqual(0, result["backups"][-1]["level"])
