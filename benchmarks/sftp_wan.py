"""SFTP alone, on loopback and over long links: the agent at several ``--ftp-connections`` against OpenSSH's sftp.

``python -m benchmarks.sftp_wan --links 40ms,1gbit 100ms,1gbit --connections default,1,4 [--lan]
[--size-mib 256] [--json FILE]``: for each link, a relay (benchmarks/wan.py) in front of a fresh sshd,
OpenSSH ``sftp`` put and get through it, then the agent's backup and restore with ``--compression none``
at each connection count (``default``: no option given). ``--lan`` adds the same on loopback, no relay.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

from benchmarks import raw, wan
from benchmarks.run import Bench, _through, compile_package, make_bench
from freezer.testing.sshd import Sshd

NONE = (("none", False),)


@contextlib.contextmanager
def sshd_via(bench: Bench, name: str, link: wan.Link | None) -> Iterator[Sshd]:
    """A fresh sshd, reached through a relay on ``link`` (or directly when None)."""
    sshd = Sshd(os.path.join(bench.work, name))
    sshd.setUp()
    try:
        if link is None:
            yield sshd
            return
        with wan.relay_process(("127.0.0.1", sshd.port), link) as port:
            yield _through(sshd, port)
    finally:
        sshd.cleanUp()
        shutil.rmtree(os.path.join(bench.work, name), ignore_errors=True)


def rows_for(bench: Bench, link: wan.Link | None, counts: list[str]) -> None:
    """OpenSSH put/get, then the agent at each connection count, over one link (or loopback)."""
    label = str(link) if link else "loopback"
    with sshd_via(bench, f"ssh-{label.replace(',', '-')}", link) as server:
        put = bench.timed(lambda: raw.openssh_sftp(server, bench.work, f"put {bench.tar_path} {server.root}/raw.tar"))
        bench.add("sftp", "backup", "OpenSSH sftp put (raw)", put.seconds, cpu_s=put.cpu_s, link=label)
        target = os.path.join(bench.work, "download.tar")
        get = bench.timed(lambda: raw.openssh_sftp(server, bench.work, f"get {server.root}/raw.tar {target}"))
        bench.add("sftp", "restore", "OpenSSH sftp get (raw)", get.seconds, cpu_s=get.cpu_s, link=label)
        for count in counts:
            options = server.agent_options() + ([] if count == "default" else ["--ftp-connections", count])
            before = len(bench.rows)
            bench.freezer("sftp", options, put, get, NONE)
            for row in bench.rows[before:]:
                row.update(link=label, connections=count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", nargs="*", default=[], help="e.g. 40ms,1gbit 100ms,1gbit,4mib")
    parser.add_argument("--connections", default="default", help="comma-separated: default, auto, 1, 4, ...")
    parser.add_argument("--lan", action="store_true", help="also on loopback, without a relay")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work-dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    links = [wan.Link.parse(spec) for spec in args.links]
    counts = [count for count in args.connections.split(",") if count]
    work = tempfile.mkdtemp(prefix="freezer-sftpwan-", dir=args.work_dir)
    compile_package()
    try:
        bench = make_bench(work, args.size_mib, args.repeat)
        for link in ([None] if args.lan else []) + links:
            rows_for(bench, link, counts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row in bench.rows:
        print(f"{row['link']:>22} {row['op']:8} {row['what']:24} {str(row.get('connections', '')):8} "
              f"{row['seconds']:8.2f} s {row['mib_s']:7.1f} MiB/s  x_raw {row['x_raw']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(bench.rows, out, indent=1)


if __name__ == "__main__":
    main()
