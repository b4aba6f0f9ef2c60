"""Which levels may be trusted: MACs checked, chain links followed, downgrades refused.

Restore and verify call ``check_plan`` on the metadata of every level before any data is read;
backup calls ``sign_level`` for the metadata it writes. The MAC's secret is ``--auth-key-file``
when given, else the ``--encrypt-pass-file`` passphrase; without either, only the sha256 in the
metadata protects the data, and only against accidents.
"""

from __future__ import annotations

import logging

from oslo_config import cfg

from freezer.common import credentials, dates
from freezer.engine import auth
from freezer.errors import FreezerError
from freezer.storage.chains import BackupRef
from freezer.storage.metadata import Metadata

LOG = logging.getLogger(__name__)


def authenticated(conf: cfg.ConfigOpts) -> bool:
    """True when levels carry (and restores check) a MAC; no file is read."""
    return bool(conf.auth_key_file or conf.encrypt_pass_file)


def mac_secret(conf: cfg.ConfigOpts) -> bytes | None:
    """The secret that keys every level's MAC, or None when the backups are not authenticated."""
    if conf.auth_key_file:
        return credentials.key_line(conf.auth_key_file, "--auth-key-file")
    if conf.encrypt_pass_file:
        return credentials.key_line(conf.encrypt_pass_file, "--encrypt-pass-file")
    return None


def facts(prefix: str, ref: BackupRef, record: Metadata) -> auth.Facts:
    """What a level's MAC vouches for, taken from where the level lies and from its metadata."""
    if record.data_size is None or record.data_sha256 is None:
        raise auth.AuthError("its metadata has a MAC but no data_size or data_sha256")
    return auth.Facts(backup=prefix, level=ref.level, time_stamp=ref.ts, l0_time_stamp=ref.l0_ts,
                      compression=record.compression, encryption=record.encryption,
                      data_size=record.data_size, data_sha256=record.data_sha256)


def chain_kdf(parent_record: Metadata | None) -> auth.Kdf:
    """The scrypt salt and cost of a new level: its chain's (so a restore derives one key), or new ones."""
    return parent_record.auth.kdf if parent_record and parent_record.auth else auth.Kdf.new()


def sign_level(secret: bytes, kdf: auth.Kdf, prefix: str, ref: BackupRef, record: Metadata,
               parent: BackupRef | None, parent_record: Metadata | None, engine_sha256: str) -> auth.LevelAuth:
    """The ``auth`` field of a new level, built on ``parent`` (None for a level 0)."""
    parent_auth = parent_record.auth if parent_record else None
    link = auth.Parent(parent.level, parent.ts, parent_auth.mac if parent_auth else None) if parent else None
    return auth.sign(secret, kdf, facts(prefix, ref, record), link, engine_sha256)


def check_level(secret: bytes, prefix: str, ref: BackupRef, record: Metadata) -> None:
    """Raise AuthError (naming the level) unless the level's own MAC holds; its parent is not followed."""
    try:
        if record.auth is None:
            raise auth.AuthError("it has no MAC")
        auth.check(secret, record.auth, facts(prefix, ref, record))
    except auth.AuthError as exc:
        raise auth.AuthError(f"{describe(ref)}: {exc}") from None


def check_plan(conf: cfg.ConfigOpts, prefix: str, plan: list[BackupRef], records: dict[BackupRef, Metadata]) -> None:
    """Refuse (AuthError naming the level) a chain that is downgraded, unauthenticated, changed or mixed up."""
    secret = mac_secret(conf)
    verified: dict[tuple[int, int], str | None] = {}
    for ref in plan:
        try:
            verified[(ref.level, ref.ts)] = _check(conf, secret, prefix, ref, records[ref], verified)
        except FreezerError as exc:
            raise auth.AuthError(f"refusing {describe(ref)}: {exc}") from None
    if secret is None and plan:
        LOG.info("%s is not authenticated (no --encrypt-pass-file or --auth-key-file): its sha256 guards "
                 "against accidents only", prefix)


def describe(ref: BackupRef) -> str:
    return f"level {ref.level} of {dates.show(ref.ts)} ({ref.relpath})"


def _check(conf: cfg.ConfigOpts, secret: bytes | None, prefix: str, ref: BackupRef, record: Metadata,
           verified: dict[tuple[int, int], str | None]) -> str | None:
    """Check one level; its MAC when it has one that was verified, else None."""
    if conf.encrypt_pass_file and not record.encryption:
        raise auth.AuthError("its metadata says it is not encrypted although --encrypt-pass-file was given "
                             "(a downgrade: the storage may have been tampered with)")
    if secret is None:
        return None
    if record.auth is None:
        if not conf.allow_unauthenticated:
            raise auth.AuthError("it has no MAC (written by upstream freezer or an older agent): add "
                                 "--allow-unauthenticated to accept it, knowing that whoever can write the "
                                 "storage may have changed it")
        LOG.warning("%s has no MAC: accepted unauthenticated (--allow-unauthenticated)", describe(ref))
        return None
    auth.check(secret, record.auth, facts(prefix, ref, record))
    _check_link(ref, record.auth.parent, verified)
    return record.auth.mac


def _check_link(ref: BackupRef, parent: auth.Parent | None, verified: dict[tuple[int, int], str | None]) -> None:
    """A level 0 has no parent; any other names one applied before it, whose MAC it recorded."""
    if ref.level == 0:
        if parent is not None:
            raise auth.AuthError("a level 0 that names a parent")
        return
    if parent is None or parent.level >= ref.level or parent.time_stamp >= ref.ts:
        raise auth.AuthError("its MAC names no parent level before it")
    key = (parent.level, parent.time_stamp)
    if key not in verified:
        raise auth.AuthError(f"it was built on level {parent.level} of {dates.show(parent.time_stamp)}, "
                             "which is not in this chain before it")
    if verified[key] != parent.mac:
        raise auth.AuthError(f"level {parent.level} of {dates.show(parent.time_stamp)} is not the one it was "
                             "built on (replaced)")
