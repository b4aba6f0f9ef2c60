"""Where backups lie on a storage, how they form chains, and which to use.

The layout is upstream freezer's, so backups written by either tool are readable by the other::

    data/<engine>/<host>_<name>/<L0_ts>/<level>_<ts>/data
    data/<engine>/<host>_<name>/<L0_ts>/<level>_<ts>/engine_metadata
    metadata/<engine>/<host>_<name>/<L0_ts>/<level>_<ts>/metadata

A backup exists only once its ``metadata`` file does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence

from freezer.errors import FreezerError, NotFound
from freezer.storage import metadata
from freezer.storage.base import Storage

LOG = logging.getLogger(__name__)
ENGINE = "tar"
SECONDS_PER_DAY = 86400
SECONDS_PER_HOUR = 3600
TREES = ("data", "metadata")
#: ``--action info`` warns about a chain holding more backups than this: a restore of its newest
#: state reads every level of it, and retention never removes the newest chain, so an unbounded one
#: grows for ever (see "Bounding a chain" in doc/source/user-guide.rst)
LONG_CHAIN = 30
# ASCII digits without leading zeros, as written: str.isdigit() and \d also take '²' or '١'.
_NUMBER = "(?:0|[1-9][0-9]{0,19})"
_L0_DIR = re.compile(_NUMBER)
_LEVEL_DIR = re.compile(rf"({_NUMBER})_({_NUMBER})")
_PARTIAL = re.compile(r"^\.[^/]+\.partial-[0-9a-f]{8}$")  # base.temporary_name; one name, never a path


class SlotTaken(FreezerError):
    """A backup's metadata is already there: another backup owns the slot."""


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


class BackupSet:
    """The backups of one host and backup name on one storage."""

    def __init__(self, storage: Storage, hostname: str, backup_name: str, engine: str = ENGINE):
        check_name("--backup-name", backup_name)
        check_name("--hostname", hostname)
        self.storage = storage
        self.engine = engine
        self.prefix = f"{hostname}_{backup_name}"
        self._metadata_cache: dict[BackupRef, metadata.Metadata] = {}

    def data_dir(self, ref: BackupRef) -> str:
        return f"data/{self.engine}/{self.prefix}/{ref.relpath}"

    def data_path(self, ref: BackupRef) -> str:
        return f"{self.data_dir(ref)}/data"

    def engine_metadata_path(self, ref: BackupRef) -> str:
        return f"{self.data_dir(ref)}/engine_metadata"

    def metadata_path(self, ref: BackupRef) -> str:
        return f"metadata/{self.engine}/{self.prefix}/{ref.relpath}/metadata"

    def list_backups(self) -> list[BackupRef]:
        """Every complete backup (its ``metadata`` exists), oldest first."""
        root = self._metadata_root()
        return sorted(ref for ref, names in self._level_listings(root, list(self._level_dirs(root)))
                      if "metadata" in names)

    def newest_chain(self, until: int | None = None) -> Chain | None:
        """The newest chain with a complete level 0 not after ``until``.

        Lists only the chains it looks at, newest first, so its cost does not grow with the history kept.
        """
        root = self._metadata_root()
        l0_names = sorted((n for n in self.storage.listdir(root) if _L0_DIR.fullmatch(n)), key=int, reverse=True)
        for l0_name in l0_names:
            if until is not None and int(l0_name) > until:
                continue
            levels = list(self._levels_in(root, l0_name, self.storage.listdir(f"{root}/{l0_name}")))
            chains = group_chains([ref for ref, names in self._level_listings(root, levels) if "metadata" in names])
            if chains:
                return chains[-1]
        return None

    def plan_restore(self, until: int | None = None) -> list[BackupRef]:
        """The levels a restore of the state at ``until`` (default: newest) applies, in order."""
        chain = self.newest_chain(until)
        return restore_plan([chain] if chain else [], until, self._recorded_parent)

    def _recorded_parent(self, ref: BackupRef) -> tuple[int, int] | None:
        """The parent (level, timestamp) that ``ref``'s metadata records; None for upstream's backups."""
        return self.read_metadata(ref).parent

    def claim_timestamp(self, ts: int) -> bool:
        """Take ``ts`` for one backup of this name, whatever its chain or level; False if another has it.

        A marker directory per timestamp (``data/<engine>/<prefix>/.timestamps/<ts>``), which listings
        ignore; admin removes those older than the oldest chain kept.
        """
        return self.storage.claim(f"{self._timestamps_root()}/{ts}")

    def prune_timestamps(self, keep: Callable[[int], bool]) -> list[int]:
        """Remove the timestamp markers that ``keep`` says are no longer needed; the ones removed."""
        root = self._timestamps_root()
        old = [int(name) for name in self.storage.listdir(root) if name.isdigit() and not keep(int(name))]
        for ts in old:
            self.storage.rmtree(f"{root}/{ts}")
        return old

    def _timestamps_root(self) -> str:
        return f"data/{self.engine}/{self.prefix}/.timestamps"

    def _metadata_root(self) -> str:
        return f"metadata/{self.engine}/{self.prefix}"

    def _level_listings(self, root: str, refs: list[BackupRef]) -> list[tuple[BackupRef, list[str]]]:
        """Each of ``refs`` and the names in its directory below ``root``, in one ``listdirs`` call
        (a storage with requests in flight waits once, not once per directory)."""
        return list(zip(refs, self.storage.listdirs([f"{root}/{ref.relpath}" for ref in refs]), strict=True))

    def _level_dirs(self, root: str):
        """The ``<L0_ts>/<level>_<ts>`` directories below ``root`` whose names make sense; one listing per depth."""
        l0_names = [name for name in self.storage.listdir(root) if _L0_DIR.fullmatch(name)]
        listings = self.storage.listdirs([f"{root}/{name}" for name in l0_names])
        for l0_name, level_names in zip(l0_names, listings, strict=True):
            yield from self._levels_in(root, l0_name, level_names)

    def _levels_in(self, root: str, l0_name: str, level_names: list[str]):
        """The ``<level>_<ts>`` directories of one chain whose names make sense."""
        for level_name in level_names:
            match = _LEVEL_DIR.fullmatch(level_name)
            if not match:
                continue
            ref = BackupRef(int(l0_name), int(match.group(2)), int(match.group(1)))
            if _plausible(ref):
                yield ref
            else:
                LOG.warning("ignoring %s/%s: level or timestamp out of range", root, ref.relpath)

    def chains(self) -> list[Chain]:
        """Complete backups grouped into chains, oldest chain first."""
        return group_chains(self.list_backups())

    def read_metadata(self, ref: BackupRef) -> metadata.Metadata:
        """A backup's ``metadata``, checked; BadMetadata naming the file if it is not sound (read once)."""
        if ref not in self._metadata_cache:
            self._metadata_cache[ref] = self._read_metadata(ref)
        return self._metadata_cache[ref]

    def _read_metadata(self, ref: BackupRef) -> metadata.Metadata:
        path = self.metadata_path(ref)
        try:
            record = metadata.parse(self._read_small(path, metadata.MAX_BYTES))
            metadata.check_matches(record, ref.level, ref.ts, ref.l0_ts)
        except metadata.BadMetadata as exc:
            raise metadata.BadMetadata(f"unreadable metadata {path}: {exc}") from exc
        return record

    def _read_small(self, path: str, limit: int) -> bytes:
        """The file at ``path``, or its first ``limit + 1`` bytes if it is longer."""
        data = bytearray()
        with contextlib.closing(self.storage.get_stream(path)) as chunks:
            for chunk in chunks:
                data += chunk
                if len(data) > limit:
                    break
        return bytes(data)

    def write_metadata(self, ref: BackupRef, metadata: dict) -> None:
        """Write ``metadata`` last: this is what makes the backup exist. Never over another backup's."""
        if "metadata" in self.storage.listdir(f"metadata/{self.engine}/{self.prefix}/{ref.relpath}"):
            raise SlotTaken(f"{self.metadata_path(ref)} already exists: another backup took this slot, "
                               "so this one is not recorded (are two agents writing this --backup-name?)")
        body = json.dumps(metadata, sort_keys=True).encode("utf-8")
        self.storage.put_bytes(self.metadata_path(ref), body)

    def claim(self, ref: BackupRef) -> bool:
        """Take ``ref``'s data directory for this backup alone; False if another backup has it."""
        return self.storage.claim(self.data_dir(ref))

    def inventory(self) -> dict[BackupRef, LevelFiles]:
        """Every level directory under ``data/`` or ``metadata/``, complete or not, with its files."""
        found: dict[BackupRef, dict[str, frozenset[str]]] = {}
        for tree in TREES:
            root = f"{tree}/{self.engine}/{self.prefix}"
            for ref, names in self._level_listings(root, list(self._level_dirs(root))):
                found.setdefault(ref, {})[tree] = frozenset(names)
        return {ref: LevelFiles(**trees) for ref, trees in found.items()}

    def remove_level(self, ref: BackupRef) -> None:
        """Remove one level, metadata first; a level 0 takes its whole chain with it."""
        if ref.level == 0:
            self.remove_chain_at(ref.l0_ts)
            return
        for tree in ("metadata", "data"):
            self.storage.rmtree(f"{tree}/{self.engine}/{self.prefix}/{ref.relpath}")

    def partial_path(self, tree: str, ref: BackupRef, name: str) -> str:
        return f"{tree}/{self.engine}/{self.prefix}/{ref.relpath}/{name}"

    def remove_partial(self, tree: str, ref: BackupRef, name: str) -> None:
        self.storage.rmtree(self.partial_path(tree, ref, name))

    def remove_chain(self, chain: Chain) -> None:
        """Remove a whole chain, metadata first so it stops existing at once."""
        self.remove_chain_at(chain.l0_ts)

    def remove_chain_at(self, l0_ts: int) -> None:
        """Remove the chain directories of level 0 ``l0_ts``, metadata first."""
        self.storage.rmtree(f"metadata/{self.engine}/{self.prefix}/{l0_ts}")
        self.storage.rmtree(f"data/{self.engine}/{self.prefix}/{l0_ts}")


def _plausible(ref: BackupRef) -> bool:
    """Level and timestamps that a real backup can have (directory names are untrusted)."""
    return (ref.level <= metadata.MAX_LEVEL and metadata.sane_timestamp(ref.ts)
            and metadata.sane_timestamp(ref.l0_ts) and ref.l0_ts <= ref.ts)


def check_name(option: str, value: str) -> None:
    """Refuse names that would escape or break the layout."""
    if not value or "/" in value or value in (".", "..") or "\x00" in value:
        raise FreezerError(f"invalid {option} {value!r}: it must be a non-empty name without '/'")


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
