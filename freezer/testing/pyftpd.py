"""A pyftpdlib server for tests: ``python -m freezer.testing.pyftpd --root DIR ...``.

Prints its port on the first line of stdout, then serves until killed.
"""

from __future__ import annotations

import argparse
import logging
import socket
import struct

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

FULL_PERMISSIONS = "elradfmwMT"
READ_ONLY = "elr"


class LossyFilesystem(AbstractedFS):
    """A server that quietly keeps only the first bytes of each upload, then claims success."""

    def __init__(self, root, handler, keep: int):
        super().__init__(root, handler)
        self.keep = keep

    def open(self, filename, mode):
        handle = super().open(filename, mode)
        return LossyFile(handle, self.keep) if "w" in mode else handle


class LossyFile:
    """A file that drops whatever is written past ``keep`` bytes, and says it wrote it."""

    def __init__(self, handle, keep: int):
        self.handle = handle
        self.room = keep

    def write(self, data: bytes) -> int:
        self.handle.write(data[: self.room])
        self.room = max(0, self.room - len(data))
        return len(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def answering_data_handler(base: type) -> type:
    """A data channel class that answers 426 when the stored file cannot be closed.

    pyftpdlib 2.2 closes an upload's file without catching its error: when the disk fills while the
    last buffered bytes are flushed, it never replies, and the client waits for its timeout.
    """

    class AnsweringDTPHandler(base):
        def close(self):
            if not self._closed and self.receive and self.file_obj is not None and not self.file_obj.closed:
                try:
                    self.file_obj.close()
                except OSError as err:
                    self.transfer_finished = False
                    self._resp = (f"426 {err.strerror or err}; transfer aborted.", logging.warning)
            super().close()

    return AnsweringDTPHandler


def cutting_data_handler(base: type, after: int, reset: bool) -> type:
    """A data channel class whose first download longer than ``after`` bytes is cut there, once.

    The server closes the data connection (replying ``426 Transfer aborted; N bytes transmitted``),
    or with ``reset`` drops it with a TCP reset, as a broken link would.
    """

    class CuttingDTPHandler(base):
        armed = True

        def send(self, data):
            if CuttingDTPHandler.armed and not self.receive and self.tot_bytes_sent + len(data) > after:
                CuttingDTPHandler.armed = False
                sent = super().send(data[: after - self.tot_bytes_sent])
                if reset:
                    self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.handle_close()
                return sent
            return super().send(data)

    return CuttingDTPHandler


def require_client_certificate(handler: type, ca_file: str) -> None:
    """Refuse TLS to clients without a certificate signed by ``ca_file``."""
    from OpenSSL import SSL

    context = handler.get_ssl_context()
    context.load_verify_locations(ca_file)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda conn, cert, err, depth, ok: ok)
    context.set_session_id(b"freezer-test")  # OpenSSL resumes verified sessions only with an id context


def handler_class(args: argparse.Namespace) -> type:
    """The handler for the options: plain or TLS, honest or pretending to be full."""
    base = TLS_FTPHandler if args.cert else FTPHandler

    class Handler(base):
        refused = 0

        def handle(self):
            if Handler.refused < args.refuse_first:
                Handler.refused += 1
                self.respond("421 Service not available, try again later.")
                self.close_when_done()
                return None
            return super().handle()

        def ftp_STOR(self, file, mode="w"):
            if args.lose_after is not None:
                self.fs = LossyFilesystem(self.fs.root, self, args.lose_after)
            if args.full:
                self.respond("552 Requested file action aborted. Exceeded storage allocation.")
                return None
            return super().ftp_STOR(file, mode)

    if args.cert:
        Handler.certfile, Handler.keyfile = args.cert, args.key
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        if args.client_ca:
            require_client_certificate(Handler, args.client_ca)
    Handler.dtp_handler = answering_data_handler(base.dtp_handler)
    if args.cut_download_after is not None:
        Handler.dtp_handler = cutting_data_handler(Handler.dtp_handler, args.cut_download_after, args.cut_reset)
        Handler.use_sendfile = False  # sendfile bypasses send(), where the cut happens
    if args.no_mlsd:
        Handler.proto_cmds = {k: v for k, v in FTPHandler.proto_cmds.items() if k not in ("MLSD", "MLST")}
    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", default="freezer")
    parser.add_argument("--password", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA")
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--no-mlsd", action="store_true")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (::1 for IPv6)")
    parser.add_argument("--lose-after", type=int, help="keep only this many bytes of each upload, say 226")
    parser.add_argument("--cut-download-after", type=int,
                        help="cut the data connection of the first download longer than this many bytes")
    parser.add_argument("--cut-reset", action="store_true", help="cut with a TCP reset instead of 426")
    parser.add_argument("--refuse-first", type=int, default=0, help="answer 421 to the first N connections")
    parser.add_argument("--max-cons", type=int, default=0, help="answer 421 beyond this many connections at once")
    args = parser.parse_args()
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm=READ_ONLY if args.read_only else FULL_PERMISSIONS)
    handler = handler_class(args)
    handler.authorizer = authorizer
    handler.banner = "freezer test server"
    server = FTPServer((args.host, 0), handler)
    server.max_cons = args.max_cons or server.max_cons
    print(server.address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
