"""The tar engine: GNU tar with ``--listed-incremental`` piped through codecs.

Backup:  tar --create | compressor | openssl enc   -> chunks
Restore: chunks -> openssl enc -d | decompressor | tar --extract --incremental
"""

from __future__ import annotations

import dataclasses
import os
import re

from freezer.engine import codecs
from freezer.engine.streams import Pipeline
from freezer.storage.base import FreezerError

NAME = "tar"
DEREFERENCE = {
    "": [],
    "none": [],
    "soft": ["--dereference"],
    "hard": ["--hard-dereference"],
    "all": ["--dereference", "--hard-dereference"],
}
TAR_CHANGED_WHILE_READING = 1
# tar's I/O unit in 512-byte blocks, 20 (10 KiB) by default: larger records mean fewer pipe
# syscalls (0.05-0.14 CPU s less per 512 MiB at each end, see performance.rst). A stream ends
# padded to a whole record, so backups write 32 KiB records (the "read" tar totals stays within
# 0.05 MiB of the data); reading has no such cost and takes 64 KiB. GNU tar reads any record size
# from a pipe, so backups written with either size restore with either, upstream's included.
WRITE_RECORD = "--blocking-factor=64"
READ_RECORD = "--blocking-factor=128"


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
            "--xattrs", "--acls", "--format=posix", WRITE_RECORD]
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
    return ["tar", "--extract", "--file=-", READ_RECORD, "--incremental", f"--directory={target}",
            "--preserve-permissions", "--xattrs", "--acls", "--warning=no-timestamp", "--verbose"]


def start_backup(source: str, snapshot: str, options: TarOptions) -> Pipeline:
    """Start the backup pipeline; read it with ``output_chunks()``."""
    if not os.path.exists(source):
        raise FreezerError(f"--path-to-backup {source} does not exist")
    stages = [create_command(source, snapshot, options)]
    stages += _optional(codecs.compress_command(options.compression))
    if options.encrypt_pass_file:
        stages.append(codecs.encrypt_command(options.encrypt_pass_file))
    return Pipeline(stages, feed_input=False, read_output=True,
                    ok_codes={0: (0, TAR_CHANGED_WHILE_READING)})


def start_restore(target: str, compression: str, pass_file: str | None) -> Pipeline:
    """Start the restore pipeline for one level; write to it with ``feed()``."""
    stages = [codecs.decrypt_command(pass_file)] if pass_file else []
    stages += _optional(codecs.decompress_command(compression))
    stages.append(extract_command(target))
    return Pipeline(stages, feed_input=True, read_output=False, keep_output=True)


def bytes_read(stderr: str) -> int | None:
    """The archive size tar reports with ``--totals``: about the bytes it read from the source."""
    match = _TOTALS.search(stderr)
    return int(match.group(1)) if match else None


_TOTALS = re.compile(r"^Total bytes written: ([0-9]+)", re.M)


def _optional(command: list[str] | None) -> list[list[str]]:
    return [command] if command else []
