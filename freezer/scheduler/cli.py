"""freezer-scheduler: run job documents from a directory, without an API server.

``freezer-scheduler --no-api --jobs-dir DIR [--no-daemon] start|stop|status|run-once``
Each ``*.json`` file is a job; its state is kept beside it in ``<file>.state``.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from freezer.common import logs
from freezer.scheduler import jobdoc, runner, schedule
from freezer.storage.base import FreezerError

LOG = logging.getLogger("freezer.scheduler")


def job_files(jobs_dir: str) -> list[str]:
    """The job documents of a directory, in name order."""
    if not os.path.isdir(jobs_dir):
        raise FreezerError(f"--jobs-dir {jobs_dir} is not a directory")
    return sorted(glob.glob(os.path.join(jobs_dir, "*.json")))


def read_state(path: str) -> dict:
    try:
        with open(path + ".state", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_state(path: str, state: dict) -> None:
    """Write the state beside the job, atomically, so a restart carries on."""
    temp = path + ".state.tmp"
    with open(temp, "w", encoding="utf-8") as out:
        json.dump(state, out, indent=2, sort_keys=True)
    os.replace(temp, path + ".state")


def run_job_file(path: str, job: dict) -> bool:
    """Run one job now, record its state, and say whether every action completed."""
    started = time.time()
    results = runner.run_job(job)
    ok = all(r.status == "completed" for r in results)
    state = read_state(path)
    state.update({"last_run": started, "status": "completed" if ok else "failed",
                  "runs": state.get("runs", 0) + 1, "actions": [dataclasses.asdict(r) for r in results]})
    write_state(path, state)
    LOG.warning("job %s %s", os.path.basename(path), state["status"]) if not ok else \
        LOG.info("job %s completed", os.path.basename(path))
    return ok


def load_all(paths: Sequence[str]) -> dict[str, dict]:
    """Validate every job before any runs; raise listing every bad file."""
    jobs, problems = {}, []
    for path in paths:
        try:
            jobs[path] = jobdoc.load(path)
        except FreezerError as exc:
            problems.append(str(exc))
    if problems:
        raise FreezerError("; ".join(problems))
    return jobs


def run_once(jobs_dir: str) -> int:
    """Run every job in the directory now, in order; non-zero if any action failed."""
    jobs = load_all(job_files(jobs_dir))
    if not jobs:
        raise FreezerError(f"no *.json job files in --jobs-dir {jobs_dir}")
    results = [run_job_file(path, job) for path, job in jobs.items()]
    return 0 if all(results) else 1


def serve(jobs_dir: str, poll: float) -> int:
    """Run jobs when due until SIGTERM; bad job files are reported and skipped."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        for path in job_files(jobs_dir):
            try:
                job = jobdoc.load(path)
                due = schedule.next_run(job.get("job_schedule"), read_state(path).get("last_run"), time.time())
            except FreezerError as exc:
                LOG.error("%s", exc)
                continue
            if due is not None and due <= time.time():
                run_job_file(path, job)
        time.sleep(poll)
    return 0


def status(jobs_dir: str) -> int:
    """Print each job's last result and next run."""
    for path in job_files(jobs_dir):
        state = read_state(path)
        try:
            job = jobdoc.load(path)
            due = schedule.next_run(job.get("job_schedule"), state.get("last_run"), time.time())
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(due)) if due else "never"
        except FreezerError as exc:
            when = f"invalid: {exc}"
        print(f"{os.path.basename(path)}: last {state.get('status', 'never run')}, next {when}")
    return 0


def start_daemon(args: argparse.Namespace) -> int:
    """Start ``serve`` in a new session and record its pid."""
    argv = [sys.executable, "-m", "freezer.scheduler.cli", "--no-api", "--jobs-dir", args.jobs_dir,
            "--no-daemon", "--poll", str(args.poll), "--pid-file", args.pid_file, "start"]
    if args.log_file:
        argv[3:3] = ["--log-file", args.log_file]
    proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(args.pid_file, "w") as out:
        out.write(str(proc.pid))
    print(f"freezer-scheduler started, pid {proc.pid}")
    return 0


def stop(pid_file: str) -> int:
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError) as exc:
        raise FreezerError(f"no running scheduler found from --pid-file {pid_file}: {exc}") from exc
    os.remove(pid_file)
    print(f"freezer-scheduler stopped, pid {pid}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="freezer-scheduler", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("start", "stop", "status", "run-once"))
    p.add_argument("--no-api", action="store_true", help="read jobs from --jobs-dir (the only mode here)")
    p.add_argument("--jobs-dir", "-f", required=True, help="directory of *.json job documents")
    p.add_argument("--no-daemon", action="store_true", help="start in the foreground")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between looks at the jobs")
    p.add_argument("--pid-file", default="/run/freezer-scheduler.pid")
    p.add_argument("--log-file")
    p.add_argument("--debug", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.log_file, args.debug, False, [])
    try:
        if not args.no_api:
            raise FreezerError("only local job files are supported: add --no-api")
        if args.command == "run-once":
            return run_once(args.jobs_dir)
        if args.command == "status":
            return status(args.jobs_dir)
        if args.command == "stop":
            return stop(args.pid_file)
        load_all(job_files(args.jobs_dir))
        return serve(args.jobs_dir, args.poll) if args.no_daemon else start_daemon(args)
    except FreezerError as exc:
        print(f"freezer-scheduler: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
