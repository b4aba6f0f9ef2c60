"""A small scripted FTP server on 127.0.0.1 that lies when told to: a real protocol peer for tests.

It serves ``root`` honestly (paths resolved as a chrooted server does: ``/..`` is ``/``) and records
every command that changes something, so a test can see what a client asked it to delete. The lies:
logins that need no password, need an account or are refused as busy (421),
extra lines in every MLSD listing below ``lie_under``, an endless listing, a greeting dribbled one
byte at a time or made of random bytes, and ``500 OOPS`` answers to the first RETRs (vsftpd's
reply when its session process died).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import socket
import threading
import time
from collections.abc import Iterator

import fixtures

USER = "hostile"
PASSWORD = "pw-hostile-1"


class HostileFtp(fixtures.Fixture):
    """The server; ``port`` once set up, ``changes`` lists (command, resolved path) in order."""

    host = "127.0.0.1"

    def __init__(self, root: str, *, lie_under: str | None = None, extra_lines: tuple[str, ...] = (),
                 endless_listing: bool = False, greeting: str = "normal", oops_retr: int = 0,
                 login: str = "normal"):
        super().__init__()
        self.root = root
        self.lie_under = lie_under
        self.extra_lines = extra_lines
        self.endless_listing = endless_listing
        self.greeting = greeting
        self.oops_retr = oops_retr
        self.login = login  # "normal", "no-password" (230 to USER), "account" (332 to PASS), "busy" (421 to USER)
        self.changes: list[tuple[str, str]] = []
        self.listing_bytes_sent = 0

    def _setUp(self):
        self._listener = socket.create_server((self.host, 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        self.addCleanup(self._stop)

    def agent_options(self, container: str = "backups") -> list[str]:
        return ["--storage", "ftp", "--container", container, "--ftp-host", self.host,
                "--ftp-port", str(self.port), "--ftp-username", USER, "--ftp-password", PASSWORD]

    def _stop(self) -> None:
        self._stopping.set()
        for sock in [self._listener, *self._open]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            if self.greeting != "normal":
                self._misgreet(conn)
                return
            _Session(self, conn).run()

    def _misgreet(self, conn: socket.socket) -> None:
        """A greeting that never ends (one byte every 0.1 s), or random bytes and then silence."""
        if self.greeting == "garbage":
            conn.sendall(os.urandom(200).replace(b"\n", b"?") + b"\r\n")
            self._stopping.wait(600)
            return
        conn.sendall(b"220-")
        while not self._stopping.wait(0.1):
            conn.sendall(b"x")

    def resolve(self, path: str) -> str:
        """A client path as the local file it names: normalised below ``root``, never above it."""
        return os.path.join(self.root, posixpath.normpath("/" + path).lstrip("/"))

    def listing(self, path: str) -> Iterator[bytes]:
        """MLSD lines of ``path``: the truth, then the lies."""
        if self.endless_listing:
            for start in range(0, 10 ** 9, 1000):
                yield "".join(f"type=file;size=1; f{n:09d}\r\n" for n in range(start, start + 1000)).encode()
        local = self.resolve(path)
        for name in sorted(os.listdir(local)):
            kind = "dir" if os.path.isdir(os.path.join(local, name)) else "file"
            yield f"type={kind}; {name}\r\n".encode()
        if self.lie_under and posixpath.normpath(path).startswith(self.lie_under):
            yield from (f"{line}\r\n".encode() for line in self.extra_lines)


class _Session:
    """One control connection."""

    def __init__(self, server: HostileFtp, conn: socket.socket):
        self.server = server
        self.conn = conn
        self.file = conn.makefile("rb")
        self.passive: socket.socket | None = None
        self.offset = 0
        self.rename_from = ""

    def reply(self, text: str) -> None:
        self.conn.sendall(f"{text}\r\n".encode())

    def run(self) -> None:
        self.reply("220 hostile test server")
        while line := self.file.readline():
            verb, _, arg = line.decode("utf-8", "surrogateescape").rstrip("\r\n").partition(" ")
            handler = getattr(self, f"do_{verb.upper()}", None)
            if handler is None:
                self.reply(f"502 {verb} not implemented")
            elif handler(arg) is False:
                return

    def do_USER(self, arg):
        login = self.server.login
        self.reply({"no-password": "230 no password needed", "busy": "421 too many users, try later"}.get(
            login, "331 password please"))
        return login != "busy"

    def do_PASS(self, arg):
        login = self.server.login
        self.reply({"no-password": "503 already logged in", "account": "332 need account"}.get(login, "230 logged in"))

    def do_TYPE(self, arg):
        self.reply("200 type set")

    def do_OPTS(self, arg):
        self.reply("200 ok")

    def do_PWD(self, arg):
        self.reply('257 "/" is the current directory')

    def do_CWD(self, arg):
        self.reply("250 ok" if os.path.isdir(self.server.resolve(arg)) else "550 no such directory")

    def do_QUIT(self, arg):
        self.reply("221 bye")
        return False

    def do_PASV(self, arg):
        self.passive = socket.create_server((self.server.host, 0))
        port = self.passive.getsockname()[1]
        self.reply(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255})")

    def do_REST(self, arg):
        self.offset = int(arg)
        self.reply(f"350 restarting at {self.offset}")

    def do_SIZE(self, arg):
        path = self.server.resolve(arg)
        self.reply(f"213 {os.path.getsize(path)}" if os.path.isfile(path) else "550 no such file")

    def do_MLSD(self, arg):
        if not os.path.isdir(self.server.resolve(arg)):
            self.reply("550 no such directory")
            return None
        self.send_data(self.server.listing(arg), listing=True)
        return None

    def do_RETR(self, arg):
        if self.server.oops_retr > 0:
            self.server.oops_retr -= 1
            self.reply("500 OOPS: priv_sock_get_cmd")
            return False
        path = self.server.resolve(arg)
        if not os.path.isfile(path):
            self.reply("550 no such file")
            return None
        self.send_data(_chunks(path, self.offset))
        return None

    def do_STOR(self, arg):
        path = self.server.resolve(arg)
        self.server.changes.append(("STOR", path))
        data = self.open_data()
        with data, open(path, "wb") as out:
            while chunk := data.recv(1 << 16):
                out.write(chunk)
        self.reply("226 stored")

    def do_MKD(self, arg):
        self.change("MKD", arg, os.mkdir, '257 "created"')

    def do_RMD(self, arg):
        self.change("RMD", arg, os.rmdir, "250 removed")

    def do_DELE(self, arg):
        self.change("DELE", arg, os.unlink, "250 deleted")

    def do_RNFR(self, arg):
        self.rename_from = arg
        self.reply("350 ready")

    def do_RNTO(self, arg):
        self.change("RNTO", arg, lambda path: os.replace(self.server.resolve(self.rename_from), path), "250 renamed")

    def change(self, verb: str, arg: str, operation, success: str) -> None:
        path = self.server.resolve(arg)
        self.server.changes.append((verb, path))
        try:
            operation(path)
        except OSError as exc:
            self.reply(f"550 {exc.strerror}")
            return
        self.reply(success)

    def open_data(self) -> socket.socket:
        listener, self.passive = self.passive, None
        self.reply("150 opening data connection")
        with listener:
            data, _ = listener.accept()
        return data

    def send_data(self, chunks: Iterator[bytes], listing: bool = False) -> None:
        data = self.open_data()
        self.offset = 0
        try:
            with data:
                for chunk in chunks:
                    data.sendall(chunk)
                    if listing:
                        self.server.listing_bytes_sent += len(chunk)
        except OSError:
            self.reply("426 transfer aborted")
            return
        self.reply("226 done")


def _chunks(path: str, offset: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(1 << 16):
            yield chunk
            time.sleep(0)
