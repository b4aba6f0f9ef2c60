"""``--action exec --command CMD``: run a shell command as a job step; its exit status is the result."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys

from freezer.common import config, upstream
from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)


class CommandFailed(FreezerError):
    """The command of ``--action exec`` exited non-zero or was killed."""


def run(conf) -> dict:
    """Run ``--command`` with ``/bin/sh -c``; stderr passes through, its last line names a failure.

    The command gets the operator's environment without the agent's own secrets (config.exec_environment).
    """
    command = upstream.verbatim(conf, "command")
    if not command:
        raise FreezerError("--command is required for --action exec")
    LOG.info("running: %s", command)
    stdout = sys.stderr if conf.metadata_out == "-" else None  # keep the JSON result alone on stdout
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE,
                                env=config.exec_environment(config.agent_secrets(conf)))
    except OSError as exc:
        raise FreezerError(f"--action exec: cannot start /bin/sh: {exc.strerror}") from exc
    last_line = _relay(proc.stderr)
    code = proc.wait()
    result = {"action": "exec", "command": command, "exit_code": code}
    if code != 0:
        raise CommandFailed(f"--command exited with {_status(code)}{': ' + last_line if last_line else ''}")
    return result


def _relay(stream) -> str:
    """Copy the command's stderr to ours; return its last non-empty line."""
    last = ""
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        sys.stderr.write(line)
        if line.strip():
            last = line.strip()
    sys.stderr.flush()
    return last


def _status(code: int) -> str:
    """``status 3`` or ``signal SIGKILL``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
