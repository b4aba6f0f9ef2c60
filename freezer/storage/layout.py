"""Where backups lie on a storage: their paths, and the BackupSet that lists, reads and writes them.

The layout is upstream freezer's, so backups written by either tool are readable by the other::

    data/<engine>/<host>_<name>/<L0_ts>/<level>_<ts>/data
    data/<engine>/<host>_<name>/<L0_ts>/<level>_<ts>/engine_metadata
    metadata/<engine>/<host>_<name>/<L0_ts>/<level>_<ts>/metadata

A backup exists only once its ``metadata`` file does.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import threading
from collections.abc import Callable

from freezer.errors import ConnectError, FreezerError, NotFound, StorageError
from freezer.storage import index, metadata
from freezer.storage.base import Storage
from freezer.storage.beside import Beside
from freezer.storage.chains import BackupRef, Chain, group_chains, restore_plan
from freezer.storage.leftovers import TREES, LevelFiles

LOG = logging.getLogger(__name__)
ENGINE = "tar"
# ASCII digits without leading zeros, as written: str.isdigit() and \d also take '²' or '١'.
_NUMBER = "(?:0|[1-9][0-9]{0,19})"
_L0_DIR = re.compile(_NUMBER)
_LEVEL_DIR = re.compile(rf"({_NUMBER})_({_NUMBER})")


class SlotTaken(FreezerError):
    """A backup's metadata is already there: another backup owns the slot."""


class IndexEntry:
    """A level's index entry written beside its backup (``BackupSet.index_entry_beside``)."""

    def __init__(self) -> None:
        self.record: metadata.Metadata | None = None
        self.beside: Beside | None = None
        self._given = threading.Event()

    def add(self, record: metadata.Metadata) -> None:
        """The level's record, once its slot is known free: the entry is written."""
        self.record = record
        self._given.set()

    def given(self) -> metadata.Metadata | None:
        """Wait for ``add`` (the record) or ``abandon`` (None)."""
        self._given.wait()
        return self.record

    def finish(self) -> None:
        self._given.set()  # never given: nothing to write
        self.beside.finish()

    def stop(self) -> None:
        """Before tar is killed: the index is not read for a backup that failed."""
        self.beside.abandoned.set()

    def abandon(self) -> None:
        self._given.set()
        self.beside.abandon()


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
        [levels] = self._walk([self._metadata_root()])
        return sorted(ref for ref, names in levels if "metadata" in names)

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

    def _walk(self, roots: list[str]) -> list[list[tuple[BackupRef, list[str]]]]:
        """For each of ``roots``, its ``<L0_ts>/<level>_<ts>`` directories whose names make sense and the
        names in each: the trees walked side by side, one ``listdirs`` call per depth for all of them."""
        tops = self.storage.listdirs(roots)
        chains = [(n, root, name) for n, (root, names) in enumerate(zip(roots, tops, strict=True))
                  for name in names if _L0_DIR.fullmatch(name)]
        chain_listings = self.storage.listdirs([f"{root}/{name}" for _, root, name in chains])
        levels = [(n, root, ref) for (n, root, name), level_names in zip(chains, chain_listings, strict=True)
                  for ref in self._levels_in(root, name, level_names)]
        level_listings = self.storage.listdirs([f"{root}/{ref.relpath}" for _, root, ref in levels])
        walked: list[list[tuple[BackupRef, list[str]]]] = [[] for _ in roots]
        for (n, _, ref), names in zip(levels, level_listings, strict=True):
            walked[n].append((ref, names))
        return walked

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
        self.check_slot(ref)
        self.put_metadata(ref, metadata)

    def put_metadata(self, ref: BackupRef, metadata: dict) -> None:
        """``write_metadata`` for a caller that made sure with ``check_slot`` just before."""
        body = json.dumps(metadata, sort_keys=True).encode("utf-8")
        self.storage.put_bytes(self.metadata_path(ref), body)

    def check_slot(self, ref: BackupRef) -> None:
        """SlotTaken if ``ref``'s metadata already exists: another backup's."""
        if "metadata" in self.storage.listdir(f"metadata/{self.engine}/{self.prefix}/{ref.relpath}"):
            raise SlotTaken(f"{self.metadata_path(ref)} already exists: another backup took this slot, "
                            "so this one is not recorded (are two agents writing this --backup-name?)")

    def summaries(self, refs: list[BackupRef]) -> dict[BackupRef, index.Summary | metadata.BadMetadata]:
        """What info shows of each of ``refs`` (complete levels): from the index, else from each ``metadata``.

        One read of the index whatever the history; only the levels it lacks cost a read each.
        """
        found: dict = self._read_index(refs)
        for ref in refs:
            if ref not in found:
                try:
                    found[ref] = index.Summary.of(self.read_metadata(ref))
                except metadata.BadMetadata as exc:
                    found[ref] = exc
        return found

    def add_to_index(self, ref: BackupRef, record: metadata.Metadata) -> None:
        """Record a level just written in the index; a failure only costs later infos a read per level."""
        try:
            self._add_to_index(ref, record)
        except (FreezerError, OSError) as exc:
            LOG.warning("could not update the index %s (info reads each level instead): %s",
                        self._index_path(), exc)

    def index_entry_beside(self, ref: BackupRef, before: Callable[[], object]) -> IndexEntry:
        """``ref``'s index entry, on a sibling of the storage while the caller goes on: the index is read
        once ``before()`` returns, and written with the entry once ``IndexEntry.add`` gives the level's
        record; without a sibling, ``add_to_index`` at ``finish``. An entry whose level has no metadata
        (the backup failed meanwhile) is never shown: info and admin go by the levels listed."""
        entry = IndexEntry()

        def work(sibling: Storage) -> None:
            there = self._on(sibling)
            entries = there._read_index(None, strict=True)  # unreadable (not missing): done again here
            if (record := entry.given()) is not None:
                there._write_index({**entries, ref: index.Summary.of(record)})

        def fallback() -> None:
            if entry.record is not None:
                self.add_to_index(ref, entry.record)

        entry.beside = Beside(self.storage, work, fallback, before=before)
        return entry

    def _add_to_index(self, ref: BackupRef, record: metadata.Metadata) -> None:
        self._write_index({**self._read_index(None), ref: index.Summary.of(record)})

    def _on(self, storage: Storage) -> BackupSet:
        """The same backups, reached through ``storage``."""
        twin = copy.copy(self)
        twin.storage, twin._metadata_cache = storage, {}
        return twin

    def rewrite_index(self, refs: list[BackupRef]) -> None:
        """The index made to hold exactly ``refs`` (the complete levels left by admin), written if it changed."""
        current = self._read_index(None)
        wanted = {ref: current[ref] for ref in refs if ref in current}
        for ref in refs:
            if ref not in wanted:
                with contextlib.suppress(metadata.BadMetadata):
                    wanted[ref] = index.Summary.of(self.read_metadata(ref))
        if wanted != current:
            self._write_index(wanted)

    def _index_path(self) -> str:
        return f"data/{self.engine}/{self.prefix}/{index.NAME}"

    def _read_index(self, refs: list[BackupRef] | None, strict: bool = False) -> dict[BackupRef, index.Summary]:
        """The index's entries (of ``refs`` only, if given); {} when it is absent or cannot be read
        (``strict``: when it is absent; a failed read is raised)."""
        try:
            return index.decode(self._read_small(self._index_path(), index.MAX_BYTES), refs)
        except NotFound:
            return {}
        except StorageError as exc:
            if strict or isinstance(exc, ConnectError):
                raise  # the storage is gone, or the caller tries again elsewhere
            LOG.info("cannot read the index %s (%s): reading each level's metadata", self._index_path(), exc)
            return {}

    def _write_index(self, entries: dict[BackupRef, index.Summary]) -> None:
        self.storage.put_bytes(self._index_path(), index.encode(entries))

    def claim(self, ref: BackupRef) -> bool:
        """Take ``ref``'s data directory for this backup alone; False if another backup has it."""
        return self.storage.claim(self.data_dir(ref))

    def inventory(self) -> dict[BackupRef, LevelFiles]:
        """Every level directory under ``data/`` or ``metadata/``, complete or not, with its files."""
        found: dict[BackupRef, dict[str, frozenset[str]]] = {}
        walked = self._walk([f"{tree}/{self.engine}/{self.prefix}" for tree in TREES])
        for tree, levels in zip(TREES, walked, strict=True):
            for ref, names in levels:
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
