"""Options upstream freezer-agent has and the core list lacks, and what this agent does with each.

Every upstream option name parses here, so an upstream command line, ini file or job document
keeps working. An option this agent implements lives in ``OPTS`` with its upstream meaning; one it
cannot honour (it needs OpenStack services, a database or the rsync engine) is refused with one
line when it is given a value, never silently dropped. The few options of this agent's own that
go with them live here too: --low-priority, --cross-mount-points and --verify-scope.
"""

from __future__ import annotations

import logging
import math
import os

from oslo_config import cfg

from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)

#: upstream ``--mode`` values beyond ``fs``, and what each would need
MODES = {
    "fs": None,
    "mongo": "a MongoDB server",
    "mysql": "a MySQL server",
    "sqlserver": "Microsoft SQL Server",
    "cinder": "OpenStack Cinder",
    "cindernative": "OpenStack Cinder",
    "cinderbrick": "OpenStack Cinder",
    "glance": "OpenStack Glance",
    "nova": "OpenStack Nova",
}

#: upstream ``--engine`` values beyond ``tar``, and what each would need
ENGINES = {
    "tar": None,
    "rsync": "the rsync engine",
    "rsyncv2": "the rsync engine",
    "nova": "OpenStack Nova",
    "osbrick": "OpenStack Cinder (os-brick)",
    "glance": "OpenStack Glance",
}

#: option dest -> what it needs; giving any of them a value fails with one line
REFUSED = {
    "mysql_conf": "a MySQL server (--mode mysql)",
    "sql_server_conf": "Microsoft SQL Server (--mode sqlserver)",
    "rsync_block_size": "the rsync engine (--engine rsync)",
    "cinder_vol_id": "OpenStack Cinder",
    "cinder_vol_name": "OpenStack Cinder",
    "cinderbrick_vol_id": "OpenStack Cinder (os-brick)",
    "cindernative_vol_id": "OpenStack Cinder",
    "cindernative_backup_id": "OpenStack Cinder",
    "cindernative_backup_az": "OpenStack Cinder",
    "cindernative_backup_container": "OpenStack Cinder",
    "fullbackup_rotation": "OpenStack Cinder (native backups)",
    "glance_image_id": "OpenStack Glance",
    "glance_image_name": "OpenStack Glance",
    "glance_image_name_filter": "OpenStack Glance",
    "nova_inst_id": "OpenStack Nova",
    "nova_inst_name": "OpenStack Nova",
    "nova_restore_network": "OpenStack Nova",
    "project_id": "OpenStack Nova, Cinder or Glance (whole-project backups)",
    "os_trust_id": "OpenStack Nova, Cinder or Glance (trusts)",
    "temp_resource_prefix": "OpenStack Nova or Cinder (temporary servers and volumes)",
}


def _refused_opt(kind, name: str, **kwargs) -> cfg.Opt:
    dest = name.replace("-", "_")
    return kind(name, dest=dest, help=f"Upstream option for {REFUSED[dest]}; refused here.", **kwargs)


OPTS = [
    cfg.StrOpt("command", help="--action exec: shell command to run; its exit status is the result."),
    cfg.BoolOpt("sync", default=True, help="backup: flush file system buffers (sync) before reading."),
    cfg.StrOpt("lvm-srcvol", dest="lvm_srcvol",
               help="--snapshot: logical volume to snapshot, e.g. /dev/vg0/data (default: guessed)."),
    cfg.StrOpt("lvm-snapname", dest="lvm_snapname",
               help="--snapshot: name of the snapshot volume (default: a unique one)."),
    cfg.StrOpt("lvm-snap-perm", dest="lvm_snapperm", default="ro", choices=("ro", "rw"),
               help="--snapshot: create the snapshot read-only (ro) or writable (rw)."),
    cfg.StrOpt("lvm-volgroup", dest="lvm_volgroup",
               help="--snapshot: volume group of --lvm-srcvol (default: guessed)."),
    cfg.StrOpt("max-priority", dest="max_priority",
               help="Run at the highest CPU priority (nice -19) and real-time I/O; any value but "
                    "false/no/0 turns it on."),
    cfg.BoolOpt("low-priority", dest="low_priority", default=False,
                help="Run at the lowest CPU priority (nice 19) and idle I/O class, children included."),
    cfg.StrOpt("upload-limit", dest="upload_limit", default="-1",
               help="Upload at most this many bytes per second (suffix K, M or G); -1: no limit."),
    cfg.StrOpt("download-limit", dest="download_limit", default="-1",
               help="Download at most this many bytes per second (suffix K, M or G); -1: no limit."),
    cfg.BoolOpt("consistency-check", dest="consistency_check", default=False,
                help="backup: record a checksum of the files before the backup; restore: check the "
                     "restored files against the checksum recorded with the backup."),
    cfg.StrOpt("consistency-checksum", dest="consistency_checksum",
               help="restore: fail unless the restored files have this checksum."),
    cfg.BoolOpt("cross-mount-points", dest="cross_mount_points", default=False,
                help="backup: descend into file systems mounted below --path-to-backup "
                     "(default: stay on one file system, as upstream)."),
    cfg.StrOpt("proxy", help="HTTP(S) proxy for s3 and swift (sets HTTP_PROXY and HTTPS_PROXY); "
                             "'' removes any proxy from the environment."),
    cfg.StrOpt("verify-scope", dest="verify_scope", default="chain", choices=("chain", "newest"),
               help="--action verify: every level a restore would apply (chain) or only the newest."),
    cfg.StrOpt("lock-path", dest="lock_path",
               help="Directory for lock files (default: $OSLO_LOCK_PATH): backup and admin hold one per "
                    "backup name there, so two agents never write the same backup at once."),
    cfg.IntOpt("timeout", help="Upstream: seconds to wait on OpenStack services; no effect on file backups."),
    _refused_opt(cfg.StrOpt, "mysql-conf"),
    _refused_opt(cfg.StrOpt, "sql-server-conf"),
    _refused_opt(cfg.IntOpt, "rsync-block-size"),
    _refused_opt(cfg.StrOpt, "cinder-vol-id"),
    _refused_opt(cfg.StrOpt, "cinder-vol-name"),
    _refused_opt(cfg.StrOpt, "cinderbrick-vol-id"),
    _refused_opt(cfg.StrOpt, "cindernative-vol-id"),
    _refused_opt(cfg.StrOpt, "cindernative-backup-id"),
    _refused_opt(cfg.StrOpt, "cindernative-backup-az"),
    _refused_opt(cfg.StrOpt, "cindernative-backup-container"),
    _refused_opt(cfg.IntOpt, "fullbackup-rotation"),
    _refused_opt(cfg.StrOpt, "glance-image-id"),
    _refused_opt(cfg.StrOpt, "glance-image-name"),
    _refused_opt(cfg.StrOpt, "glance-image-name-filter"),
    _refused_opt(cfg.StrOpt, "nova-inst-id"),
    _refused_opt(cfg.StrOpt, "nova-inst-name"),
    _refused_opt(cfg.StrOpt, "nova-restore-network"),
    _refused_opt(cfg.StrOpt, "project-id"),
    _refused_opt(cfg.StrOpt, "os-trust-id"),
    _refused_opt(cfg.StrOpt, "temp-resource-prefix"),
]


def check(conf) -> None:
    """Fail with one line on the first upstream feature this agent does not provide."""
    if MODES.get(conf.mode):
        raise FreezerError(f"--mode {conf.mode} needs {MODES[conf.mode]}, which this agent does not "
                           "back up: use --mode fs")
    if ENGINES.get(conf.engine_name):
        raise FreezerError(f"--engine {conf.engine_name} needs {ENGINES[conf.engine_name]}, which this "
                           "agent does not provide: use --engine tar")
    for dest, what in REFUSED.items():
        if conf[dest] not in (None, ""):
            raise FreezerError(f"--{dest.replace('_', '-')} needs {what}, which this agent does not "
                               "back up: remove it")
    if verbatim(conf, "command") and conf.action != "exec":
        raise FreezerError("--command is only used by --action exec: remove it or add --action exec")
    if conf.timeout is not None:
        LOG.info("--timeout bounds waits on OpenStack services upstream; a file backup has none")


def byte_rate(value: str | int | None, option: str) -> int | None:
    """Bytes per second from ``1048576``, ``512K``, ``10M`` or ``1G``; None for -1 (no limit)."""
    text = str(value if value is not None else "-1").strip().upper()
    factor = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    digits = text[:-1] if factor > 1 else text
    try:
        number = float(digits)
    except ValueError:
        raise FreezerError(f"bad value for {option}: {value!r} (bytes per second, e.g. 500K or 10M)") from None
    if number == -1 and factor == 1:
        return None
    if not math.isfinite(number) or number < 0:
        raise FreezerError(f"bad value for {option}: {value!r}: give bytes per second (e.g. 500K) or -1 for no limit")
    if number * factor < 1:
        raise FreezerError(f"{option} {value} is below 1 byte per second: give -1 for no limit")
    return int(number * factor)


def wants(value: str | None) -> bool:
    """Upstream's ``--max-priority`` takes any value; false, no, off and 0 mean off."""
    return value is not None and value.strip().lower() not in ("", "false", "no", "off", "0", "none")


#: upstream's one-letter options and the long names they stand for
SHORT = {"-F": "--path-to-backup", "-N": "--backup-name", "-m": "--mode", "-e": "--engine",
         "-C": "--container", "-R": "--remove-older-than", "-M": "--max-segment-size"}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "none")


def normalize_argv(argv: list[str]) -> list[str]:
    """Upstream spellings as this agent's: ``-F x`` is ``--path-to-backup x``, and
    ``--snapshot true`` (a value upstream, a flag here) is ``--snapshot``."""
    out: list[str] = []
    pending = list(argv)
    while pending:
        arg = pending.pop(0)
        if arg == "--":
            return out + [arg, *pending]
        if arg in SHORT:
            arg = SHORT[arg]
        if arg in [f"--{dest}" for dest in VERBATIM] and pending:  # read apart, by verbatim_from_argv
            out += [arg, pending.pop(0).replace("$", "")]
            continue
        if any(arg.startswith(f"--{dest}=") for dest in VERBATIM):
            arg = arg.replace("$", "")
        if arg in ("--snapshot", "-s"):
            value = pending[0].lower() if pending else ""
            if value in _TRUE or value in _FALSE:
                pending.pop(0)
            arg = "--nosnapshot" if value in _FALSE else "--snapshot"
        out.append(arg)
    return out


#: options whose text is a shell's: oslo.config would read ``$HOME`` as a reference to an option
VERBATIM = ("command",)


def verbatim_from_argv(argv: list[str]) -> dict[str, str]:
    """The VERBATIM options as written on the command line (the last one wins)."""
    found: dict[str, str] = {}
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        for dest in VERBATIM:
            flag = "--" + dest.replace("_", "-")
            if arg == flag and index + 1 < len(argv):
                found[dest] = argv[index + 1]
            elif arg.startswith(flag + "="):
                found[dest] = arg[len(flag) + 1:]
    return found


def verbatim(conf, dest: str) -> str | None:
    """A VERBATIM option's text, without oslo.config's ``$`` substitution."""
    return getattr(conf, "freezer_verbatim", {}).get(dest)


PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")


def apply_proxy(proxy: str | None, environ: dict | None = None) -> None:
    """``--proxy URL``: s3 and swift go through it (HTTP_PROXY, HTTPS_PROXY); ``--proxy ''`` removes
    every proxy the environment had. Unset: the environment is left as it is."""
    if proxy is None:
        return
    env = os.environ if environ is None else environ
    for name in PROXY_VARIABLES:
        env.pop(name, None)
    value = proxy.strip()
    if not value:
        LOG.info("--proxy '': no proxy for s3 and swift")
        return
    if not value.lower().startswith(("http://", "https://")):
        raise FreezerError(f"--proxy {value}: give an http:// or https:// URL (or '' for no proxy)")
    env["HTTP_PROXY"] = env["HTTPS_PROXY"] = value
    LOG.info("s3 and swift go through the proxy given by --proxy")
