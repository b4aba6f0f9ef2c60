"""Every chain restores: seeded random changes between levels, every level restored and compared.

Each seed builds a tree, backs it up with the real agent (level 0, then a level after each round of
changes from ``freezer.tests.mutations``) and restores every level with ``--restore-from-date``,
comparing it with the source as it was when that level was taken.

The suite runs SEEDS x LEVELS; a longer manual run:
``FREEZER_CHAIN_SEEDS=0:200 FREEZER_CHAIN_LEVELS=8 python -m testtools.run \
freezer.tests.functional.test_chain_fidelity``
"""

from __future__ import annotations

import os

from freezer.tests import mutations
from freezer.tests.functional.base import local_date
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
        return f"{what}:\n    " + "\n    ".join(problems) if problems else None


def _seed_test(seed: int):
    def test(self):
        self.check_chain(seed)
    test.__doc__ = f"Seed {seed}: {LEVELS} levels restore as they were backed up."
    return test


for _seed in SEEDS:
    setattr(TestChainFidelity, f"test_seed_{_seed:03d}", _seed_test(_seed))
