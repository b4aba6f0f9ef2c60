"""Authenticated levels: an HMAC, keyed from the passphrase, over everything a restore relies on.

A level's ``metadata`` carries ``auth``: scrypt parameters and salt, the parent level it was built
on (with the parent's MAC), the sha256 of its engine metadata, and ``mac``, HMAC-SHA256 over a
canonical header of the backup's name, level, timestamps, codec, encryption, data size and data
sha256. The data's sha256 is checked against the stream on restore, so the MAC covers the data
without a second pass over it. The key is separate from the encryption key (scrypt, its own salt).
See doc/source/safety.rst for the format and its threat model.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import os
import re
import threading

from freezer.errors import FreezerError

FORMAT = 1
KDF = "scrypt"
#: scrypt cost: about 50 ms and 16 MiB once per chain (a chain's levels share their salt). More buys
#: nothing for encrypted backups: openssl's own key derivation (one SHA-256) is the cheaper guess.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: bounds on parameters read from the storage, so a hostile one cannot make the agent hang or swap
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
SALT_SIZE = 16
DOMAIN = b"freezer level MAC v1\0"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SALT = re.compile(r"[0-9a-f]{32}")


class AuthError(FreezerError):
    """A level whose MAC is missing, malformed or wrong."""


@dataclasses.dataclass(frozen=True)
class Kdf:
    """scrypt parameters and salt of a level's MAC key."""

    salt: str
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def new(cls) -> Kdf:
        return cls(os.urandom(SALT_SIZE).hex())


@dataclasses.dataclass(frozen=True)
class Parent:
    """The level a level was built on, as its MAC names it."""

    level: int
    time_stamp: int
    mac: str | None


@dataclasses.dataclass(frozen=True)
class LevelAuth:
    """A level's ``auth`` field."""

    kdf: Kdf
    parent: Parent | None
    engine_metadata_sha256: str
    mac: str

    def to_document(self) -> dict:
        return {"format": FORMAT, "kdf": KDF, "salt": self.kdf.salt, "n": self.kdf.n, "r": self.kdf.r,
                "p": self.kdf.p, "parent": dataclasses.asdict(self.parent) if self.parent else None,
                "engine_metadata_sha256": self.engine_metadata_sha256, "mac": self.mac}


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the MAC vouches for: which backup, where in its chain, how its data is stored."""

    backup: str  # <hostname>_<backup_name>
    level: int
    time_stamp: int
    l0_time_stamp: int
    compression: str
    encryption: bool
    data_size: int
    data_sha256: str


def derive_in_background(secret: bytes, kdf: Kdf) -> threading.Thread:
    """Start deriving the MAC key while the data streams; ``sign`` then finds it ready."""
    worker = threading.Thread(target=_derive_quietly, args=(secret, kdf), name="mac-key", daemon=True)
    worker.start()
    return worker


def _derive_quietly(secret: bytes, kdf: Kdf) -> None:
    """A failure here is left for ``sign``, which derives again in the caller and reports it."""
    try:
        _key(secret, kdf)
    except (ValueError, MemoryError):
        pass


def sign(secret: bytes, kdf: Kdf, facts: Facts, parent: Parent | None, engine_sha256: str) -> LevelAuth:
    """The ``auth`` field of a new level."""
    mac = _mac(secret, kdf, facts, parent, engine_sha256)
    return LevelAuth(kdf, parent, engine_sha256, mac)


def check(secret: bytes, auth: LevelAuth, facts: Facts) -> None:
    """Raise AuthError unless ``auth`` was made with this secret for exactly these facts."""
    expected = _mac(secret, auth.kdf, facts, auth.parent, auth.engine_metadata_sha256)
    if not hmac.compare_digest(expected, auth.mac):
        raise AuthError("its MAC does not match: the level or its metadata was changed, moved or taken from "
                        "another backup, or the passphrase (--encrypt-pass-file / --auth-key-file) is not the one "
                        "it was written with")


def parse(value: object) -> LevelAuth | None:
    """The ``auth`` field read from the storage, checked in shape and bounds; None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("format") != FORMAT or value.get("kdf") != KDF:
        raise AuthError("auth is not a format-1 scrypt record")
    kdf = Kdf(_text(value, "salt", _SALT), _int(value, "n"), _int(value, "r"), _int(value, "p"))
    _check_cost(kdf)
    return LevelAuth(kdf, _parent(value.get("parent")), _text(value, "engine_metadata_sha256", _HEX64),
                     _text(value, "mac", _HEX64))


def _mac(secret: bytes, kdf: Kdf, facts: Facts, parent: Parent | None, engine_sha256: str) -> str:
    header = {"format": FORMAT, "engine": "tar", **dataclasses.asdict(facts),
              "parent": dataclasses.asdict(parent) if parent else None, "engine_metadata_sha256": engine_sha256}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hmac.new(_key(secret, kdf), text, hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=8)
def _key(secret: bytes, kdf: Kdf) -> bytes:
    """The MAC key: scrypt of the secret, never the encryption key (a salt and a domain of its own)."""
    return hashlib.scrypt(secret, salt=DOMAIN + bytes.fromhex(kdf.salt), n=kdf.n, r=kdf.r, p=kdf.p,
                          maxmem=MAX_SCRYPT_MEMORY + 1024 * 1024, dklen=32)


def _check_cost(kdf: Kdf) -> None:
    power_of_two = kdf.n >= 2**10 and kdf.n & (kdf.n - 1) == 0
    if not power_of_two or not 1 <= kdf.r <= 32 or not 1 <= kdf.p <= 16 or 128 * kdf.n * kdf.r > MAX_SCRYPT_MEMORY:
        raise AuthError(f"auth has scrypt parameters out of bounds (n={kdf.n}, r={kdf.r}, p={kdf.p})")


def _parent(value: object) -> Parent | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AuthError("auth.parent is not an object")
    mac = value.get("mac")
    if mac is not None and not (isinstance(mac, str) and _HEX64.fullmatch(mac)):
        raise AuthError("auth.parent.mac is not 64 hex digits")
    return Parent(_int(value, "level"), _int(value, "time_stamp"), mac)


def _int(doc: dict, field: str) -> int:
    value = doc.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise AuthError(f"auth.{field} is not a non-negative integer")
    return value


def _text(doc: dict, field: str, pattern: re.Pattern) -> str:
    value = doc.get(field)
    if not (isinstance(value, str) and pattern.fullmatch(value)):
        raise AuthError(f"auth.{field} is malformed")
    return value
