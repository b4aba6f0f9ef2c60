"""Backup throughput against the raw transport of the same bytes, measured in one run.

``python -m benchmarks.run [--size-mib N] [--json FILE]``: makes a data set (half
random, half text, many small files and a few large), starts the loopback servers
the tests use, and prints MiB/s and the ratio to the raw transport for each storage.
"""

from __future__ import annotations

import argparse
import ftplib
import json
import os
import subprocess
import sys
import tempfile
import time

import paramiko

from freezer.tests.servers import PyFtpd
from freezer.tests.sshd import Sshd

AGENT = os.path.join(os.path.dirname(sys.executable), "freezer-agent")
MIB = 1 << 20


def make_data(root: str, size_mib: int) -> None:
    """Half in a few large files, half in many small ones; half random, half text."""
    os.makedirs(f"{root}/small", exist_ok=True)
    text = (b"freezer benchmark line of compressible text\n" * 24000)[:MIB]
    large = size_mib // 2
    for index in range(4):
        with open(f"{root}/large-{index}.bin", "wb") as out:
            for block in range(large // 4):
                out.write(os.urandom(MIB) if block % 2 else text)
    for index in range(size_mib // 2 * 16):
        with open(f"{root}/small/f{index:06d}", "wb") as out:
            out.write(os.urandom(32 << 10) if index % 2 else text[: 32 << 10])


REPEAT = 3


def timed(action) -> float:
    """Best of REPEAT runs: the disk and CPU here are shared, so one run is noise."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def tar_of(source: str, path: str) -> int:
    """The uncompressed tar stream of the data set, so raw transports move the same bytes."""
    subprocess.run(["tar", "--create", "--format=posix", f"--file={path}", f"--directory={source}", "."], check=True)
    return os.path.getsize(path)


def read_source(source: str) -> None:
    """GNU tar with the agent's flags into a pipe: the cost of reading the files."""
    subprocess.run(f"tar --create --file=- --format=posix --xattrs --acls --directory='{source}' . | cat >/dev/null",
                   shell=True, check=True)


def agent_backup(options: list[str], source: str, name: str) -> None:
    subprocess.run([AGENT, *options, "--backup-name", name, "--path-to-backup", source,
                    "--compression", "none", "--no-incremental"], check=True, capture_output=True)


def raw_ftp(server: PyFtpd, tar_path: str) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", server.port)
        ftp.login(server.username, server.password)
        with open(tar_path, "rb") as handle:
            ftp.storbinary("STOR raw.tar", handle, blocksize=MIB)


def raw_sftp_openssh(server: Sshd, tar_path: str, workdir: str) -> None:
    batch = os.path.join(workdir, "batch")
    with open(batch, "w") as out:
        out.write(f"put {tar_path} {server.root}/raw.tar\n")
    subprocess.run(["sftp", "-q", "-b", batch, "-i", server.client_key, "-P", str(server.port),
                    "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={workdir}/kh",
                    f"{server.username}@127.0.0.1"], check=True, capture_output=True)


def raw_paramiko(server: Sshd, tar_path: str) -> None:
    transport = paramiko.Transport(("127.0.0.1", server.port), default_window_size=64 * MIB,
                                   default_max_packet_size=256 << 10)
    transport.connect(username=server.username, password=server.password)
    sftp = paramiko.SFTPClient.from_transport(transport, window_size=64 * MIB, max_packet_size=256 << 10)
    with open(tar_path, "rb") as handle:
        sftp.putfo(handle, f"{server.root}/raw-paramiko.tar")
    transport.close()


def measure(size_mib: int) -> list[dict]:
    work = tempfile.mkdtemp(prefix="freezer-bench-")
    source = os.path.join(work, "data")
    make_data(source, size_mib)
    tar_path = os.path.join(work, "data.tar")
    size = tar_of(source, tar_path) / MIB
    rows = []

    def row(storage: str, what: str, seconds: float, raw: float | None) -> None:
        rows.append({"storage": storage, "what": what, "seconds": round(seconds, 3),
                     "mib_s": round(size / seconds, 1), "ratio_to_raw": round(raw / seconds, 2) if raw else None})

    copy = os.path.join(work, "copy.tar")
    cp = timed(lambda: subprocess.run(["cp", tar_path, copy], check=True))
    durable = timed(lambda: subprocess.run(["dd", f"if={tar_path}", f"of={copy}", "bs=1M", "conv=fsync",
                                            "status=none"], check=True))
    row("local", "cp + fsync (raw)", durable, None)
    row("local", "cp, no fsync", cp, durable)
    row("local", "tar reading the source", timed(lambda: read_source(source)), durable)
    row("local", "freezer backup", timed(lambda: agent_backup(
        ["--storage", "local", "--container", os.path.join(work, "local")], source, "b")), durable)

    ftp_server = PyFtpd(os.path.join(work, "ftp"))
    ftp_server.setUp()
    try:
        raw = timed(lambda: raw_ftp(ftp_server, tar_path))
        row("ftp", "ftplib storbinary (raw)", raw, None)
        row("ftp", "freezer backup", timed(lambda: agent_backup(ftp_server.agent_options(), source, "b")), raw)
    finally:
        ftp_server.cleanUp()

    sshd = Sshd(os.path.join(work, "ssh"))
    sshd.setUp()
    try:
        raw = timed(lambda: raw_sftp_openssh(sshd, tar_path, work))
        row("sftp", "OpenSSH sftp put (raw)", raw, None)
        row("sftp", "paramiko putfo", timed(lambda: raw_paramiko(sshd, tar_path)), raw)
        row("sftp", "freezer backup", timed(lambda: agent_backup(sshd.agent_options(), source, "b")), raw)
    finally:
        sshd.cleanUp()
    subprocess.run(["rm", "-rf", work], check=False)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="take the best of N runs")
    parser.add_argument("--json")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    rows = measure(args.size_mib)
    print(f"{'storage':<8} {'what':<26} {'seconds':>8} {'MiB/s':>8} {'x raw':>6}")
    for r in rows:
        print(f"{r['storage']:<8} {r['what']:<26} {r['seconds']:>8} {r['mib_s']:>8} {r['ratio_to_raw'] or '':>6}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"size_mib": args.size_mib, "rows": rows}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
