"""CPU seconds of the stages a backup or restore is made of, each measured apart.

``python -m benchmarks.stages [--size-mib N] [--repeat N] [--work-dir D]`` makes a data set and
prints the median CPU seconds (user+sys) of: tar at each end, with default and with the agent's
arguments; the Python copies the agent makes; SHA-256; the agent's start-up. A tar stage counts
its own process (wait4), a Python stage this process only. The level MAC's two parts (its scrypt
key, once per chain; its HMAC, once per level) show what authentication adds to a backup.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable

from benchmarks import dataset
from benchmarks.run import AGENT, MIB, compile_package, sha256_cpu_per_mib
from freezer.engine import auth, tar


def _reaped_cpu(proc: subprocess.Popen) -> float:
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{proc.args[0]} failed")
    return usage.ru_utime + usage.ru_stime


def drained(argv: list[str]) -> float:
    """CPU of ``argv`` writing into a pipe this process empties."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buffer = bytearray(MIB)
    with proc.stdout:
        while proc.stdout.readinto(buffer):
            pass
    return _reaped_cpu(proc)


def fed(argv: list[str], path: str) -> float:
    """CPU of ``argv`` reading the file ``path`` from a pipe this process fills."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path, "rb") as source, proc.stdin:
        size, sent = os.fstat(source.fileno()).st_size, 0
        while sent < size:
            sent += os.sendfile(proc.stdin.fileno(), source.fileno(), sent, size - sent)
    return _reaped_cpu(proc)


def own_cpu(action: Callable[[], object]) -> float:
    """CPU of this process while ``action`` runs."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    action()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def copy_from_pipe(stream: str, out: str, hashed: bool) -> None:
    """The backup's pass: a pipe read in 1 MiB chunks, written to a file (and hashed)."""
    proc = subprocess.Popen(["cat", stream], stdout=subprocess.PIPE)
    digest = hashlib.sha256()
    with proc.stdout, open(out, "wb") as target:
        while chunk := proc.stdout.read(MIB):
            if hashed:
                digest.update(chunk)
            target.write(chunk)
    proc.wait()


def copy_to_pipe(stream: str) -> None:
    """The restore's pass: a file read in 1 MiB chunks, written into a pipe."""
    proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    with open(stream, "rb") as source, proc.stdin:
        while chunk := source.read(MIB):
            proc.stdin.write(chunk)
    proc.wait()


def stages(work: str, source: str, stream: str) -> dict[str, Callable[[], float]]:
    """Each stage as a function returning the CPU seconds of one run."""
    target = os.path.join(work, "target")
    snapshot = os.path.join(work, "snapshot")

    def fresh(path: str) -> str:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def level0() -> list[str]:
        if os.path.exists(snapshot):
            os.remove(snapshot)  # no snapshot: tar writes every file, as for a level 0
        return tar.create_command(source, snapshot, agent_options)

    plain_create = ["tar", "--create", "--format=posix", "--file=-", f"--directory={source}", "."]
    agent_options = tar.TarOptions(compression="none", index_file=os.path.join(work, "index"))
    stream_mib = os.path.getsize(stream) / MIB
    return {
        "tar --create, default 10 KiB records": lambda: drained(plain_create),
        "tar --create as the agent runs it": lambda: drained(level0()),
        "tar --extract, default 10 KiB records": lambda: fed(
            ["tar", "--extract", "--file=-", f"--directory={fresh(target)}"], stream),
        "tar --extract, 64 KiB records": lambda: fed(
            ["tar", "--extract", "--file=-", tar.READ_RECORD, f"--directory={fresh(target)}"], stream),
        "tar --extract as the agent runs it": lambda: fed(tar.extract_command(fresh(target)), stream),
        "Python: pipe to file (backup's copy)": lambda: own_cpu(
            lambda: copy_from_pipe(stream, os.path.join(work, "copy"), False)),
        "Python: pipe to file, hashed": lambda: own_cpu(
            lambda: copy_from_pipe(stream, os.path.join(work, "copy"), True)),
        "Python: file to pipe (restore's copy)": lambda: own_cpu(lambda: copy_to_pipe(stream)),
        "SHA-256 of the stream (hashlib)": lambda: sha256_cpu_per_mib() * stream_mib,
        "level MAC: scrypt key (once per chain)": lambda: own_cpu(
            lambda: auth._key.__wrapped__(b"passphrase", auth.Kdf.new())),
        "level MAC: HMAC of a header (key ready)": lambda: own_cpu(_sign_with_a_ready_key),
        "agent start-up (--version)": lambda: _reaped_cpu(
            subprocess.Popen([AGENT, "--version"], stdout=subprocess.DEVNULL)),
    }


def _sign_with_a_ready_key() -> None:
    kdf = auth.Kdf("00" * auth.SALT_SIZE)
    facts = auth.Facts("host_name", 1, 2, 1, "zstd", True, 1 << 30, "0" * 64)
    auth.sign(b"passphrase", kdf, facts, auth.Parent(0, 1, "0" * 64), "0" * 64)


def measure(work: str, size_mib: int, repeat: int) -> dict[str, float]:
    """Median CPU seconds of every stage on a data set of ``size_mib`` made under ``work``."""
    source = os.path.join(work, "data")
    dataset.make_data(source, size_mib)
    stream = os.path.join(work, "stream.tar")
    subprocess.run(["tar", "--create", "--format=posix", f"--file={stream}", f"--directory={source}", "."],
                   check=True)
    return {name: statistics.median(run() for _ in range(repeat)) for name, run in stages(work, source, stream).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work-dir", help="e.g. /dev/shm: no disk noise")
    args = parser.parse_args()
    compile_package()
    work = tempfile.mkdtemp(prefix="freezer-stages-", dir=args.work_dir)
    try:
        print(f"--size-mib {args.size_mib}, median CPU seconds of {args.repeat} runs")
        for name, seconds in measure(work, args.size_mib, args.repeat).items():
            print(f"  {name:<40} {seconds:6.3f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
