"""A loopback TCP proxy for tests that cuts a connection mid-stream, once, when told to.

Put it between a driver and a real server (SeaweedFS, Swift): traffic passes untouched until
``cut_after(n)``; then the connection that carries the n-th byte from the server is reset, as a
dropped link would be, the next ``reset_next`` connections are reset as soon as they open (the link
is still down), and later connections pass untouched again. ``cut_upload_after(n)`` does the same
for the n-th byte sent to the server, ``link_down(n)`` resets the next ``n`` connections as they
open, and ``connections`` counts every connection opened through the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import fixtures

BUFFER = 64 << 10


class CuttingProxy(fixtures.Fixture):
    """Listens on 127.0.0.1:``port`` and forwards each connection to ``upstream``."""

    def __init__(self, upstream_host: str, upstream_port: int):
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.cuts = 0
        self.connections = 0
        self._budgets: dict[bool, int | None] = {True: None, False: None}  # from the server?: bytes left
        self._reset_next = 0
        self._resets_armed = 0
        self._lock = threading.Lock()

    def _setUp(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()
        self.addCleanup(self._stop)

    def cut_after(self, server_bytes: int, reset_next: int = 0) -> None:
        """Reset the connection that carries byte ``server_bytes`` (counted from now) from the server,
        then the ``reset_next`` connections opened after it."""
        with self._lock:
            self._budgets[True] = server_bytes
            self._resets_armed = reset_next

    def cut_upload_after(self, client_bytes: int, reset_next: int = 0) -> None:
        """Reset the connection that carries byte ``client_bytes`` (counted from now) to the server,
        then the ``reset_next`` connections opened after it."""
        with self._lock:
            self._budgets[False] = client_bytes
            self._resets_armed = reset_next

    def link_down(self, connections: int) -> None:
        """Reset the next ``connections`` connections as soon as they open."""
        with self._lock:
            self._reset_next = connections

    def _stop(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self._take_reset():
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _reset(client)
                continue
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while data := source.recv(BUFFER):
                allowed = self._allowance(len(data), from_server)
                sink.sendall(data[:allowed])
                if allowed < len(data):
                    _reset(sink)
                    _reset(source)
                    return
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _allowance(self, size: int, from_server: bool) -> int:
        """How many of ``size`` bytes one way (from the server, or to it) may pass before the cut."""
        with self._lock:
            budget = self._budgets[from_server]
            if budget is None:
                return size
            if size <= budget:
                self._budgets[from_server] = budget - size
                return size
            self._budgets[from_server] = None
            self.cuts += 1
            self._reset_next, self._resets_armed = self._resets_armed, 0
            return budget

    def _take_reset(self) -> bool:
        with self._lock:
            if self._reset_next:
                self._reset_next -= 1
                return True
            return False


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a dropped link or a killed peer looks to the other end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes the other pump's recv without sending a FIN
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
