"""The tar engine: GNU tar with ``--listed-incremental`` piped through codecs.

Backup:  tar --create | compressor -> chunks -> encrypted in process (freezer/engine/cipher.py)
Restore: chunks -> decrypted in process -> decompressor | tar --extract --incremental
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Iterator

from freezer.engine import cipher, codecs
from freezer.engine.streams import Pipeline
from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)
NAME = "tar"
DEREFERENCE = {
    "": [],
    "none": [],
    "soft": ["--dereference"],
    "hard": ["--hard-dereference"],
    "all": ["--dereference", "--hard-dereference"],
}
TAR_CHANGED_WHILE_READING = 1
# Restore and verify read 64 KiB records (512-byte blocks x 128) from their pipe, not tar's default
# 10 KiB: far fewer system calls (cat | tar -x of 512 MiB: 0.56 s instead of 1.0 s; 0.51 s from a
# file). Backups keep writing 10 KiB records: a reader with the default (tar --list, upstream's
# restore) stops at the end marker, so the padding of a bigger record could be left unread and the
# process writing it (pigz, say) killed by SIGPIPE, as verify was with 64 KiB records.
READ_RECORD = "--blocking-factor=128"
# A member is opened by its name below --directory, and Linux's PATH_MAX (4096) counts the final NUL:
# tar writes names of 4096 bytes to about 4200 but cannot extract them, and longer ones it cannot even
# stat in incremental mode ("Cannot stat: File name too long", a warning). Backups refuse both.
LONGEST_NAME = 4095
# Every xattr namespace and ACLs are stored; on extract tar sets only user.* unless told. security.*
# (SELinux labels, file capabilities) and trusted.* need root to be set, so as root we ask for all of
# them. No --selinux: the label is already the xattr security.selinux, and tar built without
# libselinux warns about the option on every run.
ATTRIBUTES = ["--xattrs", "--acls"]
ALL_XATTRS = "--xattrs-include=*"
# Holes are found with SEEK_DATA/SEEK_HOLE, and only in files with fewer blocks than their size, so
# dense files cost nothing more. With --format=posix tar writes sparse format 1.0 (GNU.sparse.* pax
# records), which every GNU tar since 1.16 extracts sparse, upstream freezer's plain ``tar -x`` too.
SPARSE = "--sparse"


@dataclasses.dataclass(frozen=True)
class TarOptions:
    """What shapes the stream: compression, encryption, excludes, symlinks."""

    compression: str = "gzip"
    encrypt_pass_file: str | None = None
    excludes: tuple[str, ...] = ()
    dereference: str = ""
    one_file_system: bool = True  # as upstream: a backup of / leaves out /proc, /sys and other mounts
    index_file: str | None = None  # tar lists each member it writes here (progress, summary)


def create_command(source: str, snapshot: str, options: TarOptions) -> list[str]:
    """GNU tar arguments that write ``source`` as one incremental level to stdout."""
    if os.path.isdir(source):
        directory, member = source, "."
    else:
        directory, member = os.path.dirname(source) or ".", os.path.basename(source)
    if options.dereference not in DEREFERENCE:
        raise FreezerError(f"unknown --dereference-symlink {options.dereference!r}: use soft, hard or all")
    argv = ["tar", "--create", "--file=-", f"--directory={directory}",
            f"--listed-incremental={snapshot}", "--ignore-failed-read", "--no-check-device",
            *ATTRIBUTES, "--format=posix", SPARSE]
    argv += DEREFERENCE[options.dereference]
    argv += ["--one-file-system", "--warning=no-xdev"] if options.one_file_system else []
    if options.index_file:
        argv += ["--verbose", f"--index-file={options.index_file}"]
    argv.append("--totals")  # "Total bytes written: N" on stderr at the end, read by bytes_read()
    argv += [f"--exclude={pattern}" for pattern in options.excludes]
    return argv + ["--", member]


def extract_command(target: str) -> list[str]:
    """GNU tar arguments that apply one incremental level from stdin to ``target``.

    ``--verbose`` lists each member's name as stored, so a refused one can be named.
    """
    xattrs = [*ATTRIBUTES, ALL_XATTRS] if os.geteuid() == 0 else ATTRIBUTES
    return ["tar", "--extract", "--file=-", READ_RECORD, "--read-full-records", "--incremental",
            f"--directory={target}", "--preserve-permissions", *xattrs, "--warning=no-timestamp",
            "--verbose"]


def start_backup(source: str, snapshot: str, options: TarOptions) -> Pipeline:
    """Start the backup pipeline; read what to store with ``stored_chunks()``."""
    if not os.path.exists(source):
        raise FreezerError(f"--path-to-backup {source} does not exist")
    if options.encrypt_pass_file:
        codecs.check_pass_file(options.encrypt_pass_file)
    stages = [create_command(source, snapshot, options)]
    stages += _optional(codecs.compress_command(options.compression))
    return Pipeline(stages, feed_input=False, read_output=True,
                    ok_codes={0: (0, TAR_CHANGED_WHILE_READING)})


def stored_chunks(pipeline: Pipeline, options: TarOptions) -> Iterator[bytes]:
    """The bytes to store: the pipeline's output, encrypted with ``--encrypt-pass-file`` if given."""
    chunks = pipeline.output_chunks()
    return cipher.encrypt(chunks, options.encrypt_pass_file) if options.encrypt_pass_file else chunks


def start_restore(target: str, compression: str, pass_file: str | None) -> Pipeline:
    """Start the restore pipeline for one level; feed it ``plain_chunks()`` of the stored bytes."""
    if pass_file:
        codecs.check_pass_file(pass_file)
    stages = _optional(codecs.decompress_command(compression))
    stages.append(extract_command(target))
    return Pipeline(stages, feed_input=True, read_output=False, keep_output=True)


def plain_chunks(stored: Iterable[bytes], pass_file: str | None) -> Iterator[bytes]:
    """The stored bytes of a level, decrypted when it was encrypted."""
    return cipher.decrypt(stored, pass_file) if pass_file else iter(stored)


def bytes_read(stderr: str) -> int | None:
    """The archive size tar reports with ``--totals``: about the bytes it read from the source."""
    match = _TOTALS.search(stderr)
    return int(match.group(1)) if match else None


_TOTALS = re.compile(r"^Total bytes written: ([0-9]+)", re.M)


def check_name_lengths(source: str, warnings: list[str], index_file: str) -> None:
    """Fail the backup when a path below ``source`` is too long to back up or to restore."""
    stored = _long_members(index_file)
    for name in stored:
        LOG.warning("too long for tar to restore: %s", name)
    names = [match.group(1) for match in map(_NOT_STATED.match, warnings) if match] + stored
    if not names:
        return
    more = f" and {len(names) - 1} more (listed above)" if len(names) > 1 else ""
    raise FreezerError(f"{_shortened(names[0])}{more} below {source}: longer than GNU tar can back up "
                       f"and restore ({LONGEST_NAME} bytes below --path-to-backup); rename it, or leave it "
                       "out with --exclude")


_NOT_STATED = re.compile(r"^(?:tar: )?(.+?): (?:Warning: )?Cannot \w+: File name too long$")
_ESCAPE = re.compile(rb"\\(?:[0-7]{3}|.)")


def _long_members(index_file: str) -> list[str]:
    """Members of ``index_file`` (tar's --verbose list) whose stored name is over ``LONGEST_NAME`` bytes."""
    found = []
    if not os.path.exists(index_file):
        return found
    with open(index_file, "rb") as handle:
        for line in handle:
            if len(line) > LONGEST_NAME and _name_bytes(line) > LONGEST_NAME:
                found.append(line.rstrip(b"\n").decode("utf-8", "replace"))
    return found


def _name_bytes(line: bytes) -> int:
    """The length of a name as tar printed it (escape quoting: ``\\303`` is one byte).

    A directory's trailing slash does not count: tar drops it to make the directory.
    """
    return len(_ESCAPE.sub(b"_", line.rstrip(b"\n").rstrip(b"/")))


def _shortened(name: str) -> str:
    return name if len(name) <= 160 else f"{name[:60]}...{name[-90:]}"


def _optional(command: list[str] | None) -> list[list[str]]:
    return [command] if command else []
