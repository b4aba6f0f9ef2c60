"""Checks of values that pass their option's type yet cannot be used: each fails with one line naming the option.

Run once the command line, ``--config`` and the secret files are read, before any storage or child process.
"""

from __future__ import annotations

import ipaddress
import math

from freezer.common import credentials, upstream
from freezer.errors import FreezerError

#: the longest host name DNS allows (RFC 1035: 255 octets on the wire, 253 characters written)
MAX_HOST = 253
#: the largest ``--config`` file read; real ones are a few KiB
MAX_CONFIG_BYTES = 1 << 20
#: options whose value is a name written into the storage layout and logs
NAME_OPTIONS = ("backup_name",)
#: options naming a server: host name or IP address
HOST_OPTIONS = ("ftp_host", "ssh_host")
#: options naming a file whose first line is a secret, read by the engine
SECRET_FILE_OPTIONS = ("encrypt_pass_file", "auth_key_file")
#: the actions that read them
SECRET_FILE_ACTIONS = ("backup", "restore", "verify")


def check(conf) -> None:
    """Fail with one line on the first value no storage, engine or layout can use."""
    for dest in NAME_OPTIONS:
        if conf[dest] is not None:
            check_name(flag(dest), conf[dest])
    for dest in HOST_OPTIONS:
        if conf[dest]:
            check_host(flag(dest), conf[dest])
    for dest in ("upload_limit", "download_limit"):
        upstream.byte_rate(conf[dest], flag(dest))
    for dest in SECRET_FILE_OPTIONS:
        if conf[dest] and conf.action in SECRET_FILE_ACTIONS:
            credentials.key_line(conf[dest], flag(dest))


def flag(dest: str) -> str:
    """``backup_name`` -> ``--backup-name``."""
    return "--" + dest.replace("_", "-")


def check_name(option: str, value: str) -> None:
    """A name for the layout: one path segment of printable UTF-8 text."""
    if not value or value in (".", "..") or "/" in value:
        raise FreezerError(f"invalid {option} {value!r}: it must be a non-empty name without '/'")
    _check_text(option, value)


def check_host(option: str, value: str) -> None:
    """A host name (at most 253 characters, labels of at most 63) or an IP address, ``[v6]`` allowed."""
    _check_text(option, value)
    bare = value.strip()
    bare = bare[1:-1] if bare.startswith("[") and bare.endswith("]") else bare
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
        return
    except ValueError:
        pass
    if len(bare) > MAX_HOST:
        raise FreezerError(f"invalid {option} ({len(bare)} characters): a host name has at most {MAX_HOST}")
    why = _host_problem(bare)
    if why:
        raise FreezerError(f"invalid {option} {value!r}: not a host name ({why})")


def host_and_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets: ``[::1]:21``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bare_host(host: str) -> str:
    """The host as sockets want it: ``[::1]`` (as users often write it) becomes ``::1``."""
    host = (host or "").strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a DNS name, or None."""
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not host or any(not label for label in labels):
        return "an empty label"
    if any(len(label) > 63 for label in labels):
        return "a label longer than 63 characters"
    if any(c.isspace() for c in host):
        return "white space"
    try:
        host.encode("idna")
    except UnicodeError:
        return "characters a host name cannot hold"
    return None


def _check_text(option: str, value: str) -> None:
    """Printable text that encodes as UTF-8 (the command line's undecodable bytes do not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise FreezerError(f"invalid {option} '{shown}': not UTF-8 text") from None
    if any(not c.isprintable() for c in value):
        raise FreezerError(f"invalid {option} {value!r}: control characters (such as a newline) are not allowed")


def finite(value, option: str):
    """``value`` unless it is a float that is not a number or infinite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise FreezerError(f"{option}: invalid value {str(value)!r}: expected a finite number")
    return value


def read_text(path: str, limit: int, what: str) -> str:
    """The UTF-8 text of a small file (``what``: how errors name it), reading at most ``limit`` bytes."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise FreezerError(f"cannot read {what}: {exc.strerror}") from exc
    if len(data) > limit:
        raise FreezerError(f"{what} is larger than {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FreezerError(f"{what} is not a text file (not UTF-8 at byte {exc.start})") from None


def read_config_text(path: str) -> str:
    """The text of a ``--config`` file: UTF-8, at most MAX_CONFIG_BYTES."""
    text = read_text(path, MAX_CONFIG_BYTES, f"--config {path}")
    if "\0" in text:
        raise FreezerError(f"--config {path} is not a text file (it holds NUL bytes)")
    return text
