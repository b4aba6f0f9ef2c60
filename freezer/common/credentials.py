"""The one reader of secrets: an option's value, else the first line of its file, else an environment variable.

Storage passwords and keys (``--ftp-password-file``...), the key passphrase and the engine's pass and
MAC key files are all read by ``first_line``; nothing else in the agent opens a secret file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from freezer.errors import FreezerError

# Secrets that may come from a file or the environment instead of the command line:
# option -> (file option, environment variable)
SECRET_SOURCES = {
    "ftp_password": ("ftp_password_file", "FREEZER_FTP_PASSWORD"),
    "ssh_password": ("ssh_password_file", "FREEZER_SSH_PASSWORD"),
    "secret_key": ("secret_key_file", "SECRET_KEY"),
    "os_password": ("os_password_file", "OS_PASSWORD"),
}
#: the most read of a password file: its first line is all that counts, and a device never ends
SECRET_FILE_MAX = 64 * 1024
#: openssl reads at most this much of a pass file's first line (``-pass file:``)
SECRET_LINE_MAX = 1023


def first_line(path: str, option: str, limit: int = SECRET_FILE_MAX) -> bytes:
    """The first line of the secret file ``option`` names, reading at most ``limit`` bytes; NUL bytes refused."""
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            line = handle.read(limit).split(b"\n", 1)[0]
    except OSError as exc:
        raise FreezerError(f"cannot read {option} {path}: {exc.strerror}") from exc
    if b"\0" in line:
        raise FreezerError(f"{option} {path} holds NUL bytes: give a text file whose first line is the secret")
    return line


def password_line(path: str, option: str) -> str:
    """A password file's first line as text, without trailing carriage returns (may be empty)."""
    line = first_line(path, option).rstrip(b"\r")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise FreezerError(f"{option} {path}: the first line is not UTF-8 text") from None


def key_line(path: str, option: str) -> bytes:
    """A pass or key file's first line as openssl reads it: at most SECRET_LINE_MAX bytes, a CR kept, not empty."""
    line = first_line(path, option, SECRET_LINE_MAX)
    if not line:
        raise FreezerError(f"{option} {path}: the first line is empty: put the secret on it")
    return line


def secret(get: Callable[[str], object], option: str, file_flag: str, environ: Mapping[str, str]) -> str | None:
    """``get(option)`` if set, else its file's first line (named ``file_flag`` in errors), else its variable."""
    if get(option):
        return get(option)
    file_option, env_var = SECRET_SOURCES[option]
    if get(file_option):
        return password_line(get(file_option), file_flag)
    return environ.get(env_var) or None
