"""freezer-agent: options -> storage (factory) -> job -> result."""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
from collections.abc import Sequence

from oslo_config import cfg

from freezer import job
from freezer.common import config, logs
from freezer.storage.base import FreezerError, Storage

LOG = logging.getLogger("freezer")

# --storage name -> "module:function" building the driver from the options.
STORAGES = {
    "local": "freezer.storage.local:from_conf",
    "ftp": "freezer.storage.ftp:ftp_from_conf",
    "ftps": "freezer.storage.ftp:ftps_from_conf",
    "sftp": "freezer.storage.sftp:sftp_from_conf",
    "ssh": "freezer.storage.sftp:ssh_from_conf",
    "s3": "freezer.storage.s3:from_conf",
    "swift": "freezer.storage.swift:from_conf",
}


def make_storage(conf: cfg.ConfigOpts) -> Storage:
    """Build the driver named by ``--storage``, wrapped with retries."""
    if not conf.storage:
        raise FreezerError(f"--storage is required: choose one of {', '.join(STORAGES)}")
    if conf.storage not in STORAGES:
        raise FreezerError(f"unknown --storage {conf.storage!r}: choose one of {', '.join(STORAGES)}")
    if not conf.container:
        raise FreezerError("--container is required: the directory on the storage that holds backups")
    module_name, function = STORAGES[conf.storage].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FreezerError(f"--storage {conf.storage} is not available in this build ({exc.name} missing)") from exc
    return getattr(module, function)(conf)


def run(conf: cfg.ConfigOpts) -> dict:
    """Run the action of ``conf`` and return its result document."""
    storage = make_storage(conf)
    try:
        if conf.snapshot and conf.action == "backup" and not conf.dry_run:
            from freezer import snapshot

            with snapshot.of_path(conf) as mounted:
                return job.BackupJob(conf, storage, read_from=mounted.path,
                                     before_commit=mounted.check_intact).run()
        return job.JOBS[conf.action](conf, storage).run()
    finally:
        storage.close()


def write_result(result: dict, destination: str | None, action: str) -> None:
    """Print the result: JSON to ``--metadata-out``, a short summary otherwise."""
    text = json.dumps(result, indent=2, sort_keys=True)
    if destination == "-":
        print(text)
    elif destination:
        with open(destination, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    if action == "info" and destination != "-":
        print(info_table(result.get("backups", []), result.get("incomplete", [])))


def info_table(rows: list[dict], incomplete: Sequence[dict] = ()) -> str:
    """A plain table of chains, levels, dates and sizes; backups that never completed are marked so."""
    header = f"{'chain':<20} {'level':>5} {'date':<20} {'size':>14}  compression  encrypted"
    lines = [header, "-" * len(header)]
    from freezer.common import dates

    for row in rows:
        lines.append(f"{dates.show(row['l0_time_stamp']):<20} {row['level']:>5} {row['date']:<20} "
                     f"{row['size'] if row['size'] is not None else '?':>14}  {row['compression'] or '?':<11}  "
                     f"{'yes' if row['encryption'] else 'no'}")
    for row in incomplete:
        lines.append(f"{dates.show(row['l0_time_stamp']):<20} {row['level']:>5} {row['date']:<20} "
                     f"{'-':>14}  incomplete (no metadata: running, or left by a failed backup)")
    if not rows and not incomplete:
        lines.append("(no backups)")
    return "\n".join(lines)


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
    mask = logs.SecretMask([])
    debug = "--debug" in argv or "-d" in argv
    try:
        conf = config.build(argv)
        mask = logs.setup(conf.log_file, conf.debug, conf.quiet, config.secret_values(conf))
        result = run(conf)
        write_result(result, conf.metadata_out, conf.action)
        return 0
    except FreezerError as exc:
        return _fail(mask.mask(str(exc)), exc.exit_code, debug)
    except KeyboardInterrupt:
        return _fail("interrupted: nothing was recorded, earlier backups are untouched", 130, debug)
    except OSError as exc:
        return _fail(mask.mask(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"), 1, debug)
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        return _fail(mask.mask(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)"), 1, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        LOG.exception("%s", message)
    print(f"freezer-agent: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
