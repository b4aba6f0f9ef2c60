"""Peer tools on the same data and servers: restic (local, sftp) and duplicity (local, ftp, sftp)."""

from __future__ import annotations

import os
import shutil
import subprocess

PASSWORD = "benchmark-peer-password"


def available(tool: str, storage: str = "local") -> bool:
    """The tool is installed, with what it needs for ``storage`` (duplicity uses lftp for FTP)."""
    return shutil.which(tool) is not None and (storage != "ftp" or shutil.which("lftp") is not None)


def _run(argv: list[str], env: dict | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def _ssh_command(server, workdir: str) -> str:
    return (f"ssh -p {server.port} -i {server.client_key} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile={workdir}/kh -o BatchMode=yes {server.username}@127.0.0.1 -s sftp")


class Restic:
    """restic: always encrypted, zstd-compressed (repository format 2)."""

    def __init__(self, repo: str, workdir: str, server=None):
        self.repo = f"sftp:{server.username}@127.0.0.1:{repo}" if server else repo
        self.extra = ["-o", f"sftp.command={_ssh_command(server, workdir)}"] if server else []
        self.env = {"RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": os.path.join(workdir, "restic-cache")}

    def init(self) -> None:
        _run(["restic", "-r", self.repo, *self.extra, "init"], self.env)

    def backup(self, source: str) -> None:
        _run(["restic", "-r", self.repo, *self.extra, "backup", "--quiet", source], self.env)

    def restore(self, target: str) -> None:
        _run(["restic", "-r", self.repo, *self.extra, "restore", "latest", "--target", target], self.env)


class Duplicity:
    """duplicity without GnuPG: gzip-compressed tar volumes."""

    def __init__(self, url: str, workdir: str, server=None):
        self.url = url
        self.options = ["--no-encryption", "--archive-dir", os.path.join(workdir, "duplicity-cache"),
                        "--volsize", "200"]
        self.env = {"PASSPHRASE": ""}
        if url.startswith("sftp://"):
            self.options += ["--ssh-options", f"-oIdentityFile={server.client_key} -oStrictHostKeyChecking=no "
                             f"-oUserKnownHostsFile={workdir}/kh"]
        elif url.startswith("ftp://"):
            self.env["FTP_PASSWORD"] = server.password  # duplicity's ftp backend drives lftp

    def init(self) -> None:
        return None

    def backup(self, source: str) -> None:
        _run(["duplicity", "full", *self.options, source, self.url], self.env)

    def restore(self, target: str) -> None:
        _run(["duplicity", "restore", *self.options, self.url, target], self.env)
