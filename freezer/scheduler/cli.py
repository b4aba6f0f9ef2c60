"""freezer-scheduler: run jobs from freezer-api, or job documents from a directory.

``freezer-scheduler --config-file scheduler.conf [--no-daemon] start|stop|status`` polls freezer-api
(freezer/scheduler/daemon.py). ``freezer-scheduler --no-api --jobs-dir DIR [--no-daemon]
start|stop|status|run-once`` runs local files: each ``*.json`` file is a job; its state is kept
beside it in ``<file>.state``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from freezer.common import logs
from freezer.errors import FreezerError
from freezer.scheduler import files, jobdoc, options, runner, schedule

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
    """Write the state beside the job, atomically and 0600, so a restart carries on."""
    files.write_private(path + ".state", json.dumps(state, indent=2, sort_keys=True))


def run_job_file(path: str, job: dict, sleep: Callable[[float], None] = time.sleep, allow_exec: bool = True) -> bool:
    """Run one prepared job now, record its state, and say whether every action completed."""
    started = time.time()
    results = runner.run_job(job, sleep=sleep, allow_exec=allow_exec)
    ok = all(r.status in runner.DONE for r in results)
    warned = any(r.status == "completed_with_warnings" for r in results)
    state = read_state(path)
    state.pop("error", None)
    status = ("completed_with_warnings" if warned else "completed") if ok else "failed"
    state.update({"last_run": started, "status": status,
                  "runs": state.get("runs", 0) + 1, "actions": [dataclasses.asdict(r) for r in results]})
    write_state(path, state)
    LOG.warning("job %s %s", os.path.basename(path), status) if not ok or warned else \
        LOG.info("job %s completed", os.path.basename(path))
    return ok


@dataclasses.dataclass
class Policy:
    """What this host lets a job do: its ``[capabilities]`` and ``--disable-exec``."""

    capabilities: dict
    allow_exec: bool = True


def load_job(path: str, policy: Policy) -> dict:
    """The prepared job of ``path``, refused (FreezerError) if it is invalid or outside ``policy``."""
    job = jobdoc.load(path)
    why = jobdoc.refusal(job, policy.capabilities, policy.allow_exec)
    if why:
        raise FreezerError(f"{_label(path, job)}: {why}")
    return job


def _label(path: str, job: dict) -> str:
    return f"{path} (job {job['job_id']})" if job.get("job_id") else path


def skip_invalid(path: str, error: FreezerError, every_time: bool = True) -> None:
    """Report a job file that cannot run (log and its state file); the other jobs go on.

    A daemon reports the same problem of the same file once, not at every look.
    """
    state = read_state(path)
    repeated = state.get("status") == "invalid" and state.get("error") == str(error)
    (LOG.error if every_time or not repeated else LOG.debug)("%s: job skipped", error)
    if repeated:
        return
    state.update({"status": "invalid", "error": str(error)})
    write_state(path, state)


def run_once(jobs_dir: str, policy: Policy) -> int:
    """Run every job in the directory now, in order; bad files are skipped; non-zero if any failed."""
    paths = job_files(jobs_dir)
    if not paths:
        raise FreezerError(f"no *.json job files in --jobs-dir {jobs_dir}")
    ok = True
    for path in paths:
        try:
            job = load_job(path, policy)
        except FreezerError as exc:
            skip_invalid(path, exc)
            ok = False
            continue
        ok = run_job_file(path, job, allow_exec=policy.allow_exec) and ok
    return 0 if ok else 1


def serve(jobs_dir: str, poll: float, pid_file: str, policy: Policy) -> int:
    """Run jobs when due until SIGTERM; bad job files are reported and skipped."""
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    write_pid(pid_file)
    LOG.info("freezer-scheduler serving %s, pid %d", jobs_dir, os.getpid())
    try:
        while not stopping:
            run_due_jobs(jobs_dir, stopping, policy)
            pause(poll, stopping)
    except Stopping:
        LOG.info("stopped while waiting to retry; the job runs again at the next start")
    finally:
        with contextlib.suppress(OSError):
            os.remove(pid_file)
    LOG.info("freezer-scheduler stopped")
    return 0


class Stopping(Exception):
    """SIGTERM arrived while a job waited between retries."""


def run_due_jobs(jobs_dir: str, stopping: list[bool], policy: Policy) -> None:
    """Run each job whose next run has come; report bad files and go on."""
    for path in job_files(jobs_dir):
        try:
            job = load_job(path, policy)
            due = next_run(path, job)
        except FreezerError as exc:
            skip_invalid(path, exc, every_time=False)
            continue
        except Exception as exc:  # noqa: BLE001 - a bug in one job's handling must not stop the others
            LOG.error("%s: unexpected %s: %s: job skipped", path, type(exc).__name__, exc)
            continue
        if due is not None and due <= time.time() and not stopping:
            run_job_file(path, job, sleep=lambda seconds: _retry_pause(seconds, stopping),
                         allow_exec=policy.allow_exec)


def next_run(path: str, job: dict) -> float | None:
    """When the job of ``path`` is due next (None: never again); a bad schedule names the file."""
    try:
        return schedule.next_run(job.get("job_schedule"), read_state(path).get("last_run"), time.time())
    except FreezerError as exc:
        raise FreezerError(f"{_label(path, job)}: job_schedule: {exc}") from None


def _retry_pause(seconds: float, stopping: list[bool]) -> None:
    pause(seconds, stopping)
    if stopping:
        raise Stopping()


def pause(seconds: float, stopping: list[bool]) -> None:
    """Sleep, waking early once SIGTERM has arrived."""
    deadline = time.monotonic() + seconds
    while not stopping and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def status(jobs_dir: str, policy: Policy) -> int:
    """Print each job's last result and next run."""
    for path in job_files(jobs_dir):
        state = read_state(path)
        try:
            job = load_job(path, policy)
            due = next_run(path, job)
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(due)) if due else "never"
        except FreezerError as exc:
            when = f"invalid: {exc}"
        print(f"{os.path.basename(path)}: last {state.get('status', 'never run')}, next {when}")
    return 0


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def running_pid(pid_file: str) -> int | None:
    """The pid recorded in ``pid_file`` if that process is still alive."""
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def write_pid(pid_file: str) -> None:
    """Claim ``pid_file``, refusing when another scheduler already holds it."""
    other = running_pid(pid_file)
    if other is not None and other != os.getpid():
        raise FreezerError(f"a scheduler is already running, pid {other} (--pid-file {pid_file})")
    with open(pid_file, "w") as out:
        out.write(f"{os.getpid()}\n")


def check_writable(pid_file: str) -> None:
    """Fail in the foreground when the pid file cannot be written."""
    try:
        with open(pid_file, "a"):
            pass
    except OSError as exc:
        raise FreezerError(f"cannot write --pid-file {pid_file}: {exc.strerror}") from exc


def start_daemon(args: argparse.Namespace) -> int:
    """Start ``serve`` in a new session, and return once it has claimed the pid file."""
    other = running_pid(args.pid_file)
    if other is not None:
        raise FreezerError(f"a scheduler is already running, pid {other} (--pid-file {args.pid_file})")
    given = [arg for arg in args.argv if arg not in ("start", "restart")]
    argv = [sys.executable, "-m", "freezer.scheduler.cli", *given, "--no-daemon", "--pid-file", args.pid_file,
            "start"]
    check_writable(args.pid_file)
    proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while running_pid(args.pid_file) != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise FreezerError("the scheduler did not start (exit code "
                               f"{proc.returncode}): run it with --no-daemon to see why")
        time.sleep(0.05)
    print(f"freezer-scheduler started, pid {proc.pid}")
    return 0


def stop(pid_file: str, timeout: float = 600.0) -> int:
    """SIGTERM the scheduler and wait until it has finished its running job and exited."""
    pid = running_pid(pid_file)
    if pid is None:
        raise FreezerError(f"no running scheduler found from --pid-file {pid_file}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise FreezerError(f"the scheduler, pid {pid}, has not stopped after {timeout:.0f} s")
        time.sleep(0.1)
    print(f"freezer-scheduler stopped, pid {pid}")
    return 0


def serve_api(args: argparse.Namespace) -> int:
    """API mode in the foreground: poll freezer-api until SIGTERM, then finish the running job."""
    from freezer.scheduler import api, daemon

    for noisy in ("urllib3", "keystoneauth"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    client = api.FreezerApi.connect(args.service_auth, args.insecure, args.client_id)
    scheduler = daemon.ApiScheduler(client, args.capabilities, args.jobs_dir, allow_exec=not args.disable_exec)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    write_pid(args.pid_file)
    LOG.info("freezer-scheduler polling freezer-api as client %s, pid %d", client.client_id, os.getpid())
    try:
        scheduler.serve(args.interval, stopping)
    finally:
        with contextlib.suppress(OSError):
            os.remove(args.pid_file)
    LOG.info("freezer-scheduler stopped")
    return 0


def run_api(args: argparse.Namespace) -> int:
    if args.command == "run-once":
        raise FreezerError("run-once reads local job files: add --no-api --jobs-dir DIR")
    if args.command == "status":
        pid = running_pid(args.pid_file)
        print(f"freezer-scheduler running, pid {pid}" if pid else "freezer-scheduler not running")
        return 0 if pid else 1
    if args.command == "stop":
        return stop(args.pid_file)
    return serve_api(args) if args.no_daemon else start_daemon(args)


def run_local(args: argparse.Namespace) -> int:
    policy = Policy(args.capabilities, allow_exec=not args.disable_exec)
    if args.command == "run-once":
        return run_once(args.jobs_dir, policy)
    if args.command == "status":
        return status(args.jobs_dir, policy)
    if args.command == "stop":
        return stop(args.pid_file)
    if args.no_daemon:
        return serve(args.jobs_dir, args.poll, args.pid_file, policy)
    job_files(args.jobs_dir)  # a missing directory fails here, in the foreground
    return start_daemon(args)


def upstream_commands(args: argparse.Namespace) -> int | None:
    """``reload`` (upstream: not supported) and ``restart`` (stop if running, then start)."""
    if args.command == "reload":
        print("freezer-scheduler: reload is not supported: use restart")
        return 0
    if args.command == "restart":
        if running_pid(args.pid_file) is not None:
            stop(args.pid_file)
        args.command = "start"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = options.parse(argv)
        args.argv = argv
        logs.setup(args.log_file, args.debug, False, [], prog="freezer-scheduler")
        done = upstream_commands(args)
        if done is not None:
            return done
        return run_local(args) if args.no_api else run_api(args)
    except FreezerError as exc:
        print(f"freezer-scheduler: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
