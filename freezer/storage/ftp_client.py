"""FTP and FTPS connections: clients with whole-reply deadlines, TLS.

FTPS is explicit (AUTH TLS) or implicit, verifies the server certificate, and resumes the control
connection's TLS session on data connections, as vsftpd requires. The driver is freezer/storage/ftp.py;
error translation is freezer/storage/ftp_errors.py.
"""

from __future__ import annotations

import ftplib
import logging
import select
import socket
import ssl
import time

from freezer.common.settings import FtpSettings
from freezer.errors import TLSError

LOG = logging.getLogger("freezer.storage.ftp")
MAX_REPLY = 64 << 10  # bytes of one control reply, its continuation lines included


class DeadlineReplies:
    """Each control reply read whole within the socket's timeout, and refused unless it looks like FTP.

    ftplib's timeout is per read: a server dribbling a byte at a time would hold a command forever.
    """

    _pending = b""
    _pending_sock = None

    def getmultiline(self) -> str:
        budget = self.sock.gettimeout() or self.timeout
        deadline = time.monotonic() + budget
        try:
            line = self._line_by(deadline)
            if not (line[:3].isascii() and line[:3].isdigit()):
                raise ftplib.error_proto(f"not an FTP reply: {line[:40]!r}")
            return self._rest_of(line, deadline) if line[3:4] == "-" else line
        finally:
            self.sock.settimeout(budget)

    def reply_within(self, seconds: float) -> bool:
        """Whether the server starts a reply within ``seconds`` (read or not yet), without reading it."""
        if (self._pending_sock is self.sock and self._pending) or (
                isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True  # already read from the socket (by us, or by TLS)
        return bool(select.select([self.sock], [], [], seconds)[0])

    def _rest_of(self, reply: str, deadline: float) -> str:
        """A multi-line reply from its first line on, up to the line with its code and a space."""
        while True:
            line = self._line_by(deadline)
            reply += "\n" + line
            if len(reply) > MAX_REPLY:
                raise ftplib.error_proto(f"a reply longer than {MAX_REPLY} bytes: {reply[:40]!r}")
            if line[:3] == reply[:3] and line[3:4] != "-":
                return reply

    def _line_by(self, deadline: float) -> str:
        """One line of the reply, read before ``deadline``, without its line end."""
        if self._pending_sock is not self.sock:
            self._pending, self._pending_sock = b"", self.sock
        while b"\n" not in self._pending:
            if len(self._pending) > self.maxline:
                raise ftplib.error_proto(f"a reply line longer than {self.maxline} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the server's reply did not end in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(8192)
            if not data:
                raise EOFError
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        return line.rstrip(b"\r").decode(self.encoding, "surrogateescape")


class PlainFTP(DeadlineReplies, ftplib.FTP):
    """Plain FTP with whole-reply deadlines."""


class SessionReusingFTP_TLS(DeadlineReplies, ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


class ImplicitFTP_TLS(SessionReusingFTP_TLS):
    """FTPS where TLS starts with the connection (port 990)."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def new_client(settings: FtpSettings) -> ftplib.FTP:
    """An unconnected client of the kind ``settings`` asks for: plain, explicit or implicit TLS."""
    if not settings.tls:
        return PlainFTP(timeout=settings.timeout)
    cls = ImplicitFTP_TLS if settings.implicit_tls else SessionReusingFTP_TLS
    return cls(context=tls_context(settings), timeout=settings.timeout)


def tls_context(settings: FtpSettings) -> ssl.SSLContext:
    s = settings
    context = ssl.create_default_context()
    try:
        if s.cacert:
            context.load_verify_locations(cafile=s.cacert)
        if s.certfile:
            context.load_cert_chain(s.certfile, s.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load --ftp-cacert/--ftp-certfile/--ftp-keyfile: {exc}") from exc
    if s.insecure:
        LOG.warning("--ftp-insecure: the certificate of %s is NOT verified", s.where)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # TLS 1.3 session tickets arrive after the handshake; some servers (vsftpd)
    # then refuse the data connection. 1.2 resumes the control session reliably.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def keepalive(sock: socket.socket) -> None:
    """TCP keepalive on the control connection, so NAT does not drop it in long transfers."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def close_quietly(ftp: ftplib.FTP) -> None:
    try:
        ftp.close()
    except OSError:
        pass
