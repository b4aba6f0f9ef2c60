"""Every chain restores: seeded random changes between levels, every level restored and compared.

Each seed builds a tree, backs it up with the real agent (level 0, then a level after each round of
changes from ``freezer.tests.mutations``) and restores every level with ``--restore-from-date``,
and with plain GNU tar as upstream freezer restores, comparing each with the source as it was when
that level was taken.

The suite runs SEEDS x LEVELS; a longer manual run:
``FREEZER_CHAIN_SEEDS=0:200 FREEZER_CHAIN_LEVELS=8 python -m testtools.run \
freezer.tests.functional.test_chain_fidelity``
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

from freezer.tests import mutations
from freezer.tests.functional.base import local_date, write
from freezer.tests.functional.test_local import LocalAgentTest

_START, _STOP = (int(n) for n in os.environ.get("FREEZER_CHAIN_SEEDS", "0:20").split(":"))
SEEDS = range(_START, _STOP)
LEVELS = int(os.environ.get("FREEZER_CHAIN_LEVELS", "5"))  # level 0 and LEVELS - 1 incremental levels
CHANGES = 4  # changes between two levels


class TestChainFidelity(LocalAgentTest):
    """Seeded random changes between levels; every level restores exactly."""

    def check_chain(self, seed: int) -> None:
        """Back up LEVELS levels of seed's changes, then restore and compare each of them."""
        mutator = mutations.TreeMutator(self.source, seed)
        mutator.populate()
        taken = []
        for level in range(LEVELS):
            changes = mutator.mutate(CHANGES) if level else ["populate"]
            expected = mutations.describe(self.source)
            result = self.backup("--max-level", str(LEVELS + 1), "--compression", "none")
            taken.append((result, expected, changes))
        wrong = [problem for index, level in enumerate(taken) if (problem := self.check_level(index, level))]
        if wrong:
            self.fail(f"seed {seed}: {len(wrong)} of {LEVELS} restores wrong\n" + "\n".join(wrong))

    def check_level(self, index: int, level: tuple[dict, dict, list[str]]) -> str | None:
        """Restore one level into a new directory; what is wrong with it, or None."""
        result, expected, changes = level
        target = os.path.join(self.tmp, f"restore-{index}")
        proc = self.agent("--action", "restore", "--restore-abs-path", target,
                          "--restore-from-date", local_date(result["time_stamp"]), expect=None)
        what = f"backup {index} (level {result['level']}) after {changes}"
        if proc.returncode:
            return f"{what}: restore failed: {proc.stderr.strip().splitlines()[-1:]}"
        problems = mutations.differences(expected, mutations.describe(target))
        problems += [f"plain GNU tar: {line}" for line in self.check_plain_tar(index, result, expected)]
        return f"{what}:\n    " + "\n    ".join(problems) if problems else None

    def check_plain_tar(self, index: int, result: dict, expected: dict) -> list[str]:
        """What ``tar -x --incremental`` of the chain's levels in order (upstream's restore) gets wrong."""
        target = os.path.join(self.tmp, f"plain-{index}")
        os.mkdir(target)
        chain = glob.glob(f"{self.container}/data/tar/*_{self.backup_name}/{result['l0_time_stamp']}/*_*")
        for level in sorted(chain, key=lambda path: int(path.rsplit("_", 1)[1])):
            if int(level.rsplit("_", 1)[1]) <= result["time_stamp"]:
                proc = subprocess.run(["tar", "--extract", "--incremental", f"--file={level}/data",
                                       f"--directory={target}"], capture_output=True, text=True)
                if proc.returncode:
                    return [f"tar failed on {os.path.basename(level)}: {proc.stderr.strip()}"]
        return mutations.differences(expected, mutations.describe(target))


def _seed_test(seed: int):
    def test(self):
        self.check_chain(seed)
    test.__doc__ = f"Seed {seed}: {LEVELS} levels restore as they were backed up."
    return test


for _seed in SEEDS:
    setattr(TestChainFidelity, f"test_seed_{_seed:03d}", _seed_test(_seed))


class TestChainDecisions(LocalAgentTest):
    """What the backup does where tar alone would leave a chain that cannot be restored."""

    def setUp(self):
        super().setUp()
        for name in ("a/x/f", "b/y/g"):
            write(os.path.join(self.source, name), name)

    def backup_and_check(self) -> tuple[dict, list[str]]:
        """Back up; restore that backup and compare; return its result and the agent's warnings."""
        expected = mutations.describe(self.source)
        out = os.path.join(self.tmp, "result.json")
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--max-level", "9",
                          "--metadata-out", out)
        with open(out, encoding="utf-8") as handle:
            result = json.load(handle)
        target = os.path.join(self.tmp, f"restore-{result['time_stamp']}")
        self.restore(target, "--restore-from-date", local_date(result["time_stamp"]))
        self.assertEqual([], mutations.differences(expected, mutations.describe(target)))
        return result, [line for line in proc.stderr.splitlines() if "WARNING" in line]

    def test_swapped_directories_stay_incremental(self):
        self.backup_and_check()
        os.rename(f"{self.source}/a", f"{self.source}/t")
        os.rename(f"{self.source}/b", f"{self.source}/a")
        os.rename(f"{self.source}/t", f"{self.source}/b")
        result, warnings = self.backup_and_check()
        self.assertEqual((1, []), (result["level"], warnings))

    def test_split_hard_link_starts_a_new_chain(self):
        os.link(f"{self.source}/a/x/f", f"{self.source}/b/linked")
        self.backup_and_check()
        os.rename(f"{self.source}/a/x", f"{self.source}/a/moved")
        result, warnings = self.backup_and_check()
        self.assertEqual(0, result["level"])
        self.assertEqual(1, len(warnings), warnings)
        for words in ("a/moved/f is stored but its hard link b/linked is not", "starting a new chain (level 0)"):
            self.assertIn(words, warnings[0])
        self.assertEqual(["0", "0"], [os.path.basename(p).split("_")[0] for p in self.level_dirs()])

    def test_level_written_with_devices_starts_a_new_chain(self):
        self.backup_and_check()
        write(f"{self.source}/c", "c")
        self.backup_and_check()
        snapshot = os.path.join(self.level_dirs()[-1], "engine_metadata")
        with open(snapshot, "rb") as handle:  # as upstream freezer or an older agent stored it
            data = handle.read().replace(b"\x000\x00", f"\x00{os.stat(self.source).st_dev}\x00".encode())
        with open(snapshot, "wb") as handle:
            handle.write(data)
        result, warnings = self.backup_and_check()
        self.assertEqual(0, result["level"])
        self.assertEqual(1, len(warnings), warnings)
        for words in ("level 1 was written by an agent that let tar record directory renames",
                      "starting a new chain (level 0)"):
            self.assertIn(words, warnings[0])

    def level_dirs(self) -> list[str]:
        """Every level's directory under data/, oldest first."""
        return sorted(glob.glob(f"{self.container}/data/tar/*_{self.backup_name}/*/*_*"),
                      key=lambda path: int(path.rsplit("_", 1)[1]))
