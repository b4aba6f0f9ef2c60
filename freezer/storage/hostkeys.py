"""SSH host keys checked against known_hosts, as OpenSSH's ``StrictHostKeyChecking`` accept-new or yes.

A host known under any key type must show a key of a known type, and that very key: a server
that now offers only other types is refused like a changed key, never learnt.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import paramiko

from freezer.storage.base import HostKeyError, host_and_port

LOG = logging.getLogger(__name__)
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# The host key algorithms that prove a key of a known_hosts type; RSA keys sign with SHA-2 today.
ALGORITHMS_OF_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclasses.dataclass(frozen=True)
class KnownKey:
    """A host key found in a known_hosts file."""

    key: paramiko.PKey
    path: str


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

    def known_keys(self) -> dict[str, KnownKey]:
        """Key type -> key of this server, from the system file, then the user's (which wins)."""
        found = {}
        for path in (self.system_known_hosts, self.user_file):
            if not os.path.exists(path):
                continue
            entries = paramiko.HostKeys(path).lookup(self.name) or {}
            found.update({kind: KnownKey(entries[kind], path) for kind in entries.keys()})
        return found

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
        same_type = known.get(key.get_name())
        if same_type is not None and same_type.key == key:
            return
        if known:
            holder = (same_type or next(iter(known.values()))).path
            had = ", ".join(sorted(known))
            raise HostKeyError(f"host key of {where} CHANGED (known_hosts has {had}; the server shows {shown}): "
                               f"refusing to connect. If the change is expected, remove the old key from "
                               f"{holder} (ssh-keygen -R '{self.name}' -f {holder}); see {self.known_hosts_option}")
        if self.policy == "strict":
            raise HostKeyError(f"host key of {where} is unknown ({shown}) and {self.policy_option} is strict: "
                               f"add it to {self.user_file} ({self.known_hosts_option}) after checking it, "
                               f"e.g. ssh-keyscan {self._keyscan_args()} >> {self.user_file}")
        append_private(self.user_file, f"{self.name} {key.get_name()} {key.get_base64()}\n")
        LOG.warning("learnt host key of %s (%s) into %s", where, shown, self.user_file)

    def _keyscan_args(self) -> str:
        return self.host if self.port == 22 else f"-p {self.port} {self.host}"


def append_private(path: str, line: str) -> None:
    """Append ``line`` to ``path``; a file (and directory) created here is private whatever the umask."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as out:
        out.write(line)
