"""Logged-in FTP sessions and data transfers that open in one round trip.

ftplib spends a round trip on each of PASV, REST and RETR/STOR; here the three go out together
and their replies are read in order, which FTP servers handle as a queue of commands.
"""

from __future__ import annotations

import ftplib
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from freezer.errors import AuthError, StorageError, TLSError
from freezer.storage.ftp_client import FtpSettings, close_quietly, keepalive, new_client
from freezer.storage.ftp_errors import REASON_WAIT, reply_of, server_reason, translate

LOG = logging.getLogger("freezer.storage.ftp")
# Bytes of a segment sent before the server's 150 (plain FTP, passive), at most, and only what the
# send buffer takes at once: the data moves a round trip sooner, and a server that refuses without
# reading the data connection never keeps the upload waiting.
SEGMENT_EARLY_BYTES = 2 << 20


class Session(NamedTuple):
    """A logged-in client, the round trip its ``TYPE I`` took (seconds) and, if asked, the login directory."""

    ftp: ftplib.FTP
    round_trip: float
    home: str | None = None


def open_session(settings: FtpSettings, ask_home: bool = False, measure: bool = True) -> Session:
    """A client logged in, in binary mode; ``ask_home`` also asks PWD.

    USER, PASS, TYPE I and PWD go out in one write (over TLS: USER and PASS, then PBSZ, PROT, TYPE I
    and PWD): a login costs one round trip after the greeting, two over TLS. ``measure`` times the
    round trip on the first reply of that write, which the server sends at once.
    """
    s = settings
    ftp = new_client(s)
    after = ["TYPE I"] + (["PWD"] if ask_home else [])
    try:
        ftp.connect(s.host, s.port, timeout=s.timeout)
        keepalive(ftp.sock)
        if s.tls and not s.implicit_tls:
            _auth_tls(ftp, s)
        replies, round_trip = _login(ftp, s, [] if s.tls else after)
        if s.tls:
            replies, round_trip = _protect_data(ftp, after)
        ftp.set_pasv(not s.active)
        home = ftplib.parse257(replies[-1]) if ask_home else None
    except BaseException as exc:
        close_quietly(ftp)
        raise translate(exc, "connect", s) from exc
    return Session(ftp, round_trip if measure else 0.0, home)


def _auth_tls(ftp: ftplib.FTP_TLS, s: FtpSettings) -> None:
    try:
        ftp.auth()
    except ftplib.error_perm as exc:
        raise TLSError(f"{s.where} does not offer TLS (AUTH TLS refused: {reply_of(exc)}); "
                       "use --storage ftp only on a trusted network") from exc


def _login(ftp: ftplib.FTP, s: FtpSettings, then: list[str]) -> tuple[list[str], float]:
    """USER and PASS in one write (with ``then``, whose replies must be 2xx); those replies and the
    seconds until the first reply. A refusal of either is the login's (a 4xx one is worth a retry)."""
    user = s.username or "anonymous"
    password = s.password or ("anonymous@" if user == "anonymous" else "")
    started = time.monotonic()
    send_together(ftp, [f"USER {user}", f"PASS {password}", *then])
    first = _judged(ftp.getmultiline(), s)
    round_trip = time.monotonic() - started
    second = ftp.getmultiline()
    if not first.startswith(("230", "331")):
        raise AuthError(f"login to {s.where} as {user!r} refused ({first}): check --ftp-username")
    if first.startswith("331"):
        _judged(second, s)
        if not second.startswith(("230", "202")):
            raise AuthError(f"login to {s.where} as {user!r} needs an account (ACCT), which freezer does not send")
    # (230 first: no password needed; PASS was answered 503 or 230, logged in either way)
    return [ftp.voidresp() for _ in then], round_trip


def _judged(reply: str, s: FtpSettings) -> str:
    """``reply``, unless it refuses: 4xx raised as ftplib's temporary error, 5xx as a refused login."""
    if reply[:1] == "4":
        raise ftplib.error_temp(reply)
    if reply[:1] == "5":
        raise AuthError(f"login to {s.where} as {s.username!r} refused ({reply}): "
                        "check --ftp-username and --ftp-password")
    return reply


def _protect_data(ftp: ftplib.FTP_TLS, then: list[str]) -> tuple[list[str], float]:
    """PBSZ 0 and PROT P in one write (with ``then``): data connections in TLS too (ftplib's prot_p
    does it in two). The replies to ``then`` and the seconds until the first reply."""
    started = time.monotonic()
    send_together(ftp, ["PBSZ 0", "PROT P", *then])
    ftp.voidresp()
    round_trip = time.monotonic() - started
    ftp.voidresp()
    ftp._prot_p = True
    return [ftp.voidresp() for _ in then], round_trip


def start_transfer(ftp: ftplib.FTP, cmd: str, rest: int | None = None, first: Sequence[str] = (),
                   replies: list[str] | None = None, mark: bool = True) -> socket.socket:
    """The data connection of ``cmd`` (RETR/STOR path), its PASV/EPSV, REST and command sent at once.

    ``first``, commands sent ahead of them, have their replies appended to ``replies``, unjudged.
    ``mark=False`` returns the bare connection before the server's 1xx reply, which the caller
    reads with ``read_mark`` once its data is sent (then ``protected`` for TLS). Active mode falls
    back to ftplib's one command per round trip. After a failure the control connection may hold
    unread replies: the caller drops it.
    """
    if not ftp.passiveserver:
        for command in first:
            ftp.putcmd(command)
            replies.append(ftp.getmultiline())
        return ftp.transfercmd(cmd, rest)
    epsv = ftp.af == socket.AF_INET6
    lines = ["EPSV" if epsv else "PASV"] + ([f"REST {rest}"] if rest else []) + [cmd]
    send_together(ftp, [*first, *lines])
    if first:
        replies.extend(ftp.getmultiline() for _ in first)
    try:
        reply = ftp.getresp()
    except ftplib.Error:
        for _ in lines[1:]:
            ftp.getmultiline()  # the replies to the commands that followed
        raise
    host, port = (ftplib.parse229(reply, ftp.sock.getpeername()) if epsv else _pasv_address(ftp, reply))
    try:
        conn = socket.create_connection((host, port), ftp.timeout, source_address=ftp.source_address)
    except OSError:
        _raise_server_reason(ftp, len(lines) - 1)  # a server that gave up on the command says why
        raise
    try:
        rest_reply = ftp.getmultiline() if rest else "350"
        if not rest_reply.startswith("3"):
            raise ftplib.error_reply(rest_reply)  # a refused REST must not let the transfer start from byte 0
        if not mark:
            return conn
        reply = ftp.getresp()
        if not reply.startswith("1"):
            raise ftplib.error_reply(reply)
        return protected(ftp, conn)
    except BaseException:
        conn.close()
        raise


def protected(ftp: ftplib.FTP, conn: socket.socket) -> socket.socket:
    """A data connection in TLS when the session protects data (PROT P), resuming the control's session."""
    if getattr(ftp, "_prot_p", False):
        return ftp.context.wrap_socket(conn, server_hostname=ftp.host, session=ftp.sock.session)
    return conn


def read_mark(ftp: ftplib.FTP) -> bool:
    """The 1xx reply of a transfer started with ``mark=False``; False when the server answered with
    its final 2xx at once (then there is no reply left to read). A refusal is raised."""
    reply = ftp.getresp()
    if reply.startswith("1"):
        return True
    if reply.startswith("2"):
        return False
    raise ftplib.error_reply(reply)


def sizes_answered(paths: Sequence[str], replies: Sequence[str]) -> dict[str, int]:
    """The size each of ``replies`` gives (``213 n``) for its path in ``paths``; refusals are left out."""
    sizes = {}
    for path, reply in zip(paths, replies, strict=False):  # fewer replies when the transfer failed first
        value = reply[3:].strip()
        if reply.startswith("213") and value.isascii() and value.isdigit():
            sizes[path] = int(value)
    return sizes


def send_together(ftp: ftplib.FTP, lines: list[str]) -> None:
    """Several commands in one write: the server answers them in order, the client pays one round trip."""
    ftp.sock.sendall("".join(f"{line}\r\n" for line in lines).encode(ftp.encoding))


def rename(ftp: ftplib.FTP, source: str, target: str) -> None:
    """RNFR and RNTO in one round trip; the first refusal raised once both replies are in."""
    send_together(ftp, [f"RNFR {source}", f"RNTO {target}"])
    for reply in [ftp.getmultiline(), ftp.getmultiline()]:
        if error := refusal_of(reply):
            raise error


def say_goodbye(ftp: ftplib.FTP) -> None:
    """QUIT without waiting for the answer (a round trip each on a long link), then close."""
    try:
        ftp.sock.sendall(b"QUIT\r\n")
    except (OSError, AttributeError):
        pass
    close_quietly(ftp)


def _raise_server_reason(ftp: ftplib.FTP, replies: int) -> None:
    """Read up to ``replies`` pending replies, within REASON_WAIT, raising the first refusal among them."""
    budget = ftp.sock.gettimeout()
    ftp.sock.settimeout(REASON_WAIT)
    try:
        for _ in range(replies):
            ftp.getresp()
    except (OSError, EOFError):
        pass
    finally:
        ftp.sock.settimeout(budget)


def _pasv_address(ftp: ftplib.FTP, reply: str) -> tuple[str, int]:
    host, port = ftplib.parse227(reply)
    return (ftp.sock.getpeername()[0] if not ftp.trust_server_pasv_ipv4_address else host), port


def finish_download(ftp: ftplib.FTP, conn: socket.socket, whole: bool) -> None:
    """End a download: read the server's last reply, or, stopped before the end, abort it.

    ABOR and a NOOP go out together and the replies are read up to the NOOP's, whatever the server
    said about the transfer it lost (426 then 225 on pyftpdlib and vsftpd).
    """
    if whole:
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
        conn.close()
        ftp.voidresp()
        return
    conn.close()
    ftp.sock.sendall(b"ABOR\r\nNOOP\r\n")
    while not ftp.getmultiline().startswith("200"):
        pass


def sent_early(ftp: ftplib.FTP, conn: socket.socket, name: str, pieces: Iterator[bytes]) -> Iterable[bytes]:
    """Up to SEGMENT_EARLY_BYTES of ``pieces``, as much as the send buffer takes at once, sent before the
    server's 150; then the 150 read (a refusal raised). The rest of them."""
    budget = SEGMENT_EARLY_BYTES
    rest: Iterable[bytes] = pieces
    for piece in pieces:
        view = memoryview(piece)
        sent = _send_now(conn, view[:budget])
        budget -= sent
        if sent < len(view):  # the budget is spent or the buffer full
            rest = itertools.chain([view[sent:]], pieces)
            break
    if not read_mark(ftp):
        raise StorageError(f"the server ended the upload of {name} at once (2xx), before its data")
    return rest


def _send_now(conn: socket.socket, view: memoryview) -> int:
    """The bytes of ``view`` the socket takes without waiting, sent."""
    timeout = conn.gettimeout()
    conn.setblocking(False)
    sent = 0
    try:
        while sent < len(view):
            sent += conn.send(view[sent:])
    except BlockingIOError:
        pass
    finally:
        conn.settimeout(timeout)
    return sent


def send_upload(ftp: ftplib.FTP, conn: socket.socket, chunks: Iterable[bytes], buffer: int) -> int:
    """Send ``chunks`` on an upload's data connection (``buffer``: its send buffer) and close it
    (TLS politely); bytes sent. A cut connection raises the server's reason if it gives one (a
    full disk), read once the connection is closed: servers answer only then."""
    written = 0
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        for chunk in chunks:
            conn.sendall(chunk)
            written += len(chunk)
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
    except OSError as exc:
        conn.close()
        raise server_reason(ftp) or exc
    except BaseException:
        conn.close()
        raise
    conn.close()
    return written


def stored_size(ftp: ftplib.FTP, remote: str, written: int, marked: bool) -> int:
    """The size the server holds of ``remote``, asked as an upload's data ends: SIZE goes out at once
    and its reply is read with the transfer's last ones (``marked``: its 1xx was read).

    The transfer's first reply comes first; then its end and SIZE's reply, in either order: pyftpdlib
    and ProFTPD answer commands while a transfer runs (a size from before the end), pure-ftpd refuses
    them then (500), ProFTPD may not see the file yet (550). SIZE is asked again after the end when
    its early answer was a refusal or differs from ``written``. The transfer's refusal is raised.
    """
    send_together(ftp, [f"SIZE {remote}"])
    if not marked:
        first = ftp.getmultiline()  # the STOR's: its mark, its end at once, or its refusal
        if first[:1] == "2":
            return _size_in(ftp.getmultiline())
        if first[:1] != "1":
            raise _refusal(first)  # SIZE's reply is left unread: the caller drops the session
    one, other = ftp.getmultiline(), ftp.getmultiline()
    if one.startswith("213"):  # before the end: the server may not have written everything yet
        _ended(other)
        early = _size_in(one)
        return early if early == written else _asked_again(ftp, remote)
    if other.startswith("213") or one[:1] == "2":  # the end first, then SIZE's answer, which stands
        _ended(one)
        return _size_in(other)
    if other[:1] == "2":  # SIZE refused while the transfer ran, then its end
        return _asked_again(ftp, remote)
    raise _refusal(other if _unknown_command(one) else one)  # the transfer failed (and SIZE)


def _ended(reply: str) -> None:
    """A transfer's last reply: 2xx, else its refusal raised."""
    if reply[:1] != "2" or reply.startswith("213"):
        raise _refusal(reply)


def _asked_again(ftp: ftplib.FTP, remote: str) -> int:
    send_together(ftp, [f"SIZE {remote}"])
    return _size_in(ftp.getmultiline())


def _unknown_command(reply: str) -> bool:
    """A refusal of the command itself (500-502): what a server may say to SIZE during a transfer."""
    return reply[:3] in ("500", "501", "502")


def busy_reply(replies: list[str]) -> ftplib.error_temp | None:
    """The first of ``replies`` that says "not now" (4xx), as ftplib's temporary error; else None."""
    busy = next((reply for reply in replies if reply.startswith("4")), None)
    return ftplib.error_temp(busy) if busy else None


def _size_in(reply: str) -> int:
    """The number of a ``213`` reply to SIZE; anything else is the server's refusal or a protocol error."""
    if not reply.startswith("213"):
        raise _refusal(reply)
    try:
        return int(reply[3:].strip())
    except ValueError:
        raise ftplib.error_proto(reply) from None


def refusal_of(reply: str) -> ftplib.Error | None:
    """ftplib's error for a refusal: 4xx temporary, 5xx permanent; None for any other reply."""
    kind = {"4": ftplib.error_temp, "5": ftplib.error_perm}.get(reply[:1])
    return kind(reply) if kind else None


def _refusal(reply: str) -> ftplib.Error:
    """The ftplib error for an unexpected reply: a refusal's, else out of step."""
    return refusal_of(reply) or ftplib.error_reply(reply)


def finish_upload(ftp: ftplib.FTP, conn: socket.socket) -> None:
    """End an upload: close the data connection (TLS politely) and read the server's verdict."""
    if isinstance(conn, ssl.SSLSocket):
        conn.unwrap()
    conn.close()
    ftp.voidresp()
