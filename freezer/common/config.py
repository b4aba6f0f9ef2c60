"""Every option of freezer-agent: name, default and help (oslo.config).

One name serves the command line (``--ftp-host``), the ini file given by
``--config`` (``ftp_host = ...``) and a job's ``freezer_action`` (``"ftp_host"``).
The command line wins over the ini file.
"""

from __future__ import annotations

import configparser
import functools
import logging
import os
import socket
from collections.abc import Sequence

from oslo_config import cfg

from freezer import __version__
from freezer.common import cli, credentials, inputs, upstream
from freezer.common.credentials import SECRET_SOURCES
from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)
STORAGES = ("local", "ssh", "sftp", "ftp", "ftps", "s3", "swift")
ACTIONS = ("backup", "restore", "info", "admin", "exec", "verify")
HOST_KEY_POLICIES = ("accept-new", "strict", "reject")  # reject: another name for strict


def _one_of(names: Sequence[str]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


CORE_OPTS = [
    cfg.StrOpt("action", default="backup", help=f"What to do: {_one_of(ACTIONS)}."),
    cfg.StrOpt("storage",
               help=f"Where backups are kept: {_one_of(STORAGES)}."),
    cfg.StrOpt("container",
               help="Directory (or bucket/container) on the storage that holds the backups."),
    cfg.StrOpt("path-to-backup", dest="path_to_backup", help="File or directory to back up."),
    cfg.StrOpt("backup-name", dest="backup_name", help="Name of the backup set."),
    cfg.HostnameOpt("hostname", default=socket.gethostname(),
                    help="Host name recorded in the backup layout (default: this host)."),
    cfg.StrOpt("mode", default="fs", choices=tuple(upstream.MODES),
               help="Backup mode; only 'fs' is provided, the others are refused."),
    cfg.StrOpt("engine", dest="engine_name", default="tar", choices=tuple(upstream.ENGINES),
               help="Backup engine; only 'tar' is provided, the others are refused."),
    cfg.BoolOpt("incremental", help="Make incremental backups (the default)."),
    cfg.BoolOpt("no-incremental", dest="no_incremental", default=False,
                help="Make every backup a new level 0."),
    cfg.IntOpt("max-level", dest="max_level", min=1,
               help="Start a new level-0 chain when the newest chain reaches this level."),
    cfg.IntOpt("always-level", dest="always_level", min=1,
               help="Keep making backups at this level (differential against the level below)."),
    cfg.FloatOpt("restart-always-level", dest="restart_always_level", min=0,
                 help="Start a new chain when its level 0 is older than this many days."),
    cfg.FloatOpt("remove-older-than", dest="remove_older_than", min=0,
                 help="admin: remove chains whose level 0 is older than this many days."),
    cfg.StrOpt("remove-from-date", dest="remove_from_date",
               help="admin: remove chains whose level 0 is before YYYY-MM-DDThh:mm:ss."),
    cfg.FloatOpt("remove-incomplete-after", dest="remove_incomplete_after", default=24.0, min=0,
                 help="admin: also remove backups that never completed (a level without metadata, left by "
                      "a killed agent or a lost connection) and stray .*.partial-* uploads, once their "
                      "timestamp is this many hours old; younger ones may belong to a running backup."),
    cfg.StrOpt("restore-abs-path", dest="restore_abs_path", help="Directory to restore into."),
    cfg.StrOpt("restore-from-date", dest="restore_from_date",
               help="Restore the state as of YYYY-MM-DDThh:mm:ss (default: newest)."),
    cfg.BoolOpt("overwrite", default=False,
                help="Restore into a non-empty directory, making it exactly the backup: "
                     "files that are not in the backup are deleted."),
    cfg.StrOpt("compression", default="gzip", choices=("gzip", "bzip2", "xz", "zstd", "none"),
               help="Compression of the backup data."),
    cfg.StrOpt("encrypt-pass-file", dest="encrypt_pass_file",
               help="File whose first line is the passphrase (openssl enc -aes-256-cfb). It also keys a MAC "
                    "over every level, so a restore refuses data or metadata that anyone changed. Without it "
                    "(or --auth-key-file) the sha256 in the metadata guards against accidents only."),
    cfg.StrOpt("auth-key-file", dest="auth_key_file",
               help="File whose first line keys the MAC over every level instead of the passphrase: "
                    "authenticated backups without encryption."),
    cfg.BoolOpt("allow-unauthenticated", dest="allow_unauthenticated", default=False,
                help="restore, verify: accept levels without a MAC (written by upstream freezer or an older "
                     "agent), giving up the check that nobody changed them on the storage."),
    cfg.FloatOpt("storage-retry-time", dest="storage_retry_time", default=120.0, min=0,
                 help="After 3 attempts, keep retrying a busy or unreachable network storage (a transient "
                      "failure: a timeout, a dropped connection, too many connections) for up to this many "
                      "seconds in all, with growing, jittered pauses; 0: 3 attempts only."),
    cfg.IntOpt("max-segment-size", dest="max_segment_size", default=32 * 1024 * 1024, min=65536,
               help="Transfer block size in bytes (S3 part size)."),
    cfg.MultiStrOpt("exclude", default=[], help="Pattern of paths to leave out (repeatable)."),
    cfg.StrOpt("dereference-symlink", dest="dereference_symlink", default="",
               choices=("", "none", "soft", "hard", "all"),
               help="Follow symlinks (soft), hard links (hard) or both (all)."),
    cfg.BoolOpt("snapshot", default=False, help="Back up from an LVM snapshot of the volume."),
    cfg.StrOpt("lvm-snapsize", dest="lvm_snapsize", default="1G",
               help="--snapshot: space for changes while the snapshot lives (lvcreate --size)."),
    cfg.StrOpt("lvm-dirmount", dest="lvm_dirmount",
               help="--snapshot: directory in which to mount the snapshot (default: a temporary one)."),
    cfg.StrOpt("log-file", dest="log_file", help="Also log to this file."),
    cfg.StrOpt("metadata-out", dest="metadata_out", help="Write the result as JSON to FILE, or '-'."),
    cfg.BoolOpt("dry-run", dest="dry_run", default=False,
                help="Say what would be done; change nothing."),
    cfg.StrOpt("config", help="Ini file with options; the command line wins over it."),
    cfg.BoolOpt("quiet", short="q", default=False, help="Print only errors."),
    cfg.BoolOpt("debug", short="d", default=False, help="Log debugging detail and tracebacks."),
]

FTP_OPTS = [
    cfg.StrOpt("ftp-host", dest="ftp_host",
               help="FTP, FTPS or SFTP server: host name, IPv4 or IPv6 address ([::1] or ::1)."),
    cfg.PortOpt("ftp-port", dest="ftp_port",
                help="Server port (default 21 for ftp/ftps, 990 with implicit TLS, 22 for sftp)."),
    cfg.StrOpt("ftp-username", dest="ftp_username", help="User name on the FTP/FTPS/SFTP server."),
    cfg.StrOpt("ftp-password", dest="ftp_password", secret=True,
               help="Password; prefer --ftp-password-file or $FREEZER_FTP_PASSWORD."),
    cfg.StrOpt("ftp-password-file", dest="ftp_password_file",
               help="File whose first line is the FTP/FTPS/SFTP password."),
    cfg.BoolOpt("ftp-implicit-tls", dest="ftp_implicit_tls", default=False,
                help="ftps: TLS from the first byte (servers on port 990)."),
    cfg.StrOpt("ftp-cacert", dest="ftp_cacert", help="ftps: extra CA certificate file to trust."),
    cfg.BoolOpt("ftp-insecure", dest="ftp_insecure", default=False,
                help="ftps: do not verify the server certificate (unsafe)."),
    cfg.StrOpt("ftp-keyfile", dest="ftp_keyfile", help="ftps: client private key file."),
    cfg.StrOpt("ftp-certfile", dest="ftp_certfile", help="ftps: client certificate file."),
    cfg.BoolOpt("ftp-active", dest="ftp_active", default=False,
                help="ftp/ftps: active mode (PORT) instead of passive."),
    cfg.FloatOpt("ftp-timeout", dest="ftp_timeout", default=60.0, min=1,
                 help="Seconds to wait for the server on connect and on each reply."),
    cfg.StrOpt("ftp-connections", dest="ftp_connections", default="auto",
               help="ftp/ftps/sftp: connections moving one backup's data: a number up to 16, or auto "
                    "(1 on a LAN, 4 when the login's round trip exceeds 25 ms, then up to 8 while each "
                    "connection keeps 1.5 MiB in flight). ftp/ftps uploads stay one plain "
                    "file where the server writes at offsets (vsftpd), and under auto everywhere; a "
                    "number above 1 on a server that refuses offset writes (pyftpdlib) stores large "
                    "data as a directory of segments, which upstream freezer cannot restore."),
    cfg.StrOpt("ftp-known-hosts", dest="ftp_known_hosts",
               help="sftp: known hosts file (default: --ssh-known-hosts); accept-new records new hosts here."),
    cfg.StrOpt("ftp-host-key-policy", dest="ftp_host_key_policy", choices=HOST_KEY_POLICIES,
               help="sftp: accept-new learns unknown hosts; strict (or reject) refuses them; a changed "
                    "key is always refused (default: --ssh-host-key-policy)."),
]

SSH_OPTS = [
    cfg.StrOpt("ssh-host", dest="ssh_host", help="ssh storage: server host name or address."),
    cfg.PortOpt("ssh-port", dest="ssh_port", default=22, help="ssh storage: server port."),
    cfg.StrOpt("ssh-username", dest="ssh_username", help="ssh storage: user name."),
    cfg.StrOpt("ssh-key", dest="ssh_key", help="Private key file (RSA, ECDSA or Ed25519)."),
    cfg.StrOpt("ssh-key-passphrase-file", dest="ssh_key_passphrase_file",
               help="File whose first line is the private key's passphrase."),
    cfg.StrOpt("ssh-password", dest="ssh_password", secret=True,
               help="ssh storage: password; prefer --ssh-password-file or $FREEZER_SSH_PASSWORD."),
    cfg.StrOpt("ssh-password-file", dest="ssh_password_file",
               help="File whose first line is the ssh password."),
    cfg.StrOpt("ssh-known-hosts", dest="ssh_known_hosts", default="~/.ssh/known_hosts",
               help="Known hosts file; new hosts are recorded here."),
    cfg.StrOpt("ssh-host-key-policy", dest="ssh_host_key_policy", default="accept-new",
               choices=HOST_KEY_POLICIES,
               help="accept-new: learn unknown hosts, refuse changed keys; strict (or reject): refuse unknown."),
    cfg.FloatOpt("ssh-timeout", dest="ssh_timeout", default=60.0, min=1,
                 help="Seconds to wait for the server on connect and on each request."),
]

S3_OPTS = [
    cfg.StrOpt("access-key", dest="access_key", help="s3: access key id (or $ACCESS_KEY)."),
    cfg.StrOpt("secret-key", dest="secret_key", secret=True,
               help="s3: secret access key; prefer --secret-key-file or $SECRET_KEY."),
    cfg.StrOpt("secret-key-file", dest="secret_key_file", help="s3: file whose first line is the secret key."),
    cfg.StrOpt("endpoint", help="s3: endpoint URL, e.g. https://s3.example.com (or $ENDPOINT)."),
    cfg.StrOpt("region", dest="s3_region", default="us-east-1", help="s3: region to sign requests for."),
    cfg.StrOpt("s3-cacert", dest="s3_cacert", help="s3: CA bundle to verify the endpoint's certificate."),
    cfg.FloatOpt("s3-timeout", dest="s3_timeout", default=60.0, min=1,
                 help="s3: seconds to wait for the endpoint on connect and on each read."),
]

SWIFT_OPTS = [
    cfg.StrOpt("os-auth-url", dest="os_auth_url", help="swift: identity URL (or $OS_AUTH_URL)."),
    cfg.StrOpt("os-username", dest="os_username", help="swift: user name; 'account:user' for auth v1."),
    cfg.StrOpt("os-password", dest="os_password", secret=True,
               help="swift: password or key; prefer --os-password-file or $OS_PASSWORD."),
    cfg.StrOpt("os-password-file", dest="os_password_file", help="swift: file whose first line is the password."),
    cfg.StrOpt("os-project-name", dest="os_project_name", help="swift, Keystone v3: project name."),
    cfg.StrOpt("os-project-domain-name", dest="os_project_domain_name", help="swift, Keystone v3: project domain."),
    cfg.StrOpt("os-user-domain-name", dest="os_user_domain_name", help="swift, Keystone v3: user domain."),
    cfg.StrOpt("os-region-name", dest="os_region_name", help="swift: region of the object-store endpoint."),
    cfg.StrOpt("os-identity-api-version", dest="os_identity_api_version", deprecated_name="os-auth-ver",
               help="swift: 1 (tempauth/swauth) or 3 (Keystone); guessed from the URL when unset."),
    cfg.StrOpt("os-cacert", dest="os_cacert", help="swift: CA bundle to verify the servers' certificates."),
    cfg.BoolOpt("insecure", default=False, help="swift: do not verify TLS certificates (not for production)."),
]

# Environment variables that hold the agent's own secrets: it may read them; an exec action's
# command never sees them (nor any variable holding a secret's value, see exec_environment).
SECRET_ENV = frozenset({env_var for _file, env_var in SECRET_SOURCES.values()} | {
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "OS_TOKEN", "OS_AUTH_TOKEN",
    "OS_APPLICATION_CREDENTIAL_SECRET", "ST_KEY", "SWIFT_KEY", "SSH_ASKPASS_PASSWORD", "SSHPASS",
})
#: what the tools the agent runs for its own work (tar, compressors, openssl, LVM tools, ionice)
#: get of its environment: where programs are, language, time zone, home and temporary directory
CHILD_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR",
                       "LVM_SYSTEM_DIR"})
CHILD_ENV_PREFIXES = ("LC_",)
#: a secret shorter than this is kept out only as a whole value, not as part of one
MIN_SECRET_PART = 6


def child_environment(environ: dict | None = None) -> dict[str, str]:
    """The environment of a tool the agent runs for its own work: only the CHILD_ENV variables."""
    source = os.environ if environ is None else environ
    kept = {name: value for name, value in source.items()
            if name in CHILD_ENV or name.startswith(CHILD_ENV_PREFIXES)}
    kept.setdefault("PATH", os.defpath)
    return kept


def exec_environment(secrets: Sequence[str], environ: dict | None = None) -> dict[str, str]:
    """An exec action's environment: the operator's, without SECRET_ENV and any variable holding a secret."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items()
            if not is_secret_variable(name) and not holds_secret(value, secrets)}


def is_secret_variable(name: str) -> bool:
    """A variable the agent reads its own secrets from (SECRET_ENV)."""
    return name.upper() in SECRET_ENV


def holds_secret(value: str, secrets: Sequence[str]) -> bool:
    """True when ``value`` is one of ``secrets``, or holds one of at least MIN_SECRET_PART characters."""
    return any(secret and (value == secret or (len(secret) >= MIN_SECRET_PART and secret in value))
               for secret in secrets)


def agent_secrets(conf) -> list[str]:
    """Every secret the agent holds: secret options and the first line of its pass and key files."""
    found = secret_values(conf)
    for dest in inputs.SECRET_FILE_OPTIONS:
        if conf[dest]:
            try:
                found.append(credentials.key_line(conf[dest], inputs.flag(dest)).decode("utf-8", "replace"))
            except FreezerError:
                continue  # an unreadable file holds nothing to hide
    return found


def all_opts() -> list[cfg.Opt]:
    """Every option, core first, then each storage's."""
    return CORE_OPTS + FTP_OPTS + SSH_OPTS + S3_OPTS + SWIFT_OPTS + upstream.OPTS


def help_text() -> str:
    """``freezer-agent --help``, its lists of actions and storages taken from ACTIONS and STORAGES."""
    return cli.help_text(all_opts(), {"action": ACTIONS, "storage": STORAGES})


def build(argv: Sequence[str] | None) -> cfg.ConfigOpts:
    """``argv`` and the ``--config`` ini file, checked; no ``[storage:NAME]`` sections or secrets (settings.load)."""
    return check(parse(argv))


def parse(argv: Sequence[str] | None) -> cfg.ConfigOpts:
    """Parse ``argv`` and the ``--config`` ini file into a fresh ConfigOpts (not checked yet)."""
    normalized = upstream.normalize_argv(list(argv or []))  # upstream's short and old spellings
    cli.check(normalized, all_opts())
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(all_opts())
    try:
        conf(normalized, project="freezer", prog="freezer-agent",
             version=__version__, default_config_files=[], default_config_dirs=[])
    except cfg.Error as exc:
        raise FreezerError(str(exc).splitlines()[0]) from exc
    conf.freezer_verbatim = upstream.verbatim_from_argv(list(argv or []))
    if conf.config:
        apply_ini(conf, read_ini(conf.config))
    return conf


def check(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """``conf`` once every value a check may read is in it; the first unusable value fails with one line."""
    if conf.action not in ACTIONS:
        raise FreezerError(f"unknown --action {conf.action!r}: choose one of {', '.join(ACTIONS)}")
    upstream.check(conf)
    inputs.check(conf)
    return conf


def read_ini(path: str) -> dict[str, str]:
    """Options from every section of an ini file except ``[storage:*]``."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    try:
        parser.read_string(inputs.read_config_text(path), path)
    except configparser.Error as exc:
        raise FreezerError(f"--config {path} is not a valid ini file: {exc.message.splitlines()[0]}") from exc
    values = {}
    for section in parser.sections():
        if section.lower().startswith("storage:"):
            continue
        for key, value in parser.items(section):
            values[normalize_key(key)] = value
    return values


def normalize_key(key: str) -> str:
    """``path-to-backup`` and ``path_to_backup`` are the same option."""
    return key.strip().replace("-", "_").lower()


def coerce(opt: cfg.Opt, value):
    """Turn an ini or JSON value into the option's type; 'none' means unset.

    Booleans read as oslo.utils' strutils does (true/false, yes/no, on/off, 1/0); a refused value
    gets the command line's words for what was expected.
    """
    if isinstance(value, str):
        value = value.strip()
    choices = getattr(opt.type, "choices", None) or {}
    if isinstance(value, str) and value in choices:
        return value
    if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
        return [] if isinstance(opt, cfg.MultiStrOpt) else None
    if isinstance(opt, cfg.MultiStrOpt):
        return value if isinstance(value, list) else [str(value)]
    if isinstance(opt, cfg.BoolOpt):
        return _boolean(opt, value)
    try:
        return inputs.finite(opt.type(str(value) if isinstance(value, bool) else value), f"{opt.dest} (--{opt.name})")
    except (ValueError, TypeError, OverflowError) as exc:
        raise FreezerError(f"{opt.dest} (--{opt.name}): {cli.why_invalid(opt.type, str(value), exc)}") from exc


def _boolean(opt: cfg.Opt, value) -> bool:
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):  # the scheduler's ini: no import
        return str(value).lower() == "true"
    from oslo_utils import strutils  # imported here: it costs 0.19 s, which every start-up would pay

    try:
        return strutils.bool_from_string(value, strict=True)
    except ValueError:
        raise FreezerError(f"{opt.dest} (--{opt.name}): invalid value {str(value)!r}: expected true or false "
                           "(also yes/no, on/off, 1/0)") from None


@functools.lru_cache(maxsize=1)
def _options_by_key() -> dict[str, cfg.Opt]:
    by_key = {normalize_key(opt.name): opt for opt in all_opts()}  # engine, region, lvm_snap_perm...
    by_key.update({normalize_key(old.name): opt for opt in all_opts() for old in opt.deprecated_opts})
    by_key.update({opt.dest: opt for opt in all_opts()})
    return by_key


def option_for(key: str) -> cfg.Opt | None:
    """The option an ini or job key names (its name, dest or an old name, any case, - or _); None if unknown."""
    return _options_by_key().get(normalize_key(key))


def option_keys() -> list[str]:
    """Every key that names an option, for "did you mean" hints."""
    return sorted(_options_by_key())


def apply_ini(conf: cfg.ConfigOpts, values: dict) -> list[str]:
    """Use ``values`` as defaults under the command line; return unknown keys."""
    unknown = []
    for key, value in values.items():
        opt = option_for(key)
        if opt is None or opt.dest == "config":
            unknown.append(key)
            continue
        if opt.dest in upstream.VERBATIM:  # shell text: kept apart from oslo.config's substitution
            getattr(conf, "freezer_verbatim", {}).setdefault(opt.dest, value)
            continue
        conf.set_default(opt.dest, coerce(opt, value))
    if unknown:
        LOG.warning("ignoring unknown options in --config: %s", ", ".join(sorted(unknown)))
    return unknown


def incremental(conf: cfg.ConfigOpts) -> bool:
    """``--incremental`` if given, else not ``--no-incremental``."""
    if conf.incremental is not None:
        return conf.incremental
    return not conf.no_incremental


def secret_values(conf: cfg.ConfigOpts) -> list[str]:
    """Current values of every secret option, to mask in logs."""
    return [conf[opt.dest] for opt in all_opts() if opt.secret and conf[opt.dest]]
