"""What ``--action info`` and ``--action admin`` cost as the history grows: round trips per command.

``python -m benchmarks.history [--backups 3,30,300] [--storages local,ftp,sftp]`` stores N backups
(chains of ten levels) on each storage of the loopback servers the tests use, then runs info and a
dry-run-free admin that removes nothing, in process, and prints the storage calls, the requests on
the wire and the round trips (FTP commands; SFTP waits for replies after a run of requests) and the
time of each. A cost that does not grow with N is what the index and the batched listings are for.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator

from freezer import job, main
from freezer.common import config
from freezer.storage.chains import BackupRef
from freezer.storage.layout import BackupSet
from freezer.testing.counting import CountingStorage, RoundTrips, ftp_round_trips, sftp_round_trips
from freezer.testing.servers import PyFtpd
from freezer.testing.sshd import Sshd

HOST, NAME = "bench-host", "history"
CHAIN = 10
FIRST_TS = 1_700_000_000


def store_history(storage, start: int, stop: int) -> None:
    """Backups ``start`` to ``stop - 1`` of a history of small ones in chains of ``CHAIN`` levels."""
    backups = BackupSet(storage, HOST, NAME)
    for i in range(start, stop):
        ts = FIRST_TS + i * 60
        l0_ts = FIRST_TS + (i - i % CHAIN) * 60
        ref = BackupRef(l0_ts, ts, i % CHAIN)
        backups.claim(ref)
        storage.put_bytes(backups.data_path(ref), b"x" * 100)
        doc = {"engine_name": "tar", "compression": "none", "encryption": False, "level": ref.level,
               "time_stamp": ts, "l0_time_stamp": l0_ts, "data_size": 100}
        backups.write_metadata(ref, doc)
        if hasattr(backups, "add_to_index"):  # the same script measures the code before the index
            from freezer.storage import metadata

            backups.add_to_index(ref, metadata.from_document(doc))


@contextlib.contextmanager
def no_counter() -> Iterator[RoundTrips]:
    yield RoundTrips()


def measure(argv: list[str], action: str, counter) -> dict:
    """One action run in process: storage calls, wire requests and round trips, seconds."""
    conf = config.build([*argv, "--action", action, "--hostname", HOST, "--backup-name", NAME,
                         "--remove-older-than", "36500", "--quiet"])
    storage = CountingStorage(main.make_storage(conf))
    started = time.monotonic()
    try:
        with counter() as wire:
            job.job_class(action)(conf, storage).run()
    finally:
        storage.close()
    return {"calls": storage.total, "requests": wire.requests, "round_trips": wire.round_trips,
            "seconds": time.monotonic() - started}


def storages(workdir: str, wanted: list[str], stack: contextlib.ExitStack):
    """(name, agent options, wire counter) of each storage asked for, its server started."""
    if "local" in wanted:
        yield "local", ["--storage", "local", "--container", os.path.join(workdir, "local")], no_counter
    if "ftp" in wanted:
        yield "ftp", stack.enter_context(PyFtpd(workdir)).agent_options("history"), ftp_round_trips
    if "sftp" in wanted:
        yield "sftp", stack.enter_context(Sshd(workdir)).agent_options(), sftp_round_trips


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backups", default="3,30,300")
    parser.add_argument("--storages", default="local,ftp,sftp")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.backups.split(",")]
    print(f"{'storage':8} {'backups':>7} {'action':6} {'calls':>6} {'requests':>8} {'round trips':>11} {'s':>7}")
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        for name, options, counter in list(storages(workdir, args.storages.split(","), stack)):
            stored = 0
            for count in counts:
                conf = config.build([*options, "--action", "info", "--hostname", HOST, "--backup-name", NAME])
                with contextlib.closing(main.make_storage(conf)) as storage:
                    store_history(storage, stored, count)
                stored = count
                for action in ("info", "admin"):
                    row = measure(options, action, counter)
                    print(f"{name:8} {count:7} {action:6} {row['calls']:6} {row['requests']:8} "
                          f"{row['round_trips']:11} {row['seconds']:7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
