"""The README's main job: a level-0 and a level-1 backup, a restore, a comparison.

``python -m freezer.tools.demo [local|ftp|ftps|sftp]``: for the network storages a
throw-away server is started on 127.0.0.1 for the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

AGENT = os.path.join(os.path.dirname(sys.executable), "freezer-agent")


@contextlib.contextmanager
def storage_options(kind: str, workdir: str) -> Iterator[list[str]]:
    """Options that reach a storage of ``kind``, starting its server if it needs one."""
    if kind == "local":
        yield ["--storage", "local", "--container", os.path.join(workdir, "backups")]
        return
    from freezer.testing import demo_servers  # pyftpdlib and sshd: not needed for a local demo

    with demo_servers.for_storage(kind, os.path.join(workdir, "server")) as server:
        yield server.agent_options()


def agent(*args: str) -> None:
    """Run freezer-agent, echoing the command line (secrets elided)."""
    shown = [a if not a.startswith("pw-") else "***" for a in args]
    print("$ freezer-agent", " ".join(shown), flush=True)
    subprocess.run([AGENT, *args], check=True)


def make_sample(root: str) -> None:
    os.makedirs(f"{root}/docs/empty")
    for index in range(20):
        with open(f"{root}/docs/note-{index}.txt", "w") as handle:
            handle.write(f"note {index}\n" * 200)
    with open(f"{root}/data.bin", "wb") as handle:
        handle.write(os.urandom(2 << 20))
    os.symlink("data.bin", f"{root}/latest")


def main(kind: str) -> int:
    workdir = tempfile.mkdtemp(prefix="freezer-demo-")
    source, target = f"{workdir}/source", f"{workdir}/restored"
    make_sample(source)
    try:
        with storage_options(kind, workdir) as options:
            common = [*options, "--backup-name", "demo"]
            agent(*common, "--path-to-backup", source, "--compression", "zstd")
            with open(f"{source}/docs/note-0.txt", "a") as handle:
                handle.write("changed after the first backup\n")
            os.remove(f"{source}/docs/note-1.txt")
            agent(*common, "--path-to-backup", source, "--compression", "zstd")
            agent(*common, "--action", "info")
            agent(*common, "--action", "restore", "--restore-abs-path", target)
        same = subprocess.run(["diff", "-r", "--no-dereference", source, target]).returncode == 0
        print(f"restored tree {'matches' if same else 'DIFFERS FROM'} the source ({kind} storage)")
        return 0 if same else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "local"))
