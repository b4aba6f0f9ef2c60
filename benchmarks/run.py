"""Backup and restore throughput against the raw transport, the codecs and peer tools, in one run.

``python -m benchmarks.run [--size-mib N] [--repeat N] [--rss-check-mib N] [--no-peers] [--work-dir D] [--json F]
[--wan 40ms,200mbit [--wan-size-mib N]]``
makes a data set, starts the loopback servers the tests use, and prints one table: MiB/s, the
ratio to the raw transport ("x raw"), to the codec alone ("x codec"), to the slowest stage the
pipeline cannot avoid ("x bound": transport, tar or codec alone), and peak RSS. ``--wan`` adds
ftp and sftp rows over a delaying, rate-capped relay (benchmarks/wan.py), raw transport included.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from benchmarks import dataset, peers, raw, wan
from freezer.tests.servers import PyFtpd
from freezer.tests.sshd import Sshd

AGENT = os.path.join(os.path.dirname(sys.executable), "freezer-agent")
MIB = 1 << 20
REPEAT = 3
NOTES = ("freezer_faster", "stored_mib", "changed_mib", "x_full", "content_mib", "link")
CONFIGS = (("none", False), ("zstd", False), ("gzip", False), ("none", True), ("zstd", True), ("gzip", True))


def run_agent(options: list[str], *args: str) -> tuple[dict, float]:
    """Run freezer-agent; return its result document and its peak RSS in MiB."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as result, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([AGENT, *options, *args, "--metadata-out", result.name],
                                stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, high_water_kib(proc.pid))
            time.sleep(0.02)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"freezer-agent {' '.join(args[:4])} failed: {err.read().strip()}")
        return json.load(open(result.name)), peak / 1024


def high_water_kib(pid: int) -> int:
    """VmHWM of a running process: its own peak RSS since exec (wait4's figure includes the parent's)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Bench:
    """Collects rows; each row is one measured action and its ratios."""

    def __init__(self, work: str, source: str, tar_path: str, repeat: int):
        self.work, self.source, self.tar_path, self.repeat = work, source, tar_path, repeat
        self.size = os.path.getsize(tar_path) / MIB
        self.rows: list[dict] = []
        self.codecs: dict[tuple[str, bool], float] = {}
        self.tar_create_s = self.tar_extract_s = 0.0

    def timed(self, action: Callable[[], object], repeat: int | None = None) -> float:
        """Best of ``repeat`` runs (the disk and CPU here are shared)."""
        best = float("inf")
        for _ in range(repeat or self.repeat):
            self.cleanup_restores()
            os.sync()  # earlier writes flushing to disk would slow this run
            start = time.perf_counter()
            action()
            best = min(best, time.perf_counter() - start)
        return best

    def add(self, storage: str, op: str, what: str, seconds: float, raw_s: float | None = None,
            codec_s: float | None = None, rss: float | None = None, bound_s: float | None = None, **extra) -> dict:
        row = {"storage": storage, "op": op, "what": what, "seconds": round(seconds, 3),
               "mib_s": round(self.size / seconds, 1), "x_raw": _ratio(raw_s, seconds),
               "x_codec": _ratio(codec_s, seconds), "x_bound": _ratio(bound_s, seconds),
               "peak_rss_mib": round(rss, 1) if rss else None, **extra}
        self.rows.append(row)
        return row

    def restore_dir(self) -> str:
        return os.path.join(self.work, "restore")

    def cleanup_restores(self) -> None:
        shutil.rmtree(self.restore_dir(), ignore_errors=True)
        for name in ("download.tar",):
            if os.path.exists(os.path.join(self.work, name)):
                os.remove(os.path.join(self.work, name))

    def freezer(self, storage: str, options: list[str], raw_put: float, raw_get: float,
                configs: tuple[tuple[str, bool], ...] = CONFIGS) -> None:
        """Backup and restore with every compression, with and without encryption."""
        pass_file = os.path.join(self.work, "pass")
        for compression, encrypt in configs:
            name = f"{compression}{'-enc' if encrypt else ''}"
            args = ["--compression", compression] + (["--encrypt-pass-file", pass_file] if encrypt else [])
            codec = self.codec_time(compression, pass_file if encrypt else None)
            repeat = None if name == "none" else 1
            seconds, rss = self.agent_best(repeat, *options, "--backup-name", name, "--path-to-backup", self.source,
                                           "--no-incremental", *args)
            bound = max(raw_put, self.tar_create_s, codec or 0.0)
            self.add(storage, "backup", f"freezer {name}", seconds, raw_put, codec, rss, bound)
            seconds, rss = self.agent_best(repeat, *options, "--action", "restore", "--backup-name", name,
                                           "--restore-abs-path", self.restore_dir(), *args)
            self.add(storage, "restore", f"freezer {name}", seconds, raw_get, None, rss,
                     max(raw_get, self.tar_extract_s))

    def codec_time(self, compression: str, pass_file: str | None) -> float | None:
        """Seconds for the codecs alone on the stream (measured once per combination)."""
        if compression == "none" and not pass_file:
            return None
        key = (compression, bool(pass_file))
        if key not in self.codecs:
            self.codecs[key] = self.timed(functools.partial(raw.codec_alone, self.tar_path, compression, pass_file), 1)
        return self.codecs[key]

    def agent_best(self, repeat: int | None, *args: str) -> tuple[float, float]:
        """Best time of the agent over ``repeat`` runs, and its peak RSS."""
        peaks: list[float] = []
        seconds = self.timed(lambda: peaks.append(run_agent(list(args))[1]), repeat)
        return seconds, max(peaks)


def _ratio(reference: float | None, seconds: float) -> float | None:
    return round(reference / seconds, 2) if reference else None


def tar_rows(bench: Bench) -> None:
    """tar alone at each end of the pipeline: no backup or restore can beat its slower end."""
    bench.tar_create_s = bench.timed(lambda: raw.tar_create_alone(bench.source))
    bench.add("any", "backup", "tar --create alone (producer)", bench.tar_create_s)
    bench.tar_extract_s = bench.timed(lambda: raw.tar_extract_piped(bench.tar_path, bench.restore_dir()))
    bench.add("any", "restore", "cat | tar --extract (consumer)", bench.tar_extract_s)


def local_rows(bench: Bench) -> None:
    copy = os.path.join(bench.work, "copy.tar")
    put = bench.timed(lambda: raw.cp_fsync(bench.tar_path, copy))
    bench.add("local", "backup", "cp + fsync (raw)", put)
    extract = bench.timed(lambda: raw.tar_extract(bench.tar_path, bench.restore_dir()))
    bench.add("local", "restore", "tar -x of the stream (raw)", extract)
    bench.freezer("local", ["--storage", "local", "--container", os.path.join(bench.work, "local")], put, extract)


def ftp_rows(bench: Bench, tls: bool, with_peers: bool) -> None:
    kind = "ftps" if tls else "ftp"
    server = PyFtpd(os.path.join(bench.work, kind), tls)
    server.setUp()
    try:
        target = os.path.join(bench.work, "download.tar")
        put = bench.timed(lambda: raw.ftp_put(server, bench.tar_path, tls))
        bench.add(kind, "backup", "ftplib storbinary (raw)", put)
        get = bench.timed(lambda: raw.ftp_get(server, target, tls))
        bench.add(kind, "restore", "ftplib retrbinary (raw)", get)
        bench.freezer(kind, server.agent_options(), put, get)
        if with_peers and not tls:
            peer_rows(bench, kind, server)
    finally:
        server.cleanUp()


def sftp_rows(bench: Bench, with_peers: bool) -> None:
    server = Sshd(os.path.join(bench.work, "ssh"))
    server.setUp()
    try:
        target = os.path.join(bench.work, "download.tar")
        put = bench.timed(lambda: raw.openssh_sftp(server, bench.work, f"put {bench.tar_path} {server.root}/raw.tar"))
        bench.add("sftp", "backup", "OpenSSH sftp put (raw)", put)
        get = bench.timed(lambda: raw.openssh_sftp(server, bench.work, f"get {server.root}/raw.tar {target}"))
        bench.add("sftp", "restore", "OpenSSH sftp get (raw)", get)
        putfo = bench.timed(lambda: raw.paramiko_put(server, bench.tar_path))
        bench.add("sftp", "backup", "paramiko putfo", putfo, put)
        bench.add("sftp", "restore", "paramiko getfo", bench.timed(lambda: raw.paramiko_get(server, target)), get)
        bench.freezer("sftp", server.agent_options(), put, get)
        if with_peers:
            peer_rows(bench, "sftp", server)
    finally:
        server.cleanUp()


PEERS = {"local": ("restic", "duplicity"), "sftp": ("restic", "duplicity"), "ftp": ("duplicity",)}
COMPARED_WITH = {"restic": "freezer zstd-enc", "duplicity": "freezer gzip"}


def peer_url(tool: str, storage: str, bench: Bench, server) -> str:
    """Where the peer keeps its repository: beside the agent's backups, on the same server."""
    if storage == "ftp":
        # lftp (duplicity's FTP backend) stalls 30 s on a first "cd" into a missing directory.
        os.makedirs(os.path.join(server.root, f"{tool}-repo"), exist_ok=True)
        return f"ftp://{server.username}@127.0.0.1:{server.port}/{tool}-repo"
    repo = os.path.join(server.root if server else bench.work, f"{tool}-repo")
    if tool == "restic":
        return repo
    return f"sftp://{server.username}@127.0.0.1:{server.port}/{repo}" if server else f"file://{repo}"


def peer_rows(bench: Bench, storage: str, server=None) -> None:
    """restic (compared with freezer zstd-enc) and duplicity (with freezer gzip) on the same storage."""
    for tool in PEERS[storage]:
        compare = COMPARED_WITH[tool]
        if not peers.available(tool, storage):
            bench.rows.append({"storage": storage, "op": "backup", "what": f"{tool}: not installed"})
            continue
        url = peer_url(tool, storage, bench, server)
        peer = peers.Restic(url, bench.work, server) if tool == "restic" else peers.Duplicity(url, bench.work, server)
        try:
            peer.init()
            for op, action in (("backup", functools.partial(peer.backup, bench.source)),
                               ("restore", functools.partial(peer.restore, bench.restore_dir()))):
                seconds = bench.timed(action, 1)
                ours = _find(bench.rows, storage, op, compare)
                bench.add(storage, op, tool, seconds, freezer_faster=_ratio(seconds, ours["seconds"]) if ours else None)
        except RuntimeError as exc:
            bench.rows.append({"storage": storage, "op": "backup", "what": f"{tool}: failed ({exc})"})


def _find(rows: list[dict], storage: str, op: str, what: str) -> dict | None:
    return next((r for r in rows if (r["storage"], r["op"], r["what"]) == (storage, op, what)), None)


def incremental_rows(bench: Bench) -> None:
    """A level 1 after changing 1% of the files, against the level 0 before it."""
    options = ["--storage", "local", "--container", os.path.join(bench.work, "incremental"), "--backup-name", "i",
               "--path-to-backup", bench.source, "--compression", "none"]
    start = time.perf_counter()
    full, full_rss = run_agent(options)
    full_s = time.perf_counter() - start
    changed = dataset.change_one_percent(bench.source)
    start = time.perf_counter()
    level1, rss = run_agent(options)
    level1_s = time.perf_counter() - start
    bench.add("local", "backup", "freezer level 0 (for level 1)", full_s, rss=full_rss,
              stored_mib=round(full["size"] / MIB, 2))
    bench.add("local", "backup", f"freezer level {level1['level']} after 1% changed", level1_s, rss=rss,
              stored_mib=round(level1["size"] / MIB, 2), changed_mib=round(changed / MIB, 2),
              x_full=_ratio(full_s, level1_s))


def rss_rows(bench: Bench, size_mib: int) -> None:
    """Peak RSS of a local backup and restore of a bigger data set: it must stay flat."""
    source = os.path.join(bench.work, f"rss-{size_mib}")
    dataset.make_data(source, size_mib)
    content_mib = dataset.size_mib(source)
    options = ["--storage", "local", "--container", os.path.join(bench.work, "rss"), "--backup-name", "r"]
    start = time.perf_counter()
    _, backup_rss = run_agent(options, "--path-to-backup", source, "--compression", "zstd")
    backup_s = time.perf_counter() - start
    shutil.rmtree(source)
    bench.cleanup_restores()
    start = time.perf_counter()
    _, restore_rss = run_agent(options, "--action", "restore", "--restore-abs-path", bench.restore_dir())
    restore_s = time.perf_counter() - start
    bench.cleanup_restores()
    for op, seconds, rss in (("backup", backup_s, backup_rss), ("restore", restore_s, restore_rss)):
        row = bench.add("local", op, f"freezer zstd, --size-mib {size_mib}", seconds, rss=rss,
                        content_mib=round(content_mib))
        row["mib_s"] = round(content_mib / seconds, 1)
    shutil.rmtree(os.path.join(bench.work, "rss"), ignore_errors=True)


WAN_CONFIGS = (("none", False), ("zstd", False))


def wan_rows(bench: Bench, link: wan.Link) -> None:
    """ftp and sftp through the delaying relay: the raw transport and the agent over the same link."""
    bench.add("wan", "backup", "line rate alone (size / rate)", bench.size * MIB / link.rate, link=str(link))
    _wan_ftp_rows(bench, link)
    _wan_sftp_rows(bench, link)


def _wan_ftp_rows(bench: Bench, link: wan.Link) -> None:
    ftp_server = PyFtpd(os.path.join(bench.work, "ftp-wan"))
    ftp_server.setUp()
    try:
        with wan.relay_process(("127.0.0.1", ftp_server.port), link, ftp=True) as port:
            server = _through(ftp_server, port)
            put = bench.timed(lambda: raw.ftp_put(server, bench.tar_path))
            bench.add("ftp-wan", "backup", "ftplib storbinary (raw)", put, link=str(link))
            get = bench.timed(lambda: raw.ftp_get(server, os.path.join(bench.work, "download.tar")))
            bench.add("ftp-wan", "restore", "ftplib retrbinary (raw)", get, link=str(link))
            bench.freezer("ftp-wan", server.agent_options(), put, get, WAN_CONFIGS)
    finally:
        ftp_server.cleanUp()


def _wan_sftp_rows(bench: Bench, link: wan.Link) -> None:
    sshd = Sshd(os.path.join(bench.work, "ssh-wan"))
    sshd.setUp()
    try:
        with wan.relay_process(("127.0.0.1", sshd.port), link) as port:
            server = _through(sshd, port)
            put_cmd = f"put {bench.tar_path} {server.root}/raw.tar"
            get_cmd = f"get {server.root}/raw.tar {os.path.join(bench.work, 'download.tar')}"
            put = bench.timed(lambda: raw.openssh_sftp(server, bench.work, put_cmd))
            bench.add("sftp-wan", "backup", "OpenSSH sftp put (raw)", put, link=str(link))
            get = bench.timed(lambda: raw.openssh_sftp(server, bench.work, get_cmd))
            bench.add("sftp-wan", "restore", "OpenSSH sftp get (raw)", get, link=str(link))
            bench.freezer("sftp-wan", server.agent_options(), put, get, WAN_CONFIGS)
    finally:
        sshd.cleanUp()


def _through(server, port: int):
    """The same server, reached through the relay listening on ``port``."""
    via = copy.copy(server)
    via.port = port
    return via


def make_bench(work: str, size_mib: int, repeat: int) -> Bench:
    """A data set of ``size_mib`` under ``work``, its tar stream, and a Bench measuring it."""
    os.makedirs(work, exist_ok=True)
    source = os.path.join(work, "data")
    dataset.make_data(source, size_mib)
    with open(os.path.join(work, "pass"), "w") as out:
        out.write("benchmark pass phrase\n")
    tar_path = os.path.join(work, "data.tar")
    subprocess.run(["tar", "--create", "--format=posix", f"--file={tar_path}", f"--directory={source}", "."],
                   check=True)
    return Bench(work, source, tar_path, repeat)


def measure(size_mib: int, repeat: int = REPEAT, with_peers: bool = True, rss_check_mib: int = 0,
            storages: tuple[str, ...] = ("local", "ftp", "ftps", "sftp"), work_dir: str | None = None,
            wan_link: str | None = None, wan_size_mib: int | None = None) -> list[dict]:
    work = tempfile.mkdtemp(prefix="freezer-bench-", dir=work_dir)
    try:
        bench = make_bench(work, size_mib, repeat)
        tar_rows(bench)
        if "local" in storages:
            local_rows(bench)
            if with_peers:
                peer_rows(bench, "local")
            _forget(work, "local", "restic-repo", "duplicity-repo")
        for kind in ("ftp", "ftps"):
            if kind in storages:
                ftp_rows(bench, kind == "ftps", with_peers)
                _forget(work, kind)
        if "sftp" in storages:
            sftp_rows(bench, with_peers)
            _forget(work, "ssh")
        incremental_rows(bench)
        if rss_check_mib:
            rss_rows(bench, rss_check_mib)
        if wan_link:
            far = make_bench(os.path.join(work, "wan"), wan_size_mib or size_mib, repeat)
            wan_rows(far, wan.Link.parse(wan_link))
            bench.rows += far.rows
        return bench.rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _forget(work: str, *names: str) -> None:
    """Remove what one storage's runs stored, so a RAM-backed --work-dir holds the whole run."""
    for name in names:
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def table(rows: list[dict]) -> str:
    head = (f"{'storage':<8} {'op':<8} {'what':<34} {'sec':>7} {'MiB/s':>7} {'x raw':>6} {'x codec':>7} "
            f"{'x bound':>7} {'RSS MiB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "seconds" not in r:
            lines.append(f"{r['storage']:<8} {r['op']:<8} {r['what']}")
            continue
        note = "".join(f"  {k}={r[k]}" for k in NOTES if k in r)
        lines.append(f"{r['storage']:<8} {r['op']:<8} {r['what']:<34} {r['seconds']:>7} {r['mib_s']:>7} "
                     f"{r['x_raw'] or '':>6} {r['x_codec'] or '':>7} {r.get('x_bound') or '':>7} "
                     f"{r['peak_rss_mib'] or '':>7}{note}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=REPEAT, help="best of N for raw and uncompressed runs")
    parser.add_argument("--rss-check-mib", type=int, default=4096, help="also back up a data set this big (0: skip)")
    parser.add_argument("--no-peers", action="store_true", help="skip restic and duplicity")
    parser.add_argument("--storages", default="local,ftp,ftps,sftp")
    parser.add_argument("--work-dir", help="where data, stores and servers live (e.g. /dev/shm: no disk noise)")
    parser.add_argument("--json")
    parser.add_argument("--wan", metavar="RTT,RATE", help="add ftp and sftp over a long link, e.g. 40ms,200mbit")
    parser.add_argument("--wan-size-mib", type=int, default=256, help="data set for the --wan rows")
    args = parser.parse_args()
    if args.wan:
        wan.Link.parse(args.wan)  # a typo fails now, not after the loopback rows
    rows = measure(args.size_mib, args.repeat, not args.no_peers, args.rss_check_mib,
                   tuple(s for s in args.storages.split(",") if s), args.work_dir, args.wan, args.wan_size_mib)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"size_mib": args.size_mib, "cores": os.cpu_count(), "rows": rows}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
