"""An OpenSSH sshd on 127.0.0.1 (or ::1) for tests: its own config, host key and client key."""

from __future__ import annotations

import os
import resource
import subprocess

from freezer.testing.servers import (
    TEST_PASSWORD,
    TEST_USER,
    _Server,
    ensure_test_user,
    free_port,
    served_dir,
    wait_for_port,
)

SSHD = "/usr/sbin/sshd"


def keygen(path: str, kind: str = "ed25519", passphrase: str = "") -> str:
    """Make a key pair at ``path`` (and ``path.pub``); return ``path``."""
    for stale in (path, path + ".pub"):
        if os.path.exists(stale):
            os.remove(stale)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", path], check=True)
    return path


class Sshd(_Server):
    """sshd with password and public-key login for the test user, and the SFTP subsystem."""

    storage = "sftp"
    username = TEST_USER
    password = TEST_PASSWORD

    def __init__(self, workdir: str, port: int | None = None, host_key_kind: str = "ed25519", sftp: bool = True,
                 host: str = "127.0.0.1", more_host_key_kinds: tuple[str, ...] = (),
                 extra_config: tuple[str, ...] = (), open_files: int | None = None):
        super().__init__(workdir)
        self.open_files = open_files  # the descriptor limit of sshd and so of each session's internal-sftp
        self.host = host
        self.sftp = sftp
        self.wanted_port = port
        self.host_key_kind = host_key_kind
        self.more_host_key_kinds = more_host_key_kinds
        self.extra_config = extra_config  # sshd_config lines, e.g. "MaxSessions 1"

    def _setUp(self):
        user = ensure_test_user()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.root = served_dir(self.workdir, "sftp-root", owner=user)
        self.dir = os.path.join(self.workdir, "sshd")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.host_key = keygen(os.path.join(self.dir, f"host_{self.host_key_kind}"), self.host_key_kind)
        self.host_keys = [self.host_key] + [keygen(os.path.join(self.dir, f"host_{kind}"), kind)
                                            for kind in self.more_host_key_kinds]
        self.client_key = os.path.join(self.dir, "client_key")
        if not os.path.exists(self.client_key):
            keygen(self.client_key)
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        self.authorize(self.client_key)
        self.known_hosts = os.path.join(self.workdir, "known_hosts")
        self.port = self.wanted_port or free_port()
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as out:
            out.write(f"Port {self.port}\nListenAddress {self.host}\n"
                      + "".join(f"HostKey {key}\n" for key in self.host_keys) +
                      f"PidFile {self.dir}/sshd.pid\nAuthorizedKeysFile {self.authorized_keys}\n"
                      "StrictModes no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
                      "UsePAM no\nPermitRootLogin no\nLogLevel ERROR\n"
                      f"{'Subsystem sftp internal-sftp' if self.sftp else ''}\n"
                      f"AllowUsers {TEST_USER}\n" + "".join(f"{line}\n" for line in self.extra_config))
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if self.open_files:
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
        self.addCleanup(self._stop)
        wait_for_port(self.port, self.proc, host=self.host)

    def authorize(self, key_path: str) -> None:
        """Let the test user log in with the key pair at ``key_path``."""
        with open(key_path + ".pub") as public, open(self.authorized_keys, "a") as out:
            out.write(public.read())
        os.chmod(self.authorized_keys, 0o644)

    def agent_options(self, container: str | None = None) -> list[str]:
        """The spec's spelling: --storage sftp with the --ftp-* options."""
        return ["--storage", "sftp", "--container", container or self.container(),
                "--ftp-host", self.host, "--ftp-port", str(self.port), "--ftp-username", self.username,
                "--ftp-password", self.password, "--ssh-known-hosts", self.known_hosts]

    def ssh_options(self, container: str | None = None) -> list[str]:
        """Upstream's spelling: --storage ssh with --ssh-* options and a key."""
        return ["--storage", "ssh", "--container", container or self.container(),
                "--ssh-host", self.host, "--ssh-port", str(self.port), "--ssh-username", self.username,
                "--ssh-key", self.client_key, "--ssh-known-hosts", self.known_hosts]

    def container(self) -> str:
        return os.path.join(self.root, "backups")
