"""A long link on loopback: a TCP relay that adds a round-trip delay and caps bandwidth (no netem here).

``python -m benchmarks.wan --target 127.0.0.1:PORT --link 100ms,1gbit,4mib [--ftp]`` listens on a
free loopback port and prints it. Every byte relayed in one direction waits for its turn on that
direction's link (shared by all connections, as one line is), then arrives half the round trip
after it was sent; opening a connection costs one round trip. The optional third field is TCP's
window: each connection, each way, may have at most that many bytes sent but not yet delivered and
acknowledged (the acknowledgement takes half the round trip back), so one connection moves at most
a window per round trip, as a real TCP connection with that send buffer does. With ``--ftp`` the server's PASV and
EPSV replies are rewritten so each data connection passes through the same link (plain FTP only:
the control channel of FTPS is encrypted).

What it models: application round trips (SSH channel windows, SFTP requests in flight, FTP
commands), the line rate and, with a window, TCP's per-connection limit. What it cannot: slow start,
loss and congestion control.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import queue
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

CHUNK = 32 << 10  # bytes relayed at once, at least: 1.3 ms at 200 Mbit/s, so pacing stays smooth
MAX_CHUNK = 1 << 20  # at most: on a fast line, fewer, larger reads keep the relay's own CPU down
# How far reading may run ahead of the line: a late wake-up on a busy machine must not idle the line.
SLACK = 0.005
PASV = re.compile(rb"^227 .*?\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)")
EPSV = re.compile(rb"^(229 .*?\(\|\|\|)(\d+)(\|\))")
UNITS = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
WINDOW_UNITS = {"kib": 1 << 10, "mib": 1 << 20}


@dataclasses.dataclass(frozen=True)
class Link:
    """Round trip in seconds, rate in bytes per second, and TCP window in bytes (0: unbounded)."""

    rtt: float
    rate: float
    window: int = 0

    @classmethod
    def parse(cls, spec: str) -> Link:
        """``40ms,200mbit`` (also ``0.04s``, ``1gbit``, ``500kbit``), optionally ``,4mib`` (or ``512kib``)."""
        delay, rate, window = ([*spec.lower().replace(" ", "").split(","), ""])[:3]
        match = re.fullmatch(r"([\d.]+)(ms|s)", delay)
        speed = re.fullmatch(r"([\d.]+)(kbit|mbit|gbit)", rate)
        size = re.fullmatch(r"(\d+)(kib|mib)", window) if window else None
        if not match or not speed or (window and not size) or spec.count(",") > 2:
            raise ValueError(f"--wan {spec!r}: expected a delay, a rate and maybe a window, such as 100ms,1gbit,4mib")
        seconds = float(match[1]) / (1000 if match[2] == "ms" else 1)
        return cls(seconds, float(speed[1]) * UNITS[speed[2]], int(size[1]) * WINDOW_UNITS[size[2]] if size else 0)

    def __str__(self) -> str:
        window = f",{self.window >> 10}kib" if self.window % (1 << 20) else f",{self.window >> 20}mib"
        return f"{self.rtt * 1000:g}ms,{self.rate * 8 / 1e6:g}mbit" + (window if self.window else "")

    def one_stream(self) -> float:
        """The most one connection can move, in bytes per second: min(rate, window / round trip)."""
        return min(self.rate, self.window / self.rtt) if self.window and self.rtt else self.rate


class Line:
    """One direction of the link: bytes leave one after another at ``rate``."""

    def __init__(self, rate: float):
        self.rate = rate
        self.free_at = 0.0
        self._lock = threading.Lock()

    def send(self, size: int) -> float:
        """Reserve the line for ``size`` bytes; return when their last byte has left."""
        with self._lock:
            self.free_at = max(self.free_at, time.monotonic()) + size / self.rate
            return self.free_at


class Relay:
    """Listens on 127.0.0.1 and forwards every connection to ``target`` over the link."""

    def __init__(self, target: tuple[str, int], link: Link, ftp: bool = False):
        self.target, self.link, self.ftp = target, link, ftp
        self.up, self.down = Line(link.rate), Line(link.rate)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.relayed = 0

    def start(self) -> Relay:
        threading.Thread(target=self._accept, args=(self.listener, self.target, self.ftp, False), daemon=True).start()
        return self

    def close(self) -> None:
        self.listener.close()

    def _accept(self, listener: socket.socket, target: tuple[str, int], ftp: bool, once: bool) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client, target, ftp), daemon=True).start()
            if once:
                listener.close()
                return

    def _connect(self, client: socket.socket, target: tuple[str, int], ftp: bool) -> None:
        time.sleep(self.link.rtt)  # the handshake's round trip
        try:
            server = socket.create_connection(target)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rewrite = _LineRewriter(self._data_relay, target[0]) if ftp else None
        ends = threading.Barrier(2, action=lambda: _close(client, server))
        _Pump(client, server, self.up, self.link, None, ends, self).start()
        _Pump(server, client, self.down, self.link, rewrite, ends, self).start()

    def _data_relay(self, host: str, port: int) -> int:
        """A one-connection relay for an FTP data connection to ``host:port``; returns its port."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(60)
        threading.Thread(target=self._accept, args=(listener, (host, port), False, True), daemon=True).start()
        return listener.getsockname()[1]


class _Pump:
    """Moves one direction of one connection: read, wait for the line, deliver after the delay.

    With a window, reading stops while ``window`` bytes are unacknowledged: a byte is acknowledged
    half a round trip after it was delivered.
    """

    def __init__(self, source, sink, line: Line, link: Link, rewrite, ends: threading.Barrier, relay: Relay):
        self.source, self.sink, self.line, self.one_way = source, sink, line, link.rtt / 2
        self.window = link.window
        self.rewrite, self.ends, self.relay = rewrite, ends, relay
        self.in_flight: queue.SimpleQueue = queue.SimpleQueue()
        self.unacked = 0
        self.acks: collections.deque = collections.deque()  # (when, bytes) acknowledgements on their way
        self.acked = threading.Condition()
        self.chunk = int(min(MAX_CHUNK, max(CHUNK, link.rate * 0.008)))  # about 8 ms of the line

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._deliver, daemon=True).start()

    def _read(self) -> None:
        try:
            while self._wait_for_window() and (data := self.source.recv(self._room())):
                if self.rewrite:
                    data = self.rewrite(data)
                left = self.line.send(len(data))
                self.in_flight.put((left + self.one_way, data))
                self.unacked += len(data)
                _sleep_until(left - SLACK)  # the sender's queue: read no faster than the line drains
        except OSError:
            pass
        self.in_flight.put((time.monotonic() + self.one_way, None))

    def _deliver(self) -> None:
        try:
            while True:
                due, data = self.in_flight.get()
                _sleep_until(due)
                if data is None:
                    self.sink.shutdown(socket.SHUT_WR)
                    break
                self.sink.sendall(data)
                self.relay.relayed += len(data)
                if self.window:
                    with self.acked:
                        self.acks.append((time.monotonic() + self.one_way, len(data)))
                        self.acked.notify()
        except OSError:
            _reset(self.source)
        with contextlib.suppress(threading.BrokenBarrierError):
            self.ends.wait()


    def _room(self) -> int:
        return min(self.chunk, self.window - self.unacked) if self.window else self.chunk

    def _wait_for_window(self) -> bool:
        """Block until the window has room (acknowledgements that came in free it); always True."""
        if not self.window:
            return True
        with self.acked:
            while True:
                now = time.monotonic()
                while self.acks and self.acks[0][0] <= now:
                    self.unacked -= self.acks.popleft()[1]
                if self.unacked < self.window:
                    return True
                self.acked.wait(self.acks[0][0] - now if self.acks else None)


class _LineRewriter:
    """Passes FTP control replies line by line, pointing PASV/EPSV replies at a data relay."""

    def __init__(self, data_relay: Callable[[str, int], int], server_host: str):
        self.data_relay, self.server_host = data_relay, server_host
        self.pending = b""

    def __call__(self, data: bytes) -> bytes:
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        return b"".join(self._line(line) + b"\n" for line in lines)

    def _line(self, line: bytes) -> bytes:
        if match := PASV.match(line):
            host = ".".join(g.decode() for g in match.groups()[:4])
            port = self.data_relay(host, int(match[5]) * 256 + int(match[6]))
            return b"227 Entering Passive Mode (127,0,0,1,%d,%d).\r" % (port >> 8, port & 255)
        if match := EPSV.match(line):
            port = self.data_relay(self.server_host, int(match[2]))
            return match[1] + str(port).encode() + match[3] + b"\r"
        return line


def _sleep_until(moment: float) -> None:
    wait = moment - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def _reset(sock: socket.socket) -> None:
    """The far end went away mid-stream: end the other side with a reset, as TCP would, not a FIN.

    A FIN alone leaves a sender that never reads its control connection (vsftpd) blocked on a
    zero window for its whole timeout; the reset fails its write at once. It goes out on close.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def relay_process(target: tuple[str, int], link: Link, ftp: bool = False) -> Iterator[int]:
    """The relay in its own process (the harness's own clients would share its GIL); yields its port."""
    argv = [sys.executable, "-m", "benchmarks.wan", "--target", f"{target[0]}:{target[1]}", "--link", str(link)]
    proc = subprocess.Popen(argv + (["--ftp"] if ftp else []), stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the WAN relay did not start: {line!r}")
        yield int(line)
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to relay to")
    parser.add_argument("--link", default="40ms,200mbit", help="round trip, rate, maybe window: 100ms,1gbit,4mib")
    parser.add_argument("--ftp", action="store_true", help="rewrite PASV/EPSV replies (plain FTP)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    relay = Relay((host, int(port)), Link.parse(args.link), args.ftp).start()
    print(relay.port, flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
