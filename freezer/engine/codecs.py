"""Command lines for the compression stages, and the pass file check.

Encryption and decryption run in the agent (freezer/engine/cipher.py): no child process is given the
pass file. Outputs are the standard formats, so a backup can be restored by hand with
``openssl enc -d -aes-256-cfb -md sha256 -pass file:F | zstd -d | tar -x``.
"""

from __future__ import annotations

import os

from freezer.engine.streams import which
from freezer.errors import FreezerError

COMPRESSIONS = ("gzip", "bzip2", "xz", "zstd", "none")


def _threads() -> str:
    return str(max(1, os.cpu_count() or 1))


CHOOSE_ANOTHER = "install it or choose another --compression"
TO_READ = "install it to read this backup"


def _tool(*names: str, hint: str = CHOOSE_ANOTHER) -> str:
    """The first of ``names`` on PATH (the parallel ones first); FreezerError naming them when none is."""
    tool = which(*names)
    if tool is None:
        others = f" (nor {', '.join(names[:-1])})" if len(names) > 1 else ""
        raise FreezerError(f"{names[-1]} is not installed{others}: {hint}")
    return tool


def compress_command(name: str) -> list[str] | None:
    """The compressor for ``--compression NAME``; None for ``none``."""
    if name == "gzip":
        tool = _tool("pigz", "gzip")
        return [tool, "-c", "-6"] + (["-p", _threads()] if tool == "pigz" else [])
    if name == "bzip2":
        tool = _tool("lbzip2", "pbzip2", "bzip2")
        return [tool, "-c", "-9"]
    if name == "xz":
        return ["xz", "-c", "-6", f"-T{_threads()}"]
    if name == "zstd":
        return ["zstd", "-c", "-q", "-3", f"-T{_threads()}"]
    if name == "none":
        return None
    raise FreezerError(f"unknown --compression {name!r}: choose one of {', '.join(COMPRESSIONS)}")


def decompress_command(name: str) -> list[str] | None:
    """The decompressor for data written with ``--compression NAME``."""
    if name == "gzip":
        return [_tool("pigz", "gzip", hint=TO_READ), "-d", "-c"]
    if name == "bzip2":
        return [_tool("lbzip2", "pbzip2", "bzip2", hint=TO_READ), "-d", "-c"]
    if name == "xz":
        return ["xz", "-d", "-c", f"-T{_threads()}"]
    if name == "zstd":
        return ["zstd", "-d", "-c", "-q"]
    if name in ("none", None, ""):
        return None
    raise FreezerError(f"backup uses compression {name!r}, which this agent cannot read")


def check_pass_file(path: str) -> None:
    """Fail early, naming the option, when the pass file cannot be used."""
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline().strip()
    except OSError as exc:
        raise FreezerError(f"cannot read --encrypt-pass-file {path}: {exc.strerror}") from exc
    if not first_line:
        raise FreezerError(f"--encrypt-pass-file {path} is empty: put the passphrase on its first line")

