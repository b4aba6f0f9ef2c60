"""Run a job's actions with freezer-agent child processes, retries and a private ini file."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from freezer.errors import FreezerError
from freezer.scheduler import actionvalues

LOG = logging.getLogger(__name__)
#: statuses of an action that did its work; freezer-agent exits 1 for the second (e.g. unreadable files skipped)
DONE = ("completed", "completed_with_warnings")
AGENT_DONE_WITH_WARNINGS = 1


@dataclasses.dataclass
class ActionResult:
    """What became of one action: its attempts, its result document or its last error."""

    index: int
    status: str  # completed, completed_with_warnings, failed, aborted or skipped
    attempts: int = 0
    result: dict | None = None
    error: str | None = None


@dataclasses.dataclass
class Hooks:
    """How a caller follows a run: told of each agent process, asked whether to give up."""

    started: Callable[[subprocess.Popen], None] = lambda proc: None
    aborted: Callable[[], bool] = lambda: False


def agent_command() -> str:
    """The freezer-agent beside this Python, else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "freezer-agent")
    return beside if os.path.exists(beside) else (shutil.which("freezer-agent") or "freezer-agent")


def ini_text(freezer_action: dict) -> str:
    """The (normalised) action's options as an ini file; secrets stay off the command line."""
    lines = ["[action]"]
    for key, value in freezer_action.items():
        if value is None:
            continue
        if not re.fullmatch(r"[a-z0-9_]+", key):
            raise FreezerError(f"freezer_action: {key!r} is not an option name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            raise FreezerError(f"freezer_action.{key}: lists and objects are not supported")
        value = str(value)
        if "\n" in value or "\r" in value:
            raise FreezerError(f"freezer_action.{key}: a value cannot span lines")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def run_once(freezer_action: dict, agent: str, hooks: Hooks | None = None) -> tuple[bool, dict | None, str | None]:
    """One ``freezer-agent --metadata-out - --config FILE`` run; returns (success, result, error line)."""
    hooks = hooks or Hooks()
    with tempfile.TemporaryDirectory(prefix="freezer-job-") as workdir:
        ini = os.path.join(workdir, "action.ini")
        fd = os.open(ini, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(ini_text(freezer_action))
        try:
            proc = subprocess.Popen([agent, "--metadata-out", "-", "--config", ini], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            return False, None, f"cannot start freezer-agent {agent}: {exc.strerror}"
        hooks.started(proc)
        stdout, stderr = proc.communicate()
    for line in stderr.splitlines():
        LOG.info("agent: %s", line)
    if proc.returncode not in (0, AGENT_DONE_WITH_WARNINGS):
        errors = [ln for ln in stderr.splitlines() if "error:" in ln] or stderr.splitlines()[-1:]
        return False, None, (errors[-1] if errors else f"freezer-agent exited {proc.returncode}")
    try:
        return True, json.loads(stdout), None
    except ValueError:
        return False, None, f"freezer-agent exited {proc.returncode} and printed no result document on stdout"


def run_action(index: int, action: dict, agent: str, sleep: Callable[[float], None] = time.sleep,
               hooks: Hooks | None = None) -> ActionResult:
    """Run an action, trying again ``max_retries`` times ``max_retries_interval`` seconds apart."""
    hooks = hooks or Hooks()
    tries = 1 + int(action.get("max_retries") or 0)
    interval = float(action.get("max_retries_interval") or 0)
    outcome = ActionResult(index, "failed")
    for attempt in range(1, tries + 1):
        outcome.attempts = attempt
        ok, result, error = run_once(action["freezer_action"], agent, hooks)
        if ok:
            status = "completed_with_warnings" if (result or {}).get("warnings") else "completed"
            outcome.status, outcome.result, outcome.error = status, result, None
            return outcome
        outcome.error = error
        if hooks.aborted():
            outcome.status = "aborted"
            return outcome
        LOG.warning("action %d, attempt %d of %d failed: %s", index, attempt, tries, error)
        if attempt < tries:
            sleep(interval)
            if hooks.aborted():
                outcome.status = "aborted"
                return outcome
    return outcome


def run_job(job: dict, agent: str | None = None, sleep: Callable[[float], None] = time.sleep,
            hooks: Hooks | None = None, allow_exec: bool = True) -> list[ActionResult]:
    """Run the actions in order; after a failure only ``mandatory`` actions still run, after an abort none.

    With ``allow_exec`` false (``--disable-exec``) an ``exec`` action fails without running.
    """
    agent = agent or agent_command()
    hooks = hooks or Hooks()
    results: list[ActionResult] = []
    failed = False
    for index, action in enumerate(job["job_actions"]):
        if hooks.aborted() or (failed and not action.get("mandatory")):
            why = "the job was aborted" if hooks.aborted() else "an earlier action failed"
            results.append(ActionResult(index, "skipped", error=why))
            continue
        if not allow_exec and actionvalues.is_exec(action.get("freezer_action") or {}):
            outcome = ActionResult(index, "failed", error="exec actions are disabled on this host (--disable-exec)")
        else:
            outcome = run_action(index, action, agent, sleep, hooks)
        failed = failed or outcome.status not in DONE
        results.append(outcome)
    return results
