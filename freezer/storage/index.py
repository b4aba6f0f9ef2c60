"""The index of a backup name: what ``--action info`` shows of each level, in one object.

``data/<engine>/<prefix>/.index`` holds, per level, its size, compression and encryption, copied from
its ``metadata`` when it was written. It is a cache, never the truth: the listing says which levels
exist, an entry only counts for a level the listing shows complete, and a missing, stale or malformed
index falls back to reading each ``metadata``. Restore and backup never read it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping

from freezer.storage import metadata
from freezer.storage.chains import BackupRef

LOG = logging.getLogger(__name__)
NAME = ".index"
VERSION = 1
#: an entry is under 120 bytes; a name keeps far fewer levels than this
MAX_ENTRIES = 100_000
MAX_BYTES = MAX_ENTRIES * 160


@dataclasses.dataclass(frozen=True)
class Summary:
    """What info shows of one level besides its name."""

    data_size: int | None
    compression: str
    encryption: bool

    @classmethod
    def of(cls, record: metadata.Metadata) -> Summary:
        return cls(record.data_size, record.compression, record.encryption)


def encode(entries: Mapping[BackupRef, Summary]) -> bytes:
    """The index object for ``entries``, oldest level first."""
    levels = [{"l0_time_stamp": ref.l0_ts, "level": ref.level, "time_stamp": ref.ts, "data_size": s.data_size,
               "compression": s.compression, "encryption": s.encryption} for ref, s in sorted(entries.items())]
    return json.dumps({"version": VERSION, "levels": levels}, sort_keys=True).encode("utf-8")


def decode(body: bytes, wanted: Iterable[BackupRef] | None = None) -> dict[BackupRef, Summary]:
    """The sound entries of an index object, only those of ``wanted`` if given; {} if it is malformed."""
    keep = set(wanted) if wanted is not None else None
    try:
        if len(body) > MAX_BYTES:
            raise ValueError(f"{len(body)} bytes")
        doc = json.loads(body.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("levels"), list):
            raise ValueError("not an index of this version")
    except (ValueError, RecursionError) as exc:
        LOG.info("ignoring the index (%s): reading each level's metadata instead", str(exc)[:80])
        return {}
    found = {}
    for entry in doc["levels"][:MAX_ENTRIES]:
        parsed = _entry(entry)
        if parsed and (keep is None or parsed[0] in keep):
            found[parsed[0]] = parsed[1]
    return found


def _entry(entry: object) -> tuple[BackupRef, Summary] | None:
    """One entry checked as strictly as a metadata file's fields; None if anything is off."""
    if not isinstance(entry, dict):
        return None
    try:
        record = metadata.from_document({key: entry.get(key) for key in
                                         ("level", "time_stamp", "l0_time_stamp", "data_size")}
                                        | {"compression": entry.get("compression"),
                                           "encryption": entry.get("encryption")})
    except metadata.BadMetadata:
        return None
    if None in (record.level, record.time_stamp, record.l0_time_stamp):
        return None
    return BackupRef(record.l0_time_stamp, record.time_stamp, record.level), Summary.of(record)
