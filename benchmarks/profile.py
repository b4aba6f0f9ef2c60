"""Where the agent's own time goes: py-spy samples of one backup and one restore, per thread.

``python -m benchmarks.profile [--storage local|ftp|ftps|sftp] [--size-mib N] [--work-dir D]``
needs ``pip install py-spy``; it prints, for each thread, the functions where samples landed.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks import dataset
from benchmarks.run import AGENT
from freezer.testing.servers import PyFtpd
from freezer.testing.sshd import Sshd

RATE = 250


def sample(argv: list[str], out: str) -> collections.Counter:
    """Run ``argv`` under py-spy; count samples by (thread, innermost frame)."""
    subprocess.run(["py-spy", "record", "--rate", str(RATE), "--format", "raw", "--threads", "--output", out,
                    "--", sys.executable, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts: collections.Counter = collections.Counter()
    with open(out) as stacks:
        for line in stacks:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            thread = frames[0].partition(":")[2].strip() or "MainThread, before it is named"
            counts[(thread, frames[-1])] += int(count)
    return counts


def report(title: str, counts: collections.Counter, top: int = 8) -> None:
    """Print the busiest frames of each thread, in seconds of samples."""
    print(f"\n{title}")
    threads = collections.Counter()
    for (thread, _), count in counts.items():
        threads[thread] += count
    for thread, total in threads.most_common():
        print(f"  thread {thread}: {total / RATE:.2f} s sampled")
        frames = [(frame, count) for (name, frame), count in counts.most_common() if name == thread]
        for frame, count in frames[:top]:
            print(f"    {count / RATE:6.2f} s  {frame}")


def server_for(storage: str, work: str):
    if storage == "sftp":
        return Sshd(os.path.join(work, "ssh"))
    if storage in ("ftp", "ftps"):
        return PyFtpd(os.path.join(work, storage), storage == "ftps")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="local", choices=("local", "ftp", "ftps", "sftp"))
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--work-dir")
    args = parser.parse_args()
    if not shutil.which("py-spy"):
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="freezer-profile-", dir=args.work_dir)
    server = server_for(args.storage, work)
    try:
        source = os.path.join(work, "data")
        dataset.make_data(source, args.size_mib)
        if server:
            server.setUp()
            options = server.agent_options()
        else:
            options = ["--storage", "local", "--container", os.path.join(work, "store")]
        options += ["--backup-name", "p", "--compression", args.compression]
        backup = sample([AGENT, *options, "--path-to-backup", source], os.path.join(work, "backup.txt"))
        report(f"backup, {args.storage}, {args.compression}, {args.size_mib} MiB", backup)
        restore = sample([AGENT, *options, "--action", "restore", "--restore-abs-path", os.path.join(work, "r")],
                         os.path.join(work, "restore.txt"))
        report(f"restore, {args.storage}, {args.compression}, {args.size_mib} MiB", restore)
        return 0
    finally:
        if server:
            server.cleanUp()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
