"""CPU and I/O priority of the agent, inherited by tar, compressors and every child it starts.

``--max-priority`` (upstream): nice -19 and the real-time I/O class, for a backup that must finish.
``--low-priority``: nice 19 and the idle I/O class, for a backup that must not slow a busy host.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from freezer.common import config, upstream
from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)
HIGHEST_NICE = -19  # what upstream sets
LOWEST_NICE = 19
IONICE_REALTIME = ("-c", "1", "-n", "0")
IONICE_IDLE = ("-c", "3")


def apply(conf) -> None:
    """Set this process's priority from the options; children inherit it."""
    high, low = upstream.wants(conf.max_priority), conf.low_priority
    if high and low:
        raise FreezerError("--max-priority and --low-priority contradict each other: give one")
    if high:
        _set(HIGHEST_NICE, IONICE_REALTIME, "--max-priority")
    elif low:
        _set(LOWEST_NICE, IONICE_IDLE, "--low-priority")


def _set(nice: int, ionice_class: tuple[str, ...], option: str) -> None:
    """Set the nice value and I/O class of this process; a refusal is a warning, as upstream."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        LOG.warning("%s: cannot set CPU priority %d: %s", option, nice, exc.strerror)
    ionice = shutil.which("ionice")
    if ionice is None:
        LOG.warning("%s: ionice not found (util-linux): I/O priority unchanged", option)
        return
    proc = subprocess.run([ionice, *ionice_class, "-p", str(os.getpid())], capture_output=True, text=True,
                          env=config.child_environment())
    if proc.returncode != 0:
        LOG.warning("%s: ionice failed: %s", option, proc.stderr.strip() or f"exit {proc.returncode}")
