"""A backup's ``metadata`` file, checked: the storage is untrusted, so any shape may come back.

Upstream freezer writes only ``engine_name``, ``compression`` and ``encryption``; we add the level,
timestamps, ``data_size`` and ``data_sha256``. Every field is optional, but a field that is present
must have the right type and a sane value, or the whole backup is unreadable.
"""

from __future__ import annotations

import dataclasses
import json
import re

from freezer.engine import auth, codecs
from freezer.errors import FreezerError

#: A metadata file is a few hundred bytes; anything much larger is not one.
MAX_BYTES = 64 * 1024
#: 9999-12-31T23:59:59Z: later (or negative) epoch seconds are not a backup's time.
MAX_TIMESTAMP = 253_402_300_799
#: No chain grows this deep; a larger level is garbage.
MAX_LEVEL = 1_000_000
#: 8 EiB: the largest size any storage reports.
MAX_SIZE = 2**63 - 1
ENGINE = "tar"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class BadMetadata(FreezerError):
    """A ``metadata`` file that is not what this agent or upstream freezer writes."""


@dataclasses.dataclass(frozen=True)
class Metadata:
    """The fields of a backup's metadata that restore, info and backup rely on."""

    compression: str = "gzip"
    encryption: bool = False
    level: int | None = None
    time_stamp: int | None = None
    l0_time_stamp: int | None = None
    data_size: int | None = None
    data_sha256: str | None = None
    consistency_checksum: str | None = None  # --consistency-check: the files' checksum before backup
    auth: auth.LevelAuth | None = None  # the level's MAC (freezer/engine/auth.py); None: not authenticated
    parent: tuple[int, int] | None = None  # (level, time_stamp) this level was built on; None: not recorded


def sane_timestamp(value: int) -> bool:
    """True for epoch seconds between 1970 and the year 9999."""
    return 0 <= value <= MAX_TIMESTAMP


def parse(raw: bytes) -> Metadata:
    """Check the bytes of a ``metadata`` file; BadMetadata names the first problem found."""
    if len(raw) > MAX_BYTES:
        raise BadMetadata(f"{len(raw)} bytes, more than any metadata ({MAX_BYTES})")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadMetadata(f"not UTF-8 text (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise BadMetadata(f"not JSON ({str(exc)[:80]})") from exc
    return from_document(doc)


def from_document(doc: object) -> Metadata:
    """Check a decoded JSON document and turn it into a Metadata record."""
    if not isinstance(doc, dict):
        raise BadMetadata(f"a JSON {type(doc).__name__} instead of an object")
    engine = doc.get("engine_name", ENGINE)
    if engine != ENGINE:
        raise BadMetadata(f"engine_name {_show(engine)} (only {ENGINE!r} backups can be read)")
    compression = doc.get("compression", "gzip")
    if compression not in codecs.COMPRESSIONS:
        raise BadMetadata(f"compression {_show(compression)} is not one of {', '.join(codecs.COMPRESSIONS)}")
    encryption = doc.get("encryption", False)
    if not isinstance(encryption, bool):
        raise BadMetadata(f"encryption {_show(encryption)} is not true or false")
    sha256 = doc.get("data_sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise BadMetadata(f"data_sha256 {_show(sha256)} is not 64 hex digits")
    consistency = doc.get("consistency_checksum")
    if not (isinstance(consistency, str) and _SHA256.fullmatch(consistency)):
        consistency = None  # only ours are comparable; an odd one just means "none recorded"
    try:
        level_auth = auth.parse(doc.get("auth"))
    except auth.AuthError as exc:
        raise BadMetadata(str(exc)) from exc
    return Metadata(compression=compression, encryption=encryption, auth=level_auth, parent=_parent(doc),
                    consistency_checksum=consistency.lower() if consistency else None,
                    level=_integer(doc, "level", MAX_LEVEL), time_stamp=_timestamp(doc, "time_stamp"),
                    l0_time_stamp=_timestamp(doc, "l0_time_stamp"), data_size=_integer(doc, "data_size", MAX_SIZE),
                    data_sha256=sha256.lower() if sha256 else None)


def check_matches(meta: Metadata, level: int, ts: int, l0_ts: int) -> None:
    """Refuse metadata that describes another backup than the directory it lies in."""
    for field, recorded, actual in (("level", meta.level, level), ("time_stamp", meta.time_stamp, ts),
                                    ("l0_time_stamp", meta.l0_time_stamp, l0_ts)):
        if recorded is not None and recorded != actual:
            raise BadMetadata(f"{field} {recorded} but the backup's directory says {actual}")


def _parent(doc: dict) -> tuple[int, int] | None:
    """The ``parent`` field, ``{"level": L, "time_stamp": T}``; upstream's backups have none."""
    value = doc.get("parent")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadMetadata(f"parent {_show(value)} is not an object")
    level, ts = _integer(value, "level", MAX_LEVEL), _timestamp(value, "time_stamp")
    if level is None or ts is None:
        raise BadMetadata("parent needs level and time_stamp")
    return level, ts


def _integer(doc: dict, field: str, maximum: int) -> int | None:
    value = doc.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMetadata(f"{field} {_show(value)} is not an integer")
    if not 0 <= value <= maximum:
        raise BadMetadata(f"{field} {_show(value)} is out of range (0 to {maximum})")
    return int(value)


def _timestamp(doc: dict, field: str) -> int | None:
    return _integer(doc, field, MAX_TIMESTAMP)


def _show(value: object) -> str:
    """A short, printable form of a value read from the storage."""
    if isinstance(value, (dict, list)):
        return f"(a JSON {'object' if isinstance(value, dict) else 'list'})"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...", ensure_ascii=True)
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
