"""Files the scheduler writes (job copies, state): private to its user, replaced atomically."""

from __future__ import annotations

import contextlib
import os


def write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 whatever the umask, via a temporary file and a rename."""
    temp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.remove(temp)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, path)


def private_dir(path: str) -> None:
    """Create ``path`` (mode 0700) when it does not exist yet."""
    os.makedirs(path, mode=0o700, exist_ok=True)
