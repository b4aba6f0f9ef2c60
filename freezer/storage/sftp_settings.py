"""How the SFTP driver reaches and logs in to its server (``--storage sftp`` and ``--storage ssh``)."""

from __future__ import annotations

import dataclasses

from freezer.storage.base import host_and_port


@dataclasses.dataclass(frozen=True)
class SftpSettings:
    """How to reach and log in to the server; secrets are never shown."""

    host: str
    port: int
    username: str
    container: str
    password: str | None = dataclasses.field(default=None, repr=False)
    key_file: str | None = None
    key_passphrase: str | None = dataclasses.field(default=None, repr=False)
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: str = "accept-new"
    known_hosts_option: str = "--ssh-known-hosts"
    host_key_policy_option: str = "--ssh-host-key-policy"
    timeout: float = 60.0
    option_prefix: str = "--ftp"

    @property
    def where(self) -> str:
        return host_and_port(self.host, self.port)

    def option(self, name: str) -> str:
        """The option a user changes, in the spelling they used (--ftp-host or --ssh-host)."""
        return f"{self.option_prefix}-{name}"
