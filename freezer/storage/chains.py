"""Backups as chains, and the rules on them: the next level, what a restore applies, what retention removes.

Pure functions of the backups' names (level and timestamps) and of the options; nothing here reads or
writes a storage (``layout.BackupSet`` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from freezer.errors import NotFound
from freezer.storage import metadata

SECONDS_PER_DAY = 86400
#: ``--action info`` warns about a chain holding more backups than this: a restore of its newest
#: state reads every level of it, and retention never removes the newest chain, so an unbounded one
#: grows for ever (see "Bounding a chain" in doc/source/user-guide.rst)
LONG_CHAIN = 30


@dataclasses.dataclass(frozen=True, order=True)
class BackupRef:
    """One backup: the chain it belongs to, its level and its timestamp."""

    l0_ts: int
    ts: int
    level: int

    @property
    def relpath(self) -> str:
        """``<L0_ts>/<level>_<ts>``, the part shared by its data and metadata."""
        return f"{self.l0_ts}/{self.level}_{self.ts}"


@dataclasses.dataclass(frozen=True)
class Chain:
    """A level-0 backup and the incrementals built on it, oldest first."""

    backups: tuple[BackupRef, ...]

    @property
    def l0_ts(self) -> int:
        return self.backups[0].l0_ts

    @property
    def newest(self) -> BackupRef:
        return self.backups[-1]

    @property
    def highest_level(self) -> int:
        return max(b.level for b in self.backups)


@dataclasses.dataclass(frozen=True)
class LevelPolicy:
    """The options that decide the level of the next backup."""

    incremental: bool = True
    max_level: int | None = None
    always_level: int | None = None
    restart_always_level: float | None = None


@dataclasses.dataclass(frozen=True)
class LevelPlan:
    """The level of the next backup, its chain, and the backup it builds on."""

    level: int
    l0_ts: int | None
    parent: BackupRef | None


def group_chains(backups: Sequence[BackupRef]) -> list[Chain]:
    """Group backups by level-0 timestamp; a chain without its level 0 is dropped."""
    by_l0: dict[int, list[BackupRef]] = {}
    for ref in sorted(backups, key=lambda b: (b.l0_ts, b.ts)):
        by_l0.setdefault(ref.l0_ts, []).append(ref)
    chains = []
    for refs in by_l0.values():
        if refs[0].level == 0 and refs[0].ts == refs[0].l0_ts:
            chains.append(Chain(tuple(refs)))
    return sorted(chains, key=lambda c: c.l0_ts)


def settings_change(parent: metadata.Metadata, compression: str, encryption: bool) -> str | None:
    """Why a backup with these settings cannot extend the parent's chain; None if it can."""
    if parent.compression != compression:
        return f"compression changed from {parent.compression} to {compression}"
    if parent.encryption != encryption:
        return f"encryption changed from {_on_off(parent.encryption)} to {_on_off(encryption)}"
    return None


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def plan_level(chains: Sequence[Chain], now: int, policy: LevelPolicy) -> LevelPlan:
    """Choose the level of the next backup (upstream freezer's rules)."""
    if not policy.incremental or not chains:
        return LevelPlan(0, None, None)
    chain = chains[-1]
    highest = chain.highest_level
    if _starts_new_chain(chain, highest, now, policy):
        return LevelPlan(0, None, None)
    level = highest + 1
    if policy.always_level is not None and highest == policy.always_level:
        level = policy.always_level
    return LevelPlan(level, chain.l0_ts, _newest_at_level(chain, level - 1))


def _starts_new_chain(chain: Chain, highest: int, now: int, policy: LevelPolicy) -> bool:
    if policy.max_level is not None and policy.max_level <= highest:
        return True
    if policy.always_level is not None and highest > policy.always_level:
        return True
    if policy.restart_always_level:
        return now - chain.l0_ts >= policy.restart_always_level * SECONDS_PER_DAY
    return False


def _newest_at_level(chain: Chain, level: int, before: int | None = None) -> BackupRef | None:
    candidates = [b for b in chain.backups if b.level == level and (before is None or b.ts < before)]
    return candidates[-1] if candidates else None


def restore_plan(chains: Sequence[Chain], until: int | None = None,
                 recorded_parent: Callable[[BackupRef], tuple[int, int] | None] = lambda ref: None,
                 ) -> list[BackupRef]:
    """The backups to apply, in order, to restore the state at ``until`` (default: newest).

    Each level's parent is the one its metadata records (``recorded_parent``: level and timestamp),
    so levels that concurrent agents wrote beside each other never mix; else, for upstream's
    backups, the newest level below it that is older.
    """
    eligible = [c for c in chains if until is None or c.l0_ts <= until]
    if not eligible:
        return []
    chain = eligible[-1]
    target = [b for b in chain.backups if until is None or b.ts <= until][-1]
    plan = [target]
    while plan[0].level > 0:
        plan.insert(0, _parent_in(chain, plan[0], recorded_parent(plan[0])))
    return plan


def _parent_in(chain: Chain, ref: BackupRef, recorded: tuple[int, int] | None) -> BackupRef:
    if recorded is None:
        parent = _newest_at_level(chain, ref.level - 1, ref.ts)
    else:
        parent = next((b for b in chain.backups if (b.level, b.ts) == recorded and b.ts < ref.ts), None)
    if parent is None:
        wanted = f"level {recorded[0]} of {recorded[1]}" if recorded else f"level {ref.level - 1}"
        raise NotFound(f"backup chain {chain.l0_ts} is missing {wanted}, which {ref.relpath} was built on")
    return parent


def long_chains(chains: Sequence[Chain], limit: int = LONG_CHAIN) -> list[Chain]:
    """The chains holding more than ``limit`` backups, oldest first."""
    return [chain for chain in chains if len(chain.backups) > limit]


def restore_length(chain: Chain) -> int | None:
    """How many backups a restore of the chain's newest state reads; None if a level is missing."""
    try:
        return len(restore_plan([chain]))
    except NotFound:
        return None


def chains_to_remove(chains: Sequence[Chain], cutoff: int) -> list[Chain]:
    """Chains whose level 0 is older than ``cutoff``; never the newest chain."""
    return [c for c in chains[:-1] if c.l0_ts < cutoff]


def next_timestamp(backups: Sequence[BackupRef], now: int) -> int:
    """``now``, or one second after the newest backup so timestamps stay unique."""
    newest = max((b.ts for b in backups), default=0)
    return max(now, newest + 1)
