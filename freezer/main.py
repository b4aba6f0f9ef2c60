"""freezer-agent: options -> storage (built by storage/registry.py) -> job -> result."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from oslo_config import cfg

from freezer import job
from freezer.actions import lock, priority, summary
from freezer.common import cli, config, logs, settings, upstream
from freezer.errors import FreezerError, reason
from freezer.storage import registry
from freezer.storage.base import Storage

LOG = logging.getLogger("freezer")

# Exit codes (documented in --help and doc/source/user-guide.rst).
DONE, DONE_WITH_WARNINGS, FAILED = 0, 1, 2
ON_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def make_storage(conf: cfg.ConfigOpts) -> Storage:
    """Build the driver named by ``--storage``, wrapped with retries (freezer/storage/registry.py)."""
    return registry.build(conf)


def run(conf: cfg.ConfigOpts) -> dict:
    """Run the action of ``conf`` and return its result document."""
    if conf.action == "exec":  # a job step: no storage involved
        from freezer.actions import exec_action

        return exec_action.run(conf)
    with lock.held(conf):  # --lock-path: one writer per backup name
        return _run_on_storage(conf)


def _run_on_storage(conf: cfg.ConfigOpts) -> dict:
    """Run a storage action (all but exec) against the storage ``--storage`` names."""
    storage = make_storage(conf)
    try:
        if conf.snapshot and conf.action == "backup" and not conf.dry_run:
            from freezer.actions import snapshot

            with snapshot.of_path(conf) as mounted:
                return job.job_class("backup")(conf, storage, read_from=mounted.path,
                                                     before_commit=mounted.check_intact).run()
        if conf.action == "verify":
            from freezer.actions import verify

            return verify.VerifyJob(conf, storage).run()
        return job.job_class(conf.action)(conf, storage).run()
    finally:
        storage.close()


def write_result(result: dict, destination: str | None, action: str, quiet: bool = False) -> None:
    """The result: JSON to ``--metadata-out``, the info table to stdout, a summary to stderr and the log."""
    text = json.dumps(result, indent=2, sort_keys=True)
    if destination == "-":
        print(text)
    elif destination:
        with open(destination, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    if action == "info" and destination != "-":
        if "names" in result:
            print(summary.names_table(result["names"]))
        else:
            print(info_table(result.get("backups", []), result.get("incomplete", [])))
    for line in summary.lines(result):
        logs.to_log_file(line.strip(), logging.INFO)
        if not quiet:
            print(line, file=sys.stderr)


def exit_code(result: dict) -> int:
    """0 when done, 1 when done with warnings (files left out of a backup)."""
    return DONE_WITH_WARNINGS if result.get("warnings") else DONE


def info_table(rows: list[dict], incomplete: Sequence[dict] = ()) -> str:
    """A plain table of chains, levels, dates and sizes; backups that never completed are marked so."""
    header = f"{'chain':<20} {'level':>5} {'date':<20} {'size':>14}  compression  encrypted"
    lines = [header, "-" * len(header)]
    from freezer.common import dates

    for row in rows:
        line = (f"{dates.show(row['l0_time_stamp']):<20} {row['level']:>5} {row['date']:<20} "
                f"{row['size'] if row['size'] is not None else '?':>14}  ")
        if row.get("unreadable"):
            lines.append(line + f"UNREADABLE: {row['unreadable']}")
        else:
            lines.append(line + f"{row['compression'] or '?':<11}  {'yes' if row['encryption'] else 'no'}")
    for row in incomplete:
        lines.append(f"{dates.show(row['l0_time_stamp']):<20} {row['level']:>5} {row['date']:<20} "
                     f"{'-':>14}  incomplete (no metadata: running, or left by a failed backup)")
    if not rows and not incomplete:
        lines.append("(no backups)")
    return "\n".join(lines)


def check_destinations(conf: cfg.ConfigOpts) -> None:
    """Fail before any work when ``--metadata-out`` or ``--log-file`` cannot be written."""
    if conf.metadata_out and conf.metadata_out != "-":
        check_writable("--metadata-out", conf.metadata_out)
    if conf.log_file:
        check_writable("--log-file", conf.log_file)


def check_writable(option: str, path: str) -> None:
    """One line naming ``option`` when ``path`` could not be created or written."""
    if os.path.isdir(path):
        raise FreezerError(f"{option} {path} is a directory: give a file name")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise FreezerError(f"{option} {path} is not writable")
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FreezerError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise FreezerError(f"{option} {path}: directory {directory} is not writable")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def catch_signals() -> None:
    """SIGINT and SIGTERM interrupt the job cleanly, even when started with SIGINT ignored (cron, &)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``freezer-agent``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    catch_signals()
    logs.quiet_background_errors()
    mask = logs.SecretMask([])
    debug = "--debug" in argv or "-d" in argv
    if cli.wants_help(argv):
        print(config.help_text())
        return DONE
    # until the options are read, warnings (e.g. unknown keys in --config) reach stderr with the same prefix
    logs.setup(None, debug, "--quiet" in argv or "-q" in argv, [])
    try:
        conf = settings.load(argv)  # options, [storage:NAME] sections and secrets, read once
        check_destinations(conf)
        mask = logs.setup(conf.log_file, conf.debug, conf.quiet, config.secret_values(conf))
        priority.apply(conf)
        upstream.apply_proxy(conf.proxy)
        result = run(conf)
        write_result(result, conf.metadata_out, conf.action, conf.quiet)
        return exit_code(result)
    except FreezerError as exc:
        return _fail(mask.mask(str(exc)), exc.exit_code, debug)
    except KeyboardInterrupt as exc:
        signal_name = exc.args[0] if exc.args else "SIGINT"
        what = "stopped by SIGTERM" if signal_name == "SIGTERM" else "interrupted"
        return _fail(f"{what}: nothing was recorded, earlier backups are untouched", ON_SIGNAL.get(signal_name, 130),
                     debug)
    except OSError as exc:
        return _fail(mask.mask(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or reason(exc)}"),
                     FAILED, debug)
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        return _fail(mask.mask(f"unexpected {type(exc).__name__}: {reason(exc)} (run with --debug for details)"),
                     FAILED, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    """The one error line on stderr, also in ``--log-file``; returns ``code``."""
    if debug:
        LOG.exception("%s", message)
    else:
        logs.to_log_file(f"error: {message}")
    print(f"freezer-agent: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
