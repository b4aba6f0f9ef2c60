"""Backup and restore throughput against the raw transport, the codecs and peer tools, in one run.

``python -m benchmarks.run [--size-mib N] [--repeat N] [--rss-check-mib N] [--no-peers] [--work-dir D] [--json F]
[--wan 40ms,200mbit [--wan-size-mib N]]``
makes a data set, starts the loopback servers the tests use, and prints one table: MiB/s, the
ratio to the raw transport ("x raw"), to the codec alone ("x codec"), to the slowest stage the
pipeline cannot avoid ("x bound": transport, tar or codec alone), peak RSS, the CPU seconds of
each run ("CPU s": user+sys of the process and all its children) and, for agent rows, the ratio
to the floor ("x floor"): the larger of the bound and the CPU seconds of the stages the agent
cannot avoid (tar alone, codec alone, raw transport with its loopback server's CPU, sha256 of the
stored bytes) spread over every core. Before each timed run, memory is written and freed
(benchmarks/prime.py) so that every run starts on the same recycled pages. ``--wan`` adds ftp
(pyftpdlib and/or vsftpd: ``--wan-storages``) and sftp rows over a delaying, rate-capped relay
(benchmarks/wan.py), raw transport included. Before the agent runs, the freezer package is
byte-compiled (``python -m compileall``) so the agent starts as an installed one does, even in an
editable install under PYTHONDONTWRITEBYTECODE=1.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import freezer
from benchmarks import dataset, history, peers, prime, raw, wan
from benchmarks.server_cpu import ServerCpu
from freezer.testing.servers import PyFtpd, Vsftpd
from freezer.testing.sshd import Sshd

AGENT = os.path.join(os.path.dirname(sys.executable), "freezer-agent")
MIB = 1 << 20
REPEAT = 3
NOTES = ("freezer_faster", "stored_mib", "changed_mib", "x_full", "content_mib", "link")
CONFIGS = (("none", False), ("zstd", False), ("gzip", False), ("none", True), ("zstd", True), ("gzip", True))


class AgentRun(NamedTuple):
    """One freezer-agent run: its result document, peak RSS, and CPU seconds (itself and its children)."""

    result: dict
    rss_mib: float
    cpu_s: float


def run_agent(options: list[str], *args: str) -> AgentRun:
    """Run freezer-agent; return its result document, peak RSS in MiB and CPU seconds (from wait4)."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as result, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([AGENT, *options, *args, "--metadata-out", result.name],
                                stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, high_water_kib(proc.pid))
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"freezer-agent {' '.join(args[:4])} failed: {err.read().strip()}")
        return AgentRun(json.load(open(result.name)), peak / 1024, usage.ru_utime + usage.ru_stime)


def compile_package() -> None:
    """Byte-compile freezer, as pip does on install: otherwise each agent run recompiles it."""
    package = os.path.dirname(os.path.abspath(freezer.__file__))
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, stdout=subprocess.DEVNULL)


def cpu_seconds() -> float:
    """User+sys of this process and of the children it has waited for, so far."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def sha256_cpu_per_mib(sample_mib: int = 64) -> float:
    """CPU seconds hashlib's sha256 takes per MiB here (the agent hashes every stored byte)."""
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    start = time.process_time()
    for _ in range(sample_mib):
        digest.update(block)
    return (time.process_time() - start) / sample_mib


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


class Measured(NamedTuple):
    """A measured action: best wall seconds, the least CPU seconds, and the least CPU of the server."""

    seconds: float
    cpu_s: float
    server_cpu_s: float = 0.0


class Bench:
    """Collects rows; each row is one measured action and its ratios."""

    def __init__(self, work: str, source: str, tar_path: str, repeat: int):
        self.work, self.source, self.tar_path, self.repeat = work, source, tar_path, repeat
        self.size = os.path.getsize(tar_path) / MIB
        self.rows: list[dict] = []
        self.codecs: dict[tuple[str, bool, bool], Measured] = {}
        self.tar_create = self.tar_extract = Measured(0.0, 0.0)
        self.sha256_cpu_mib = sha256_cpu_per_mib()
        self.compressions: tuple[str, ...] = ()  # --compressions: only these, unencrypted (empty: every config)
        self.server_pid: int | None = None  # the loopback server's process, whose CPU the runs share

    @contextlib.contextmanager
    def serving(self, server) -> Iterator[None]:
        """Count ``server``'s CPU in the runs measured meanwhile: on loopback it takes the same cores."""
        self.server_pid = server.proc.pid
        try:
            yield
        finally:
            self.server_pid = None

    def timed(self, action: Callable[[], object], repeat: int | None = None) -> Measured:
        """Best of ``repeat`` runs (the disk and CPU here are shared), and the least CPU of them.

        CPU is what the action reports as ``cpu_s`` (the agent's, from wait4), else user+sys of this
        process and of the children it waited for during the run.
        """
        best = cpu = server_cpu = float("inf")
        for _ in range(repeat or self.repeat):
            self.cleanup_restores()
            prime.prime_memory(self.prime_mib())
            os.sync()  # earlier writes flushing to disk would slow this run
            with ServerCpu(self.server_pid) as server:
                used, sampling = cpu_seconds(), server.own_cpu_s
                start = time.perf_counter()
                outcome = action()
                best = min(best, time.perf_counter() - start)
                reported = getattr(outcome, "cpu_s", None)
                spent = cpu_seconds() - used - (server.own_cpu_s - sampling)  # not the sampler's own
            cpu = min(cpu, reported if reported is not None else spent)
            server_cpu = min(server_cpu, server.seconds())
        return Measured(best, cpu, server_cpu)

    def prime_mib(self) -> int:
        """How much memory to recycle before a run: twice the stream, within half of what is free (the
        data set and the stream stay in the page cache)."""
        return int(min(2 * self.size, prime.free_mib() // 2))

    def add(self, storage: str, op: str, what: str, seconds: float, raw_s: float | None = None,
            codec_s: float | None = None, rss: float | None = None, bound_s: float | None = None,
            cpu_s: float | None = None, floor_s: float | None = None, **extra) -> dict:
        row = {"storage": storage, "op": op, "what": what, "seconds": round(seconds, 3),
               "mib_s": round(self.size / seconds, 1), "x_raw": _ratio(raw_s, seconds),
               "x_codec": _ratio(codec_s, seconds), "x_bound": _ratio(bound_s, seconds),
               "peak_rss_mib": round(rss, 1) if rss else None,
               "cpu_s": round(cpu_s, 3) if cpu_s is not None else None,
               "floor_s": round(floor_s, 3) if floor_s else None, "x_floor": _ratio(floor_s, seconds), **extra}
        self.rows.append(row)
        return row

    def record(self, storage: str, op: str, what: str, measured: Measured, raw_s: float | None = None) -> dict:
        """A row for a measured raw or tool run: its time and CPU (and its server's, if it has one)."""
        return self.add(storage, op, what, measured.seconds, raw_s, cpu_s=measured.cpu_s, **self.served(measured))

    def floor(self, bound_s: float, tar: Measured, codec: Measured | None, transport: Measured,
              stored_bytes: int) -> dict:
        """The floor of an agent run and its parts, as row fields.

        The floor is the larger of ``bound_s`` and the CPU seconds of the stages the agent cannot
        avoid (tar, codecs, the transport's client and loopback server, sha256 of the stored bytes)
        spread over every core.
        """
        parts = {"tar_cpu_s": tar.cpu_s, "codec_cpu_s": codec.cpu_s if codec else 0.0,
                 "transport_cpu_s": transport.cpu_s, "transport_server_cpu_s": transport.server_cpu_s,
                 "sha256_cpu_s": self.sha256_cpu_mib * stored_bytes / MIB}
        floor = max(bound_s, sum(parts.values()) / (os.cpu_count() or 1))
        return {"floor_s": floor, **{key: round(value, 3) for key, value in parts.items()}}

    def restore_dir(self) -> str:
        return os.path.join(self.work, "restore")

    def cleanup_restores(self) -> None:
        shutil.rmtree(self.restore_dir(), ignore_errors=True)
        for name in ("download.tar",):
            if os.path.exists(os.path.join(self.work, name)):
                os.remove(os.path.join(self.work, name))

    def freezer(self, storage: str, options: list[str], raw_put: Measured, raw_get: Measured,
                configs: tuple[tuple[str, bool], ...] = CONFIGS) -> None:
        """Backup and restore with every compression, with and without encryption.

        The floor of a backup counts tar --create, the encoding codecs and the upload; of a
        restore, the download, the decoding codecs and tar --extract; both add sha256.
        """
        pass_file = os.path.join(self.work, "pass")
        if self.compressions:
            configs = tuple((c, e) for c, e in configs if c in self.compressions and not e)
        for compression, encrypt in configs:
            name = f"{compression}{'-enc' if encrypt else ''}"
            args = ["--compression", compression] + (["--encrypt-pass-file", pass_file] if encrypt else [])
            codec = self.codec_time(compression, pass_file if encrypt else None)
            decode = self.codec_time(compression, pass_file if encrypt else None, decode=True)
            repeat = None if name == "none" else 1
            run, rss, stored = self.agent_best(repeat, *options, "--backup-name", name,
                                               "--path-to-backup", self.source, "--no-incremental", *args)
            bound = max(raw_put.seconds, self.tar_create.seconds, codec.seconds if codec else 0.0)
            self.add(storage, "backup", f"freezer {name}", run.seconds, raw_put.seconds, codec and codec.seconds,
                     rss, bound, run.cpu_s, **self.served(run), **self.floor(bound, self.tar_create, codec, raw_put,
                                                                             stored))
            run, rss, _ = self.agent_best(repeat, *options, "--action", "restore", "--backup-name", name,
                                          "--restore-abs-path", self.restore_dir(), *args)
            bound = max(raw_get.seconds, self.tar_extract.seconds)
            self.add(storage, "restore", f"freezer {name}", run.seconds, raw_get.seconds, None, rss, bound,
                     run.cpu_s, **self.served(run), **self.floor(bound, self.tar_extract, decode, raw_get, stored))

    def served(self, measured: Measured) -> dict:
        """The run's server CPU as a row field, when a loopback server is counted."""
        return {"server_cpu_s": round(measured.server_cpu_s, 3)} if self.server_pid else {}

    def codec_time(self, compression: str, pass_file: str | None, decode: bool = False) -> Measured | None:
        """The codecs alone on the stream, encoding or decoding (measured once per combination)."""
        if compression == "none" and not pass_file:
            return None
        key = (compression, bool(pass_file), decode)
        if key not in self.codecs:
            if decode:
                encoded = os.path.join(self.work, "encoded")
                raw.codec_alone(self.tar_path, compression, pass_file, encoded)
                self.codecs[key] = self.timed(functools.partial(raw.codec_decode_alone, encoded, compression,
                                                                pass_file), 1)
                os.remove(encoded)
            else:
                self.codecs[key] = self.timed(functools.partial(raw.codec_alone, self.tar_path, compression,
                                                                pass_file), 1)
        return self.codecs[key]

    def agent_best(self, repeat: int | None, *args: str) -> tuple[Measured, float, int]:
        """The agent's best time and least CPU over ``repeat`` runs, its peak RSS and bytes stored."""
        runs: list[AgentRun] = []

        def once() -> AgentRun:
            runs.append(run_agent(list(args)))
            return runs[-1]

        measured = self.timed(once, repeat)
        return measured, max(r.rss_mib for r in runs), runs[-1].result.get("size", 0)


def _ratio(reference: float | None, seconds: float) -> float | None:
    return round(reference / seconds, 2) if reference else None


def tar_rows(bench: Bench) -> None:
    """tar alone at each end of the pipeline: no backup or restore can beat its slower end."""
    bench.tar_create = bench.timed(lambda: raw.tar_create_alone(bench.source))
    bench.record("any", "backup", "tar --create alone (producer)", bench.tar_create)
    bench.tar_extract = bench.timed(lambda: raw.tar_extract_piped(bench.tar_path, bench.restore_dir()))
    bench.record("any", "restore", "tar --extract alone (consumer)", bench.tar_extract)


def local_rows(bench: Bench) -> None:
    copy = os.path.join(bench.work, "copy.tar")
    put = bench.timed(lambda: raw.cp_fsync(bench.tar_path, copy))
    bench.record("local", "backup", "cp + fsync (raw)", put)
    extract = bench.timed(lambda: raw.tar_extract(bench.tar_path, bench.restore_dir()))
    bench.record("local", "restore", "tar -x of the stream (raw)", extract)
    # That raw restore is tar itself: its CPU is already the floor's tar --extract.
    bench.freezer("local", ["--storage", "local", "--container", os.path.join(bench.work, "local")], put,
                  Measured(extract.seconds, 0.0))


def ftp_rows(bench: Bench, tls: bool, with_peers: bool) -> None:
    kind = "ftps" if tls else "ftp"
    server = PyFtpd(os.path.join(bench.work, kind), tls)
    server.setUp()
    try:
        target = os.path.join(bench.work, "download.tar")
        with bench.serving(server):
            put = bench.timed(lambda: raw.ftp_put(server, bench.tar_path, tls))
            bench.record(kind, "backup", "ftplib storbinary (raw)", put)
            get = bench.timed(lambda: raw.ftp_get(server, target, tls))
            bench.record(kind, "restore", "ftplib retrbinary (raw)", get)
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
        with bench.serving(server):
            put = bench.timed(lambda: raw.openssh_sftp(server, bench.work,
                                                       f"put {bench.tar_path} {server.root}/raw.tar"))
            bench.record("sftp", "backup", "OpenSSH sftp put (raw)", put)
            get = bench.timed(lambda: raw.openssh_sftp(server, bench.work, f"get {server.root}/raw.tar {target}"))
            bench.record("sftp", "restore", "OpenSSH sftp get (raw)", get)
            putfo = bench.timed(lambda: raw.paramiko_put(server, bench.tar_path))
            bench.record("sftp", "backup", "paramiko putfo", putfo, put.seconds)
            bench.record("sftp", "restore", "paramiko getfo", bench.timed(lambda: raw.paramiko_get(server, target)),
                         get.seconds)
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
                measured = bench.timed(action, 1)
                ours = _find(bench.rows, storage, op, compare)
                bench.add(storage, op, tool, measured.seconds, cpu_s=measured.cpu_s,
                          freezer_faster=_ratio(measured.seconds, ours["seconds"]) if ours else None)
        except RuntimeError as exc:
            bench.rows.append({"storage": storage, "op": "backup", "what": f"{tool}: failed ({exc})"})


def _find(rows: list[dict], storage: str, op: str, what: str) -> dict | None:
    return next((r for r in rows if (r["storage"], r["op"], r["what"]) == (storage, op, what)), None)


def incremental_rows(bench: Bench) -> None:
    """A level 1 after changing 1% of the files, against the level 0 before it."""
    options = ["--storage", "local", "--container", os.path.join(bench.work, "incremental"), "--backup-name", "i",
               "--path-to-backup", bench.source, "--compression", "none"]
    prime.prime_memory(bench.prime_mib())
    start = time.perf_counter()
    full = run_agent(options)
    full_s = time.perf_counter() - start
    changed = dataset.change_one_percent(bench.source)
    prime.prime_memory(bench.prime_mib())
    start = time.perf_counter()
    level1 = run_agent(options)
    level1_s = time.perf_counter() - start
    bench.add("local", "backup", "freezer level 0 (for level 1)", full_s, rss=full.rss_mib, cpu_s=full.cpu_s,
              stored_mib=round(full.result["size"] / MIB, 2))
    bench.add("local", "backup", f"freezer level {level1.result['level']} after 1% changed", level1_s,
              rss=level1.rss_mib, cpu_s=level1.cpu_s, stored_mib=round(level1.result["size"] / MIB, 2),
              changed_mib=round(changed / MIB, 2), x_full=_ratio(full_s, level1_s))


def rss_rows(bench: Bench, size_mib: int) -> None:
    """Peak RSS of a local backup and restore of a bigger data set: it must stay flat."""
    source = os.path.join(bench.work, f"rss-{size_mib}")
    dataset.make_data(source, size_mib)
    content_mib = dataset.size_mib(source)
    options = ["--storage", "local", "--container", os.path.join(bench.work, "rss"), "--backup-name", "r"]
    start = time.perf_counter()
    backup = run_agent(options, "--path-to-backup", source, "--compression", "zstd")
    backup_s = time.perf_counter() - start
    shutil.rmtree(source)
    bench.cleanup_restores()
    start = time.perf_counter()
    restore = run_agent(options, "--action", "restore", "--restore-abs-path", bench.restore_dir())
    restore_s = time.perf_counter() - start
    bench.cleanup_restores()
    for op, seconds, run in (("backup", backup_s, backup), ("restore", restore_s, restore)):
        row = bench.add("local", op, f"freezer zstd, --size-mib {size_mib}", seconds, rss=run.rss_mib,
                        cpu_s=run.cpu_s, content_mib=round(content_mib))
        row["mib_s"] = round(content_mib / seconds, 1)
    shutil.rmtree(os.path.join(bench.work, "rss"), ignore_errors=True)


WAN_CONFIGS = (("none", False), ("zstd", False))


def wan_rows(bench: Bench, link: wan.Link, storages: tuple[str, ...] = ("ftp", "sftp")) -> None:
    """ftp and sftp through the delaying relay: the raw transport and the agent over the same link.

    ``storages`` name the rows in the order measured: ``ftp`` (pyftpdlib), ``ftp-vsftpd`` (vsftpd, which
    takes offset writes, so parallel in-place uploads) and ``sftp``. The raw ftplib rows also validate
    the relay: their ``x bound`` is their time against one stream's model, size / min(rate, window /
    round trip), so about 1 when the relay's window works.
    """
    bench.add("wan", "backup", "line rate alone (size / rate)", bench.size * MIB / link.rate, link=str(link))
    bench.add("wan", "backup", "one TCP stream, min(rate, W/RTT)", bench.size * MIB / link.one_stream(),
              link=str(link))
    for name in storages:
        if name in WAN_FTP_SERVERS:
            _wan_ftp_rows(bench, link, name)
        else:
            _wan_sftp_rows(bench, link)


# --wan-storages name -> (storage column, FTP server fixture) for the FTP rows over the relay.
WAN_FTP_SERVERS = {"ftp": ("ftp-wan", PyFtpd), "ftp-vsftpd": ("vsftpd-wan", Vsftpd),
                   "ftp-vsftpd-nolock": ("vsftpd-nolock-wan", functools.partial(Vsftpd, lock_uploads=False))}
WAN_STORAGES = (*WAN_FTP_SERVERS, "sftp")


def _wan_ftp_rows(bench: Bench, link: wan.Link, name: str = "ftp") -> None:
    label, server_class = WAN_FTP_SERVERS[name]
    workdir = os.path.join(bench.work, label)
    ftp_server = server_class(workdir)
    ftp_server.setUp()
    try:
        with wan.relay_process(("127.0.0.1", ftp_server.port), link, ftp=True) as port:
            server = _through(ftp_server, port)
            put = bench.timed(lambda: raw.ftp_put(server, bench.tar_path))
            one_stream = bench.size * MIB / link.one_stream()
            bench.add(label, "backup", "ftplib storbinary (raw)", put.seconds, cpu_s=put.cpu_s, link=str(link),
                      bound_s=one_stream)
            get = bench.timed(lambda: raw.ftp_get(server, os.path.join(bench.work, "download.tar")))
            bench.add(label, "restore", "ftplib retrbinary (raw)", get.seconds, cpu_s=get.cpu_s, link=str(link),
                      bound_s=one_stream)
            bench.freezer(label, server.agent_options(), put, get, WAN_CONFIGS)
    finally:
        ftp_server.cleanUp()
        shutil.rmtree(workdir, ignore_errors=True)  # each link's backups would otherwise pile up in RAM


def _wan_sftp_rows(bench: Bench, link: wan.Link) -> None:
    sshd = Sshd(os.path.join(bench.work, "ssh-wan"))
    sshd.setUp()
    try:
        with wan.relay_process(("127.0.0.1", sshd.port), link) as port:
            server = _through(sshd, port)
            put_cmd = f"put {bench.tar_path} {server.root}/raw.tar"
            get_cmd = f"get {server.root}/raw.tar {os.path.join(bench.work, 'download.tar')}"
            put = bench.timed(lambda: raw.openssh_sftp(server, bench.work, put_cmd))
            bench.add("sftp-wan", "backup", "OpenSSH sftp put (raw)", put.seconds, cpu_s=put.cpu_s, link=str(link))
            get = bench.timed(lambda: raw.openssh_sftp(server, bench.work, get_cmd))
            bench.add("sftp-wan", "restore", "OpenSSH sftp get (raw)", get.seconds, cpu_s=get.cpu_s, link=str(link))
            bench.freezer("sftp-wan", server.agent_options(), put, get, WAN_CONFIGS)
    finally:
        sshd.cleanUp()
        shutil.rmtree(os.path.join(bench.work, "ssh-wan"), ignore_errors=True)


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
            wan_links: tuple[str, ...] = (), wan_size_mib: int | None = None,
            wan_storages: tuple[str, ...] = ("ftp", "sftp"), compressions: tuple[str, ...] = ()) -> list[dict]:
    work = tempfile.mkdtemp(prefix="freezer-bench-", dir=work_dir)
    compile_package()
    try:
        bench = make_bench(work, size_mib, repeat)
        bench.compressions = compressions
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
        if wan_links:
            far = make_bench(os.path.join(work, "wan"), wan_size_mib or size_mib, repeat)
            far.compressions = compressions
            for link in wan_links:
                wan_rows(far, wan.Link.parse(link), wan_storages)
            bench.rows += far.rows
        return bench.rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _forget(work: str, *names: str) -> None:
    """Remove what one storage's runs stored, so a RAM-backed --work-dir holds the whole run."""
    for name in names:
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def table(rows: list[dict]) -> str:
    head = (f"{'storage':<10} {'op':<8} {'what':<34} {'sec':>7} {'MiB/s':>7} {'x raw':>6} {'x codec':>7} "
            f"{'x bound':>7} {'RSS MiB':>7} {'CPU s':>6} {'x floor':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "seconds" not in r:
            lines.append(f"{r['storage']:<10} {r['op']:<8} {r['what']}")
            continue
        note = "".join(f"  {k}={r[k]}" for k in NOTES if k in r)
        lines.append(f"{r['storage']:<10} {r['op']:<8} {r['what']:<34} {r['seconds']:>7} {r['mib_s']:>7} "
                     f"{r['x_raw'] or '':>6} {r['x_codec'] or '':>7} {r.get('x_bound') or '':>7} "
                     f"{r['peak_rss_mib'] or '':>7} {_shown(r.get('cpu_s')):>6} {r.get('x_floor') or '':>7}{note}")
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=REPEAT, help="best of N for raw and uncompressed runs")
    parser.add_argument("--rss-check-mib", type=int, default=4096, help="also back up a data set this big (0: skip)")
    parser.add_argument("--no-peers", action="store_true", help="skip restic and duplicity")
    parser.add_argument("--storages", default="local,ftp,ftps,sftp")
    parser.add_argument("--work-dir", help="where data, stores and servers live (e.g. /dev/shm: no disk noise)")
    parser.add_argument("--json")
    parser.add_argument("--wan", metavar="RTT,RATE[,WINDOW]", action="append", default=[],
                        help="add ftp and sftp over a long link, e.g. 100ms,1gbit,4mib (repeat for several links)")
    parser.add_argument("--wan-storages", default="ftp,sftp",
                        help=f"which storages the --wan rows measure, in order, of {','.join(WAN_STORAGES)} "
                             "(ftp is pyftpdlib: no offset writes, so one connection; ftp-vsftpd writes in "
                             "place, one writer at a time as vsftpd locks uploads by default; ftp-vsftpd-nolock "
                             "with lock_upload_files=NO)")
    parser.add_argument("--compressions", default="", help="only these compressions, unencrypted (e.g. none)")
    parser.add_argument("--wan-size-mib", type=int, default=256, help="data set for the --wan rows")
    parser.add_argument("--history", metavar="N,N", help="also info/admin round trips for N stored backups")
    args = parser.parse_args()
    for link in args.wan:
        wan.Link.parse(link)  # a typo fails now, not after the loopback rows
    unknown = set(_names(args.wan_storages)) - set(WAN_STORAGES)
    if unknown:
        parser.error(f"--wan-storages: unknown {', '.join(sorted(unknown))}; choose from {', '.join(WAN_STORAGES)}")
    rows = measure(args.size_mib, args.repeat, not args.no_peers, args.rss_check_mib,
                   tuple(s for s in args.storages.split(",") if s), args.work_dir, tuple(args.wan), args.wan_size_mib,
                   _names(args.wan_storages), _names(args.compressions))
    print(table(rows))
    if args.history:
        history.main_(["--backups", args.history])
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"size_mib": args.size_mib, "cores": os.cpu_count(), "rows": rows}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
