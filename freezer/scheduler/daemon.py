"""freezer-scheduler's API mode: poll freezer-api, follow job events, run due jobs, report back.

Job states and events follow upstream's scheduler: a job is ``scheduled`` until due, ``running``
while its actions run, then ``scheduled`` again, or ``completed`` when its schedule is over or a
``stop``/``abort`` came while it ran. ``abort`` kills the running freezer-agent; ``stop`` keeps a job
from running again; a job deleted in freezer-api (or given the ``remove`` event) is dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import subprocess
import threading
import time

from freezer.errors import FreezerError
from freezer.scheduler import files, jobdoc, runner, schedule
from freezer.scheduler.api import FreezerApi

LOG = logging.getLogger("freezer.scheduler")
TIME_NULL = -1


@dataclasses.dataclass
class Tracked:
    """A job this scheduler knows: its document, whether it is scheduled, when it last ran."""

    doc: dict
    active: bool = True
    last_run: float | None = None


@dataclasses.dataclass
class Running:
    """The job being run: its worker thread, agent process and the events that came meanwhile."""

    job_id: str
    thread: threading.Thread | None = None
    proc: subprocess.Popen | None = None
    abort: bool = False
    stop: bool = False
    remove: bool = False
    refused: bool = False

    def kill_agent(self) -> None:
        self.abort = True
        if self.proc is not None and self.proc.poll() is None:
            LOG.warning("job %s aborted: terminating freezer-agent pid %d", self.job_id, self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()


class ApiScheduler:
    """Runs one job at a time; the main thread polls and handles events, a worker runs the job.

    The main thread alone changes ``jobs`` and ``running``: the worker hands each finished run back
    through ``finished``, which the main loop drains (``collect``).
    """

    def __init__(self, api: FreezerApi, capabilities: dict, jobs_dir: str, agent: str | None = None,
                 allow_exec: bool = True):
        self.api = api
        self.allow_exec = allow_exec
        self.capabilities = capabilities
        self.jobs_dir = jobs_dir
        self.agent = agent or runner.agent_command()
        self.jobs: dict[str, Tracked] = {}
        self.running: Running | None = None
        self.stopping: list[bool] = []
        self.finished: queue.SimpleQueue[tuple[Tracked, Running]] = queue.SimpleQueue()

    # -- the loop -------------------------------------------------------------------------------
    def serve(self, interval: float, stopping: list[bool]) -> None:
        """Register, then poll every ``interval`` s and start due jobs until ``stopping``."""
        self.stopping = stopping
        files.private_dir(self.jobs_dir)
        self.api.register(self.capabilities)
        next_poll = 0.0
        while not stopping:
            self.collect()
            if time.monotonic() >= next_poll:
                self.poll()
                next_poll = time.monotonic() + interval
            self.start_due()
            _pause(0.2, lambda: bool(stopping))
        if self.running and self.running.thread:
            self.running.thread.join()
        self.collect()

    def collect(self) -> None:
        """Finish the runs the worker handed back (report, reschedule or drop the job) in this thread."""
        while True:
            try:
                tracked, run = self.finished.get_nowait()
            except queue.Empty:
                return
            try:
                self._finish(tracked, run)
            finally:
                self.running = None

    def poll(self) -> None:
        """Read this client's jobs, handle their events, forget the ones freezer-api no longer has."""
        try:
            docs = self.api.active_jobs()
        except FreezerError as exc:
            LOG.error("%s", exc)
            return
        LOG.debug("polled freezer-api: %d jobs for this client", len(docs))
        docs = [doc for doc in docs if isinstance(doc, dict) and isinstance(doc.get("job_id"), str)]
        for doc in docs:
            try:
                self.on_job(doc)
            except Exception as exc:  # noqa: BLE001 - one strange document must not stop the others
                LOG.error("job %s: unexpected %s: %s: job skipped", doc["job_id"], type(exc).__name__, exc)
        listed = {doc["job_id"] for doc in docs}
        for job_id in [job_id for job_id in self.jobs if job_id not in listed]:
            if self.running and self.running.job_id == job_id:
                self.running.remove = True
                continue
            if self.jobs[job_id].doc.get("job_schedule", {}).get("status") == "completed":
                LOG.debug("job %s is completed: freezer-api lists it no more", job_id)
            else:
                LOG.info("job %s was deleted in freezer-api: dropped", job_id)
            self.forget(job_id)

    def refusal(self, doc: dict) -> tuple[dict | None, str | None]:
        """The job in the agent's form, or why it cannot run here (invalid, or outside this host's policy)."""
        name = f"job {doc.get('job_id')}"
        try:
            job = jobdoc.prepare(doc, name)
        except FreezerError as exc:
            return None, str(exc)
        why = jobdoc.refusal(job, self.capabilities, self.allow_exec)
        return job, (f"{name}: {why}" if why else None)

    # -- events ---------------------------------------------------------------------------------
    def on_job(self, doc: dict) -> None:
        """Follow the job's event (start, stop, abort, remove) or pick up a job seen for the first time."""
        job_id = doc["job_id"]
        sched = doc.setdefault("job_schedule", {})
        event = sched.get("event") or ""
        if self.running and self.running.job_id == job_id:
            self._event_while_running(event)
            return
        self._save_copy(doc)
        known = self.jobs.get(job_id)
        if sched.get("status") == "removed":
            self.forget(job_id)
        elif event == "remove":
            self._set(doc, status="removed")
            self.forget(job_id)
        elif event in ("stop", "abort"):
            self.jobs[job_id] = Tracked(doc, active=False)
            self._set(doc, status="stop")
        elif event == "start" and known is not None and known.active:
            # already scheduled (it may have just run for its creation): as upstream, no second run;
            # freezer-api blanked the result on the start event: the last run's stays
            last = known.doc.get("job_schedule", {})
            known.doc = doc
            self._set(doc, status="scheduled", result=last.get("result", ""))
        elif event == "start":
            self.jobs[job_id] = Tracked(doc)
            self._set(doc, status="scheduled")
        elif known is None and sched.get("status") != "stop":
            self.jobs[job_id] = Tracked(doc, last_run=_last_run(sched))
            self._set(doc, status="scheduled")
        elif known is None:
            self.jobs[job_id] = Tracked(doc, active=False)
        else:
            known.doc = doc

    def _event_while_running(self, event: str) -> None:
        if event == "abort":
            self.running.kill_agent()
        elif event == "stop":
            self.running.stop = True
        elif event == "remove":
            self.running.remove = True

    def _set(self, doc: dict, **fields) -> None:
        """Change the job's schedule fields, clear its event and PATCH it to freezer-api."""
        doc["job_schedule"].update(fields, event="")
        try:
            self.api.report(doc)
        except FreezerError as exc:
            LOG.error("%s", exc)

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._copy_path(job_id))

    def _copy_path(self, job_id: str) -> str:
        return os.path.join(self.jobs_dir, f"job_{os.path.basename(job_id)}.conf")

    def _save_copy(self, doc: dict) -> None:
        """Keep the job document in the jobs dir as upstream does, but 0600: it may hold passwords."""
        try:
            files.write_private(self._copy_path(doc["job_id"]), json.dumps(doc, indent=2, sort_keys=True))
        except OSError as exc:
            LOG.error("cannot save job %s in --jobs-dir %s: %s", doc["job_id"], self.jobs_dir, exc.strerror)

    # -- running --------------------------------------------------------------------------------
    def start_due(self) -> None:
        """Start the first scheduled job whose time has come, unless one is running."""
        if self.running is not None or self.stopping:
            return
        now = time.time()
        for tracked in list(self.jobs.values()):
            if tracked.active and self._due(tracked, now):
                tracked.last_run = now
                self.running = Running(tracked.doc["job_id"])
                self.running.thread = threading.Thread(target=self._run, args=(tracked, self.running),
                                                       name=f"job-{self.running.job_id}", daemon=True)
                self.running.thread.start()
                return

    def _due(self, tracked: Tracked, now: float) -> bool:
        try:
            due = schedule.next_run(tracked.doc["job_schedule"], tracked.last_run, now)
        except FreezerError as exc:
            LOG.error("job %s: job_schedule: %s: job stopped", tracked.doc["job_id"], exc)
            tracked.active = False
            self._report_actions(tracked.doc, [runner.ActionResult(0, "failed", error=f"job_schedule: {exc}")])
            self._set(tracked.doc, status="stop", result="fail")
            return False
        return due is not None and due <= now

    def _run(self, tracked: Tracked, run: Running) -> None:
        try:
            self._run_job(tracked, run)
        except Exception:  # noqa: BLE001 - a bug must not kill the loop silently
            LOG.exception("job %s: unexpected error", run.job_id)
        finally:
            self.finished.put((tracked, run))

    def _run_job(self, tracked: Tracked, run: Running) -> None:
        doc = tracked.doc
        started = tracked.last_run or time.time()
        self._set(doc, status="running", result="", time_started=int(started), time_ended=TIME_NULL)
        LOG.info("job %s running", run.job_id)
        self._session(doc, start=True)
        result = self._execute(doc, run)
        doc["job_schedule"].update(result=result, time_ended=int(time.time()))
        self._session(doc, start=False)

    def _execute(self, doc: dict, run: Running) -> str:
        """Run the actions; record each backup; report failures; the job's result (success, fail or aborted)."""
        job, why = self.refusal(doc)
        if why:
            LOG.error("%s: job refused", why)
            run.refused = True  # it cannot pass until the job is changed: stopped, its reason in freezer-api
            self._report_actions(doc, [runner.ActionResult(0, "failed", error=why)])
            return "fail"
        give_up = lambda: run.abort or bool(self.stopping)  # noqa: E731 - abort, or the scheduler stops
        hooks = runner.Hooks(started=lambda proc: self._agent_started(doc, run, proc), aborted=give_up)
        results = runner.run_job(job, self.agent, sleep=lambda s: _pause(s, give_up), hooks=hooks,
                                 allow_exec=self.allow_exec)
        for outcome in results:
            if outcome.status in runner.DONE and (outcome.result or {}).get("action") == "backup":
                self._record(outcome.result, run.job_id)  # a backup done with warnings lists them in its record
            elif outcome.error:
                LOG.warning("job %s action %d %s: %s", run.job_id, outcome.index, outcome.status, outcome.error)
            if outcome.status == "completed_with_warnings":
                LOG.warning("job %s action %d done with warnings: %s", run.job_id, outcome.index,
                            "; ".join((outcome.result or {}).get("warnings", [])))
        self._report_actions(doc, results)
        if all(r.status in runner.DONE for r in results):
            return "success"  # freezer-api knows no other result: the warnings are in the backup record
        return "aborted" if run.abort or self.stopping else "fail"

    def _report_actions(self, doc: dict, results: list[runner.ActionResult]) -> None:
        """Write each action's failure reason (or clear an old one) where freezer-api keeps the action."""
        for outcome in results:
            try:
                self.api.report_action(doc, outcome.index, outcome.error if outcome.status == "failed" else None)
            except FreezerError as exc:
                LOG.error("%s", exc)

    def _agent_started(self, doc: dict, run: Running, proc: subprocess.Popen) -> None:
        run.proc = proc
        if run.abort:
            run.kill_agent()
        doc["job_schedule"]["current_pid"] = proc.pid
        try:
            self.api.report(doc)
        except FreezerError as exc:
            LOG.error("%s", exc)

    def _record(self, result: dict, job_id: str) -> None:
        try:
            self.api.record_backup(result, job_id)
        except FreezerError as exc:
            LOG.error("%s", exc)

    def _session(self, doc: dict, start: bool) -> None:
        if not doc.get("session_id"):
            return
        try:
            if start:
                self.api.start_session(doc)
            else:
                self.api.end_session(doc, doc["job_schedule"].get("result") or "fail")
        except FreezerError as exc:
            LOG.error("%s", exc)

    def _finish(self, tracked: Tracked, run: Running) -> None:
        """After a run: removed, completed (stopped, aborted or schedule over) or scheduled again."""
        job_id = run.job_id
        if not tracked.doc["job_schedule"].get("result"):
            tracked.doc["job_schedule"]["result"] = "fail"  # a run cut short by a bug
        LOG.info("job %s finished: %s", job_id, tracked.doc["job_schedule"]["result"])
        if run.remove:
            self._set(tracked.doc, status="removed")
            self.forget(job_id)
            return
        if run.refused:
            tracked.active = False
            self._set(tracked.doc, status="stop")
            return
        try:
            over = schedule.next_run(tracked.doc["job_schedule"], tracked.last_run, time.time()) is None
        except FreezerError:
            over = True  # the schedule was readable when the job started; now it is not: run it no more
        if run.stop or run.abort or over:
            tracked.active = False
            self._set(tracked.doc, status="completed")
        else:
            self._set(tracked.doc, status="scheduled")


def _last_run(sched: dict) -> float | None:
    """When a scheduled job we have not seen yet last ran (a restart must not run it again at once)."""
    started = sched.get("time_started")
    if sched.get("status") == "scheduled" and isinstance(started, (int, float)) and started > 0:
        return float(started)
    return None


def _pause(seconds: float, interrupted) -> None:
    """Sleep ``seconds``, waking early once ``interrupted()`` is true."""
    deadline = time.monotonic() + seconds
    while not interrupted() and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
