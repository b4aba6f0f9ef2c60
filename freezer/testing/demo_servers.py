"""The server ``tools/demo.sh`` starts for one storage: pyftpdlib for ftp and ftps, OpenSSH's sshd for sftp."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from freezer.testing import servers
from freezer.testing.sshd import Sshd


@contextlib.contextmanager
def for_storage(kind: str, workdir: str) -> Iterator[servers._Server]:
    """A running server for ``kind`` (ftp, ftps, sftp), for the demo."""
    makers = {"ftp": lambda: servers.PyFtpd(workdir), "ftps": lambda: servers.PyFtpd(workdir, True)}
    makers["sftp"] = lambda: Sshd(workdir)
    if kind not in makers:
        raise SystemExit(f"no demo server for {kind!r}: choose local, ftp, ftps or sftp")
    os.makedirs(workdir, exist_ok=True)
    server = makers[kind]()
    server.setUp()
    try:
        yield server
    finally:
        server.cleanUp()
