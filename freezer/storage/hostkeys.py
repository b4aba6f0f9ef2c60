"""SSH host keys checked against known_hosts, as OpenSSH's ``StrictHostKeyChecking`` accept-new or yes.

A host known under any key type must show a key of a known type, and that very key: a server
that now offers only other types is refused like a changed key, never learnt. Lines are read as
OpenSSH reads them: host patterns with ``*``, ``?`` and ``!``, hashed names, and markers: a key
marked ``@revoked`` is refused; ``@cert-authority`` (host certificates) is not supported, so a
host that only such a line vouches for is refused with a line saying so, never learnt. A line
that cannot be read is skipped with a warning, as OpenSSH does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

import paramiko

from freezer.errors import HostKeyError
from freezer.storage.base import host_and_port

LOG = logging.getLogger(__name__)
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# The host key algorithms that prove a key of a known_hosts type; RSA keys sign with SHA-2 today.
ALGORITHMS_OF_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
MARKERS = ("@revoked", "@cert-authority")
#: the most read of a known_hosts file (OpenSSH's own are far smaller)
MAX_KNOWN_HOSTS_BYTES = 16 << 20


@dataclasses.dataclass(frozen=True)
class KnownKey:
    """A host key found in a known_hosts file."""

    key: paramiko.PKey
    path: str


@dataclasses.dataclass(frozen=True)
class KnownHostsLine:
    """One readable line of a known_hosts file: its marker (``""``, ``@revoked``, ``@cert-authority``)."""

    marker: str
    patterns: tuple[str, ...]
    key: paramiko.PKey
    path: str
    number: int

    def matches(self, name: str) -> bool:
        """True when the line's patterns name ``name`` (``!pattern`` excludes it)."""
        hit = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            if _pattern_matches(pattern[1:] if negated else pattern, name):
                if negated:
                    return False
                hit = True
        return hit


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    wildcard = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(wildcard, name.lower(), re.DOTALL) is not None  # OpenSSH knows * and ?, not [...]


def read_known_hosts(path: str) -> list[KnownHostsLine]:
    """The readable lines of a known_hosts file; unreadable ones are skipped with a warning."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(MAX_KNOWN_HOSTS_BYTES)
    except OSError as exc:
        raise HostKeyError(f"cannot read known_hosts file {path}: {exc.strerror}") from exc
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _parse_line(raw.strip(), path, number)
        if line is not None:
            lines.append(line)
    return lines


def _parse_line(text: str, path: str, number: int) -> KnownHostsLine | None:
    """One known_hosts line, or None for a comment, a blank line or one that cannot be read."""
    if not text or text.startswith("#"):
        return None
    marker = ""
    if text.startswith("@"):
        marker, _, text = text.partition(" ")
        text = text.strip()
        if marker not in MARKERS:
            LOG.warning("%s line %d: unknown marker %s: line skipped", path, number, marker)
            return None
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(text, number)
    except Exception as exc:  # noqa: BLE001 - paramiko raises InvalidHostKey, and more, for a bad key
        LOG.warning("%s line %d: unreadable key (%s): line skipped", path, number, type(exc).__name__)
        return None
    if entry is None or entry.key is None:
        LOG.debug("%s line %d: key type not supported: line skipped", path, number)
        return None
    return KnownHostsLine(marker, tuple(entry.hostnames), entry.key, path, number)


@dataclasses.dataclass(frozen=True)
class HostKeyCheck:
    """What known_hosts says about one server, and what to do with a key it does not hold."""

    host: str
    port: int
    known_hosts: str = "~/.ssh/known_hosts"
    policy: str = "accept-new"
    system_known_hosts: str = SYSTEM_KNOWN_HOSTS
    known_hosts_option: str = "--ssh-known-hosts"  # the options that set known_hosts and policy, for hints
    policy_option: str = "--ssh-host-key-policy"

    @property
    def name(self) -> str:
        """The server as known_hosts names it: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def user_file(self) -> str:
        return os.path.expanduser(self.known_hosts)

    def lines(self) -> list[KnownHostsLine]:
        """The lines of the system file, then the user's, that name this server."""
        found = []
        for path in (self.system_known_hosts, self.user_file):
            if os.path.isfile(path):
                found += [line for line in read_known_hosts(path) if line.matches(self.name)]
        return found

    def known_keys(self) -> dict[str, KnownKey]:
        """Key type -> key of this server, from the system file, then the user's (which wins)."""
        return {line.key.get_name(): KnownKey(line.key, line.path) for line in self.lines() if not line.marker}

    def prefer_known_types(self, transport: paramiko.Transport, known: dict[str, KnownKey]) -> None:
        """Ask the server first for the key types known_hosts holds, so one it still has is the one used."""
        wanted = [algo for kind in known for algo in ALGORITHMS_OF_TYPE.get(kind, (kind,))]
        options = transport.get_security_options()
        available = list(options.key_types)
        options.key_types = [a for a in wanted if a in available] + [a for a in available if a not in wanted]

    def verify(self, key: paramiko.PKey, known: dict[str, KnownKey]) -> None:
        """Accept the known key; refuse a different one; learn or refuse (``strict``) an unknown host."""
        where = host_and_port(self.host, self.port)
        shown = f"{key.get_name()} {key.fingerprint}"
        marked = [line for line in self.lines() if line.marker]
        self._refuse_revoked(key, marked, where, shown)
        same_type = known.get(key.get_name())
        if same_type is not None and same_type.key == key:
            return
        if known:
            holder = (same_type or next(iter(known.values()))).path
            had = ", ".join(sorted(known))
            raise HostKeyError(f"host key of {where} CHANGED (known_hosts has {had}; the server shows {shown}): "
                               f"refusing to connect. If the change is expected, remove the old key from "
                               f"{holder} (ssh-keygen -R '{self.name}' -f {holder}); see {self.known_hosts_option}")
        authorities = [line for line in marked if line.marker == "@cert-authority"]
        if authorities:
            line = authorities[0]
            raise HostKeyError(f"host key of {where} is vouched for only by @cert-authority in {line.path} line "
                               f"{line.number}: host certificates are not supported; add the server's own key "
                               f"after checking it (ssh-keyscan {self._keyscan_args()} >> {self.user_file}), "
                               f"see {self.known_hosts_option}")
        if self.policy == "strict":
            raise HostKeyError(f"host key of {where} is unknown ({shown}) and {self.policy_option} is strict: "
                               f"add it to {self.user_file} ({self.known_hosts_option}) after checking it, "
                               f"e.g. ssh-keyscan {self._keyscan_args()} >> {self.user_file}")
        append_private(self.user_file, f"{self.name} {key.get_name()} {key.get_base64()}\n")
        LOG.warning("learnt host key of %s (%s) into %s", where, shown, self.user_file)

    def _refuse_revoked(self, key: paramiko.PKey, marked: list[KnownHostsLine], where: str, shown: str) -> None:
        """Refuse a key a ``@revoked`` line names, whatever else known_hosts says."""
        for line in marked:
            if line.marker == "@revoked" and line.key == key:
                raise HostKeyError(f"host key of {where} ({shown}) is marked @revoked in {line.path} line "
                                   f"{line.number}: refusing to connect; see {self.known_hosts_option}")

    def _keyscan_args(self) -> str:
        return self.host if self.port == 22 else f"-p {self.port} {self.host}"


def append_private(path: str, line: str) -> None:
    """Append ``line`` to ``path``; a file (and directory) created here is private whatever the umask."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as out:
        out.write(line)
