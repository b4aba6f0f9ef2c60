"""freezer-scheduler's settings: upstream's config file (``[scheduler]``, ``[service_auth]``,
``[capabilities]``, old names in ``[DEFAULT]``) read with oslo.config, then the command line on top."""

from __future__ import annotations

import argparse
import os

from oslo_config import cfg

from freezer import __version__
from freezer.common.config import ACTIONS, STORAGES
from freezer.errors import FreezerError

DEFAULT_JOBS_DIR = os.environ.get("FREEZER_SCHEDULER_CONF_D", "/etc/freezer/scheduler/conf.d")
# freezer-api 19.0.0 refuses a client that lists a storage it does not know (sftp): upstream's list.
API_STORAGES = ("local", "swift", "ssh", "s3", "ftp", "ftps")
#: [capabilities] left unset, with freezer-api: jobs from the API may not run commands unless the
#: operator lists exec, and only storages freezer-api 19 knows are registered.
CAPABILITIES = {
    "supported_actions": ("backup", "restore", "info", "admin"),
    "supported_modes": ("fs",),
    "supported_storages": API_STORAGES,
    "supported_engines": ("tar",),
}
#: ... and with local job files (--no-api), written by this host's administrator: all the agent does.
#: A list given in [capabilities] holds in both modes.
LOCAL_CAPABILITIES = {**CAPABILITIES, "supported_actions": ACTIONS, "supported_storages": STORAGES}
SERVICE_AUTH = ("auth_url", "username", "password", "project_id", "project_name", "project_domain_id",
                "project_domain_name", "user_domain_id", "user_domain_name", "backup_url", "region_name",
                "token", "endpoint_type", "cert", "cacert")


def _old(name: str) -> list[cfg.DeprecatedOpt]:
    return [cfg.DeprecatedOpt(name, group="DEFAULT")]


SCHEDULER_OPTS = [
    cfg.StrOpt("client-id", dest="client_id", deprecated_opts=_old("client-id")),
    cfg.BoolOpt("no-api", dest="no_api", default=False, deprecated_opts=_old("no-api")),
    cfg.StrOpt("jobs-dir", dest="jobs_dir", default=DEFAULT_JOBS_DIR, deprecated_opts=_old("conf")),
    cfg.IntOpt("interval", dest="interval", default=60, deprecated_opts=_old("interval")),
    cfg.BoolOpt("no-daemon", dest="no_daemon", default=False, deprecated_opts=_old("no-daemon")),
    cfg.BoolOpt("insecure", dest="insecure", default=False),
    cfg.BoolOpt("disable-exec", dest="disable_exec", default=False, deprecated_opts=_old("disable-exec")),
    cfg.IntOpt("concurrent-jobs", dest="concurrent_jobs", default=1, deprecated_opts=_old("concurrent_jobs")),
]
CAPABILITY_OPTS = [cfg.ListOpt(name.replace("_", "-"), dest=name) for name in CAPABILITIES]
# upstream reads these keys as os_auth_url, os_username, ... (the options' dest names)
SERVICE_AUTH_OPTS = [cfg.StrOpt(name.replace("_", "-"), dest=f"os_{name}",
                                default=os.environ.get(f"OS_{name.upper()}") or None)
                     for name in SERVICE_AUTH]


def read_config_files(paths: list[str]) -> cfg.ConfigOpts:
    """The settings of upstream's scheduler.conf files (later files win)."""
    for path in paths:
        if not os.path.isfile(path):
            raise FreezerError(f"--config-file {path} does not exist")
    conf = cfg.ConfigOpts()
    conf.register_opts(SCHEDULER_OPTS, group="scheduler")
    conf.register_opts(CAPABILITY_OPTS, group="capabilities")
    conf.register_opts(SERVICE_AUTH_OPTS, group="service_auth")
    try:
        conf(args=[], project="freezer-scheduler", default_config_files=paths)
    except cfg.Error as exc:
        raise FreezerError(f"--config-file: {exc}") from exc
    return conf


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="freezer-scheduler",
                                description="Run freezer jobs from freezer-api or from a directory of job files.")
    p.add_argument("command", choices=("start", "stop", "restart", "status", "reload", "run-once"))
    p.add_argument("--config-file", action="append", default=[],
                   help="upstream's scheduler.conf ([scheduler], [service_auth], [capabilities])")
    p.add_argument("--no-api", "-n", action="store_true", default=None,
                   help="read jobs from --jobs-dir instead of freezer-api")
    p.add_argument("--jobs-dir", "-f", "--conf", help="*.json job documents (--no-api), or job copies")
    p.add_argument("--client-id", "-c", help="this host's client id in freezer-api (default project_hostname)")
    p.add_argument("--interval", "-i", type=int, help="seconds between polls of freezer-api (default 60)")
    p.add_argument("--no-daemon", action="store_true", default=None, help="start in the foreground")
    p.add_argument("--insecure", action="store_true", default=None, help="do not verify freezer-api's certificate")
    p.add_argument("--disable-exec", action="store_true", default=None,
                   help="refuse exec actions of jobs (they fail without running)")
    p.add_argument("--concurrent-jobs", type=int, help="accepted; jobs run one at a time")
    p.add_argument("--poll", type=float, default=30.0, help="--no-api: seconds between looks at the jobs")
    p.add_argument("--pid-file", default="/run/freezer-scheduler.pid")
    p.add_argument("--log-file")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Command line over config file: one namespace with every setting, capabilities and auth included."""
    args = parser().parse_args(argv)
    conf = read_config_files(args.config_file)
    for opt in SCHEDULER_OPTS:
        if getattr(args, opt.dest, None) is None:
            setattr(args, opt.dest, conf.scheduler[opt.dest])
    defaults = LOCAL_CAPABILITIES if args.no_api else CAPABILITIES
    args.capabilities = {name: list(conf.capabilities[name] if conf.capabilities[name] is not None else default)
                         for name, default in defaults.items()}
    args.service_auth = {opt.dest: conf.service_auth[opt.dest] for opt in SERVICE_AUTH_OPTS}
    unknown = set(args.capabilities["supported_storages"]) - set(STORAGES)
    if unknown:
        raise FreezerError(f"[capabilities] supported_storages: unknown storage {', '.join(sorted(unknown))}")
    return args
