"""Typed, frozen settings for each storage, built from the resolved options and the environment.

``load`` reads the options (command line, ``--config`` and its ``[storage:NAME]`` sections) and
resolves every secret once (freezer/common/credentials.py). The builders below turn those options,
with the environment's fallbacks (``ENDPOINT``, ``ACCESS_KEY``, ``OS_*``, ``SSH_AUTH_SOCK``), into
the settings object a driver is given; drivers read neither options, environment nor secret files.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
from collections.abc import Mapping, Sequence

from oslo_config import cfg

from freezer.common import config, credentials, storage_sections, upstream
from freezer.common.inputs import bare_host, host_and_port
from freezer.errors import FreezerError, StorageError

BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# --storage name -> the prefix of the options that reach an ssh server
SSH_SPELLINGS = {"sftp": "ftp", "ssh": "ssh"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """``--upload-limit`` and ``--download-limit`` in bytes per second; None where unset."""

    upload: int | None = None
    download: int | None = None


def limits(conf) -> Limits:
    """The rate limits the registry wraps every storage in."""
    return Limits(upstream.byte_rate(getattr(conf, "upload_limit", None), "--upload-limit"),
                  upstream.byte_rate(getattr(conf, "download_limit", None), "--download-limit"))


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    """A directory on this host (or a mounted share)."""

    container: str


@dataclasses.dataclass(frozen=True)
class FtpSettings:
    """How to reach the server; ``password`` is never shown."""

    host: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    container: str
    tls: bool = False
    implicit_tls: bool = False
    cacert: str | None = None
    insecure: bool = False
    keyfile: str | None = None
    certfile: str | None = None
    active: bool = False
    timeout: float = 60.0
    connections: int = 0  # --ftp-connections; 0: auto (freezer/storage/ftp_parallel.py)

    @property
    def where(self) -> str:
        return host_and_port(self.host, self.port)


@dataclasses.dataclass(frozen=True)
class HostKeySettings:
    """The known_hosts file and policy an ssh/sftp storage uses, and the options that set them."""

    known_hosts: str
    policy: str
    known_hosts_option: str
    policy_option: str


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
    #: ssh-agent's socket ($SSH_AUTH_SOCK): its keys are tried too; None: no agent
    agent_socket: str | None = None
    #: --ftp-connections: SSH connections moving a large file; 0: auto (freezer/storage/sftp_parallel.py)
    connections: int = 0

    @property
    def where(self) -> str:
        return host_and_port(self.host, self.port)

    def option(self, name: str) -> str:
        """The option a user changes, in the spelling they used (--ftp-host or --ssh-host)."""
        return f"{self.option_prefix}-{name}"


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """Where the bucket is and how to sign for it."""

    bucket: str
    prefix: str
    endpoint: str | None
    access_key: str | None
    secret_key: str | None = None
    region: str = "us-east-1"
    cacert: str | None = None
    timeout: float = 60.0
    part_size: int = 32 * 1024 * 1024

    def __repr__(self) -> str:
        return f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r})"

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")


@dataclasses.dataclass(frozen=True)
class SwiftSettings:
    """How to authenticate, and which container and prefix hold the backups."""

    auth_url: str
    username: str
    password: str
    container: str
    prefix: str = ""
    auth_version: str = "1"
    project_name: str | None = None
    project_domain_name: str | None = None
    user_domain_name: str | None = None
    region_name: str | None = None
    cacert: str | None = None
    insecure: bool = False
    segment_size: int = 32 * 1024 * 1024
    timeout: float = 60.0

    def __repr__(self) -> str:
        return f"SwiftSettings(auth_url={self.auth_url!r}, username={self.username!r}, container={self.container!r})"

    @property
    def segments(self) -> str:
        """Where the segments of large objects go (upstream freezer's name)."""
        return f"{self.container}_segments"

    @property
    def where(self) -> str:
        return f"swift://{self.username}@{self.container}/{self.prefix}".rstrip("/")


def load(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> cfg.ConfigOpts:
    """The agent's options: ``argv``, ``--config`` and its ``[storage:NAME]`` sections, secrets resolved."""
    conf = config.parse(argv)
    if conf.config:  # [storage:NAME]: several storages at once
        conf.freezer_storages = storage_sections.read(conf.config, conf)
    resolve_secrets(conf, os.environ if environ is None else environ)
    return config.check(conf)


def resolve_secrets(conf: cfg.ConfigOpts, environ: Mapping[str, str]) -> None:
    """Fill secret options left empty from their file option, then the environment."""
    for option, (file_option, _env) in credentials.SECRET_SOURCES.items():
        value = credentials.secret(conf.__getitem__, option, "--" + file_option.replace("_", "-"), environ)
        if value is not None and value != conf[option]:
            conf.set_override(option, value)


def local(conf) -> LocalSettings:
    """``--storage local``: the container is the directory."""
    return LocalSettings(container=conf.container)


def ftp(conf) -> FtpSettings:
    """``--storage ftp``."""
    return _ftp(conf, tls=False)


def ftps(conf) -> FtpSettings:
    """``--storage ftps``."""
    return _ftp(conf, tls=True)


def _ftp(conf, tls: bool) -> FtpSettings:
    if not conf.ftp_host:
        raise StorageError(f"--storage {'ftps' if tls else 'ftp'} needs --ftp-host")
    default_port = 990 if (tls and conf.ftp_implicit_tls) else 21
    return FtpSettings(host=bare_host(conf.ftp_host), port=conf.ftp_port or default_port,
                       username=conf.ftp_username or "", password=conf.ftp_password or "",
                       container=conf.container, tls=tls, implicit_tls=conf.ftp_implicit_tls,
                       cacert=conf.ftp_cacert, insecure=conf.ftp_insecure, keyfile=conf.ftp_keyfile,
                       certfile=conf.ftp_certfile, active=conf.ftp_active, timeout=conf.ftp_timeout,
                       connections=ftp_connections(getattr(conf, "ftp_connections", None)))


def ftp_connections(value: str | int | None) -> int:
    """``--ftp-connections``: a number, or 0 for auto (the driver caps it)."""
    text = str(value if value is not None else "auto").strip().lower()
    if text == "auto":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise StorageError(f"--ftp-connections {value!r}: expected auto or a number of connections")
    return int(text)


def sftp(conf, environ: Mapping[str, str] | None = None) -> SftpSettings:
    """``--storage sftp``: the spec's ``--ftp-*`` options."""
    return _ssh(conf, "sftp", os.environ if environ is None else environ)


def ssh(conf, environ: Mapping[str, str] | None = None) -> SftpSettings:
    """``--storage ssh``: upstream's ``--ssh-*`` options."""
    return _ssh(conf, "ssh", os.environ if environ is None else environ)


def _ssh(conf, kind: str, environ: Mapping[str, str]) -> SftpSettings:
    prefix = SSH_SPELLINGS[kind]
    host_keys = host_key_settings(conf, kind)
    if not conf[f"{prefix}_host"]:
        raise StorageError(f"--storage {kind} needs --{prefix}-host")
    passphrase_file = conf.ssh_key_passphrase_file
    return SftpSettings(
        host=bare_host(conf[f"{prefix}_host"]), port=conf[f"{prefix}_port"] or 22,
        username=conf[f"{prefix}_username"] or getpass.getuser(), password=conf[f"{prefix}_password"],
        container=conf.container, key_file=conf.ssh_key,
        key_passphrase=(credentials.password_line(passphrase_file, "--ssh-key-passphrase-file")
                        if passphrase_file else None),
        known_hosts=host_keys.known_hosts, host_key_policy=host_keys.policy,
        known_hosts_option=host_keys.known_hosts_option, host_key_policy_option=host_keys.policy_option,
        timeout=conf.ssh_timeout, option_prefix=f"--{prefix}", agent_socket=environ.get("SSH_AUTH_SOCK") or None,
        connections=ftp_connections(getattr(conf, "ftp_connections", None)))


def host_key_settings(conf, storage: str) -> HostKeySettings:
    """``sftp`` reads ``ftp_known_hosts``/``ftp_host_key_policy``, each falling back to the ``ssh_`` one."""
    known_hosts, known_hosts_option = _first_set(conf, storage, "known_hosts")
    policy, policy_option = _first_set(conf, storage, "host_key_policy")
    policy = "strict" if policy == "reject" else policy
    return HostKeySettings(known_hosts, policy, known_hosts_option, policy_option)


def _first_set(conf, storage: str, name: str) -> tuple[str, str]:
    """``ftp_<name>`` if set and the storage is sftp, else ``ssh_<name>``; with the option's flag."""
    flag = name.replace("_", "-")
    if storage == "sftp" and conf[f"ftp_{name}"]:
        return conf[f"ftp_{name}"], f"--ftp-{flag}"
    return conf[f"ssh_{name}"], f"--ssh-{flag}"


def s3(conf, environ: Mapping[str, str] | None = None) -> S3Settings:
    """``--storage s3``: options, then the environment (ENDPOINT, ACCESS_KEY; SECRET_KEY is resolved by load)."""
    environ = os.environ if environ is None else environ
    bucket, prefix = split_container(conf.container)
    return S3Settings(bucket=bucket, prefix=prefix,
                      endpoint=conf.endpoint or environ.get("ENDPOINT") or None,
                      access_key=conf.access_key or environ.get("ACCESS_KEY") or None,
                      secret_key=conf.secret_key or None, region=conf.s3_region, cacert=conf.s3_cacert,
                      timeout=conf.s3_timeout, part_size=conf.max_segment_size)


def split_container(container: str) -> tuple[str, str]:
    """``bucket/some/prefix`` → (``bucket``, ``some/prefix``)."""
    bucket, _, prefix = container.strip("/").partition("/")
    if not BUCKET_NAME.fullmatch(bucket):
        raise FreezerError(f"--container must start with a bucket name (3-63 characters: a-z, 0-9, '.', '-'), "
                           f"got {bucket!r}: bucket[/prefix]")
    return bucket, prefix.strip("/")


def swift(conf, environ: Mapping[str, str] | None = None) -> SwiftSettings:
    """``--storage swift``: options, then ``OS_*`` environment variables."""
    environ = os.environ if environ is None else environ

    def pick(option: str) -> str | None:
        return conf[option] or environ.get(option.upper()) or None

    container, _, prefix = conf.container.strip("/").partition("/")
    missing = [f"--{name.replace('_', '-')}" for name in ("os_auth_url", "os_username") if not pick(name)]
    if not conf.os_password:
        missing.append("--os-password (or --os-password-file, $OS_PASSWORD)")
    if missing:
        raise FreezerError(f"--storage swift needs {', '.join(missing)}")
    return SwiftSettings(auth_url=pick("os_auth_url"), username=pick("os_username"), password=conf.os_password,
                         container=container, prefix=prefix.strip("/"),
                         auth_version=auth_version(pick("os_identity_api_version"), pick("os_auth_url")),
                         project_name=pick("os_project_name"), project_domain_name=pick("os_project_domain_name"),
                         user_domain_name=pick("os_user_domain_name"), region_name=pick("os_region_name"),
                         cacert=pick("os_cacert"), insecure=conf.insecure, segment_size=conf.max_segment_size)


def auth_version(given: str | None, auth_url: str | None) -> str:
    """``--os-identity-api-version``, else 1 for ``.../auth/v1.0`` URLs and 3 otherwise."""
    if given:
        return str(given).split(".")[0]
    return "1" if "/auth/v1" in (auth_url or "") else "3"
