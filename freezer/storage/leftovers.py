"""What ``--action admin`` cleans up: levels that never completed and uploads that never got their name.

Pure functions of an inventory (``layout.BackupSet.inventory``): which level directories hold which files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from freezer.storage.chains import BackupRef

SECONDS_PER_HOUR = 3600
TREES = ("data", "metadata")
_PARTIAL = re.compile(r"^\.[^/]+\.partial-[0-9a-f]{8}$")  # base.temporary_name; one name, never a path


@dataclasses.dataclass(frozen=True)
class LevelFiles:
    """The names in one level's directory under ``data/`` and under ``metadata/``."""

    data: frozenset[str] = frozenset()
    metadata: frozenset[str] = frozenset()

    @property
    def complete(self) -> bool:
        return "metadata" in self.metadata


@dataclasses.dataclass(frozen=True)
class Leftovers:
    """What admin removes: chains whose level 0 never completed, other incomplete levels, stray partials."""

    chains: tuple[int, ...] = ()  # level-0 timestamps
    levels: tuple[BackupRef, ...] = ()  # every level removed, those of the chains included
    partials: tuple[tuple[str, BackupRef, str], ...] = ()  # (tree, level, file name)



def incomplete_levels(inventory: Mapping[BackupRef, LevelFiles]) -> list[BackupRef]:
    """Levels that have a directory but no ``metadata``: in progress, or left by a dead agent."""
    return sorted(ref for ref, files in inventory.items() if not files.complete)


def is_partial(name: str) -> bool:
    """A temporary upload (``.name.partial-XXXXXXXX``) that never got its final name."""
    return bool(_PARTIAL.match(name))


def old_enough(ref: BackupRef, now: int, min_age_hours: float) -> bool:
    """The level's timestamp is at least ``min_age_hours`` before ``now``: no running backup owns it."""
    return now - ref.ts >= min_age_hours * SECONDS_PER_HOUR


def leftovers(inventory: Mapping[BackupRef, LevelFiles], now: int, min_age_hours: float) -> Leftovers:
    """What admin may remove: old incomplete levels (their chain, for a level 0) and old stray partials."""
    dead_chains = {l0 for l0 in {ref.l0_ts for ref in inventory} if _level_zero_missing(inventory, l0)
                   and old_enough(BackupRef(l0, l0, 0), now, min_age_hours)}
    levels, partials = [], []
    for ref, files in sorted(inventory.items()):
        if ref.l0_ts in dead_chains:
            levels.append(ref)
        elif not files.complete:
            if old_enough(ref, now, min_age_hours):
                levels.append(ref)
        elif old_enough(ref, now, min_age_hours):
            partials += [(tree, ref, name) for tree in TREES for name in sorted(getattr(files, tree))
                         if is_partial(name)]
    return Leftovers(tuple(sorted(dead_chains)), tuple(levels), tuple(partials))


def _level_zero_missing(inventory: Mapping[BackupRef, LevelFiles], l0_ts: int) -> bool:
    files = inventory.get(BackupRef(l0_ts, l0_ts, 0))
    return files is None or not files.complete
