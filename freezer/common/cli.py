"""The command line as a user meets it: one-line errors with "did you mean", and a grouped ``--help``.

The options themselves live in freezer/common/config.py; this module only checks a command line
against them before oslo.config parses it, and lays them out for ``--help``.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import textwrap
from collections.abc import Mapping, Sequence

from oslo_config import cfg, types

from freezer.errors import FreezerError

#: --help groups, in the order shown; options not in HELP_GROUP go to the last one.
GROUPS = (
    "actions", "source", "restore", "storage", "storage: ftp, ftps and sftp", "storage: ssh",
    "storage: s3", "storage: swift", "levels and retention", "compression and encryption", "output",
    "other options",
)
FALLBACK_GROUP = GROUPS[-1]
WIDTH = 100

#: option name -> --help group. The one table to extend; an option missing here is still shown.
HELP_GROUP = {
    "action": "actions", "config": "actions", "dry-run": "actions",
    "path-to-backup": "source", "backup-name": "source", "hostname": "source", "mode": "source",
    "engine": "source", "exclude": "source", "dereference-symlink": "source", "snapshot": "source",
    "lvm-snapsize": "source", "lvm-dirmount": "source",
    "restore-abs-path": "restore", "restore-from-date": "restore", "overwrite": "restore",
    "storage": "storage", "container": "storage", "max-segment-size": "storage", "storage-retry-time": "storage",
    "ftp-host": "storage: ftp, ftps and sftp", "ftp-port": "storage: ftp, ftps and sftp",
    "ftp-username": "storage: ftp, ftps and sftp", "ftp-password": "storage: ftp, ftps and sftp",
    "ftp-password-file": "storage: ftp, ftps and sftp", "ftp-implicit-tls": "storage: ftp, ftps and sftp",
    "ftp-cacert": "storage: ftp, ftps and sftp", "ftp-insecure": "storage: ftp, ftps and sftp",
    "ftp-keyfile": "storage: ftp, ftps and sftp", "ftp-certfile": "storage: ftp, ftps and sftp",
    "ftp-active": "storage: ftp, ftps and sftp", "ftp-timeout": "storage: ftp, ftps and sftp",
    "ftp-known-hosts": "storage: ftp, ftps and sftp", "ftp-host-key-policy": "storage: ftp, ftps and sftp",
    "ssh-host": "storage: ssh", "ssh-port": "storage: ssh", "ssh-username": "storage: ssh",
    "ssh-key": "storage: ssh", "ssh-key-passphrase-file": "storage: ssh", "ssh-password": "storage: ssh",
    "ssh-password-file": "storage: ssh", "ssh-known-hosts": "storage: ssh",
    "ssh-host-key-policy": "storage: ssh", "ssh-timeout": "storage: ssh",
    "access-key": "storage: s3", "secret-key": "storage: s3", "secret-key-file": "storage: s3",
    "endpoint": "storage: s3", "region": "storage: s3", "s3-cacert": "storage: s3", "s3-timeout": "storage: s3",
    "os-auth-url": "storage: swift", "os-username": "storage: swift", "os-password": "storage: swift",
    "os-password-file": "storage: swift", "os-project-name": "storage: swift",
    "os-project-domain-name": "storage: swift", "os-user-domain-name": "storage: swift",
    "os-region-name": "storage: swift", "os-identity-api-version": "storage: swift",
    "os-cacert": "storage: swift", "insecure": "storage: swift",
    "incremental": "levels and retention", "no-incremental": "levels and retention",
    "max-level": "levels and retention", "always-level": "levels and retention",
    "restart-always-level": "levels and retention", "remove-older-than": "levels and retention",
    "remove-from-date": "levels and retention", "remove-incomplete-after": "levels and retention",
    "compression": "compression and encryption", "encrypt-pass-file": "compression and encryption",
    "auth-key-file": "compression and encryption", "allow-unauthenticated": "compression and encryption",
    "log-file": "output", "metadata-out": "output", "quiet": "output", "debug": "output",
}

USAGE = """\
usage: freezer-agent --action ACTION --storage STORAGE --container DIR [options]

Back up a directory to local disk, ssh/sftp, ftp/ftps, s3 or swift as GNU tar incremental levels;
restore, list (info), prune (admin) and check (verify) them, or run a command as a job step (exec).
"""

#: what each action needs, for --help; test_cli checks that every name in config.ACTIONS has a line
REQUIRED = {
    "backup": "--path-to-backup PATH --backup-name NAME --storage STORAGE --container DIR",
    "restore": "--restore-abs-path DIR --backup-name NAME --storage STORAGE --container DIR",
    "info": "--storage STORAGE --container DIR (with --backup-name: that backup's levels;\n"
            "without: every backup in the container)",
    "admin": "--backup-name NAME --storage STORAGE --container DIR and\n"
             "--remove-older-than DAYS or --remove-from-date DATE",
    "exec": "--command CMD (a shell command; no storage)",
    "verify": "--backup-name NAME --storage STORAGE --container DIR (reads the chain, writes nothing)",
}

FOOTER = """\
general:
  -h, --help            show this help and exit
  --version             show the version and exit

exit codes:
  0    done
  1    done with warnings (e.g. unreadable files left out of the backup)
  2    failed (one "freezer-agent: error: ..." line on stderr says why)
  130  interrupted by SIGINT (Ctrl-C);  143  stopped by SIGTERM

examples:
  freezer-agent --action backup --storage local --container /srv/backups \\
      --backup-name etc --path-to-backup /etc --compression zstd
  freezer-agent --action backup --storage ftps --ftp-host backup.example.com \\
      --ftp-username agent --ftp-password-file ~/.ftp-pass --container backups \\
      --backup-name home --path-to-backup /home
  freezer-agent --action restore --storage local --container /srv/backups \\
      --backup-name etc --restore-abs-path /tmp/etc --restore-from-date 2026-11-24T23:00:00
  freezer-agent --action info --storage local --container /srv/backups
  freezer-agent --action admin --storage local --container /srv/backups --backup-name etc \\
      --remove-older-than 30
"""

#: value names in --help where the option's name says too little
METAVAR = {
    "path-to-backup": "PATH", "restore-abs-path": "DIR", "container": "DIR", "metadata-out": "FILE",
    "access-key": "ID", "secret-key": "KEY", "ssh-key": "FILE", "exclude": "PATTERN", "endpoint": "URL",
    "lock-path": "DIR",
}

#: options oslo.config adds itself
BUILT_IN = ("--config-file", "--config-dir")


class UsageError(FreezerError):
    """The command line itself is wrong: a bad value, an unknown option, a missing value."""

    exit_code = 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line) instead of printing usage and exiting."""

    def error(self, message: str):
        raise UsageError(explain(message, known_flags(self)))


def known_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def wants_help(argv: Sequence[str]) -> bool:
    """``-h`` or ``--help`` before any ``--``."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def check(argv: Sequence[str], opts: Sequence[cfg.Opt]) -> None:
    """Raise UsageError naming the first problem of the command line: unknown option, bad value."""
    parser = _Parser(prog="freezer-agent", add_help=False)
    for opt in opts:
        flags = [f"--{opt.name}"] + ([f"-{opt.short}"] if opt.short else [])
        flags += [f"--{old.name}" for old in opt.deprecated_opts if old.name and old.name != opt.name]
        if isinstance(opt, cfg.BoolOpt):
            parser.add_argument(*flags, action="store_true")
            parser.add_argument(f"--no{opt.name}", action="store_true")
        else:
            parser.add_argument(*flags, type=_checker(opt), action="append")
    for flag in BUILT_IN:
        parser.add_argument(flag, action="append")
    parser.add_argument("--version", action="store_true")
    parser.parse_args(list(argv))


def _checker(opt: cfg.Opt):
    """An argparse ``type`` that accepts what the option's oslo type accepts, with a clear message."""
    def convert(value: str):
        try:
            converted = opt.type(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise argparse.ArgumentTypeError(why_invalid(opt.type, value, exc)) from exc
        if isinstance(converted, float) and not math.isfinite(converted):
            raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a finite number")
        return converted
    convert.__name__ = opt.name
    return convert


def why_invalid(kind, value: str, exc: Exception) -> str:
    """Why ``value`` is refused, in words: the kind expected, or the bound it breaks."""
    if isinstance(kind, types.Port):
        expected = "a port number (0-65535)"
    elif isinstance(kind, types.Integer):
        expected = "a whole number"
    elif isinstance(kind, types.Float):
        expected = "a number"
    elif getattr(kind, "choices", None):
        expected = "one of " + ", ".join(repr(c) for c in kind.choices if c)
    else:
        expected = "a valid value"
    detail = str(exc).strip().rstrip(".")
    if re.search(r"greater than|less than|range", detail, re.I):
        return f"invalid value {value!r}: {detail[0].lower()}{detail[1:]}"
    return f"invalid value {value!r}: expected {expected}"


def explain(message: str, flags: Sequence[str]) -> str:
    """argparse's message as one line naming the option with dashes, with a "did you mean"."""
    if message.startswith("unrecognized arguments:"):
        words = message.split(":", 1)[1].split()
        unknown = next((w for w in words if w.startswith("-")), None)
        if unknown is None:
            return f"unexpected argument {words[0]!r}: options start with -- (see --help)"
        name = unknown.split("=", 1)[0]
        close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else " (see --help)"
        return f"unknown option {name}{hint}"
    match = re.match(r"argument ([^:]+): (.*)", message)
    if match:
        option = match.group(1).split("/")[0]
        detail = match.group(2)
        if detail == "expected one argument":
            return f"{option} needs a value"
        if detail.startswith("invalid ") and " value: " in detail:
            detail = detail.split(" value: ", 1)[1]
        return f"{option}: {detail}"
    return message


def help_text(opts: Sequence[cfg.Opt], names: Mapping[str, Sequence[str]]) -> str:
    """``--help``: what each action requires, options by group, exit codes, examples.

    ``names`` maps an option to the values it takes (``action`` -> config.ACTIONS), kept in config.py.
    """
    grouped: dict[str, list[cfg.Opt]] = {group: [] for group in GROUPS}
    for opt in opts:
        grouped[HELP_GROUP.get(opt.name, FALLBACK_GROUP)].append(opt)
    metavars = {**METAVAR, **{name: "{" + ",".join(values) + "}" for name, values in names.items()}}
    sections = [USAGE + "\n" + _required(names.get("action", ()))]
    for group, members in grouped.items():
        if members:
            sections.append(f"{group}:\n" + "\n".join(_entry(opt, metavars) for opt in members) + "\n")
    sections.append(FOOTER)
    return "\n".join(sections)


def _required(actions: Sequence[str]) -> str:
    """The "required, by action" block, one entry per action in ``actions``."""
    lines = ["required, by action:"]
    for action in actions:
        first, *more = REQUIRED.get(action, "").split("\n")
        lines.append(f"  {action:<9} {first}".rstrip())
        lines += [f"{'':12}{line}" for line in more]
    return "\n".join(lines) + "\n"


def _entry(opt: cfg.Opt, metavars: Mapping[str, str]) -> str:
    flags = (f"-{opt.short}, " if opt.short else "") + f"--{opt.name}"
    if not isinstance(opt, cfg.BoolOpt):
        flags += f" {metavars.get(opt.name) or _metavar(opt)}"
    text = opt.help or ""
    if opt.default not in (None, "", [], False) and not isinstance(opt, cfg.BoolOpt) and opt.name != "hostname":
        text += f" (default: {opt.default})"
    body = textwrap.wrap(text, width=WIDTH - 24) or [""]
    first = [f"  {flags}", f"{'':24}{body[0]}"] if len(flags) > 20 else [f"  {flags:<22}{body[0]}"]
    return "\n".join(first + [f"{'':24}{more}" for more in body[1:]])


def _metavar(opt: cfg.Opt) -> str:
    choices = [c for c in (getattr(opt.type, "choices", None) or ()) if c]
    if choices:
        return "{" + ",".join(choices) + "}"
    if isinstance(opt.type, types.Port):
        return "PORT"
    if isinstance(opt.type, (types.Integer, types.Float)):
        return "N"
    if opt.name.endswith(("-file", "cacert", "keyfile", "certfile", "known-hosts", "config")):
        return "FILE"
    return opt.name.rsplit("-", 1)[-1].upper()
