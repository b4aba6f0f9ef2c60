"""FTP replies and socket failures as the storage error family, naming the server and the option."""

from __future__ import annotations

import ftplib
import ssl

from freezer.errors import (
    AuthError,
    ConnectError,
    NoSpace,
    NotFound,
    PermissionDenied,
    ServerBusy,
    StorageError,
    TLSError,
)
from freezer.storage.base import network_error
from freezer.storage.ftp_client import FtpSettings

MISSING_CODES = ("450", "550")
FULL_CODES = ("452", "552")
REASON_WAIT = 5.0  # seconds to wait for the server's reply after it cut a data connection


class SessionDied(ConnectError):
    """The server's session process died (vsftpd's ``500 OOPS``): a new connection may well work."""


def translate(exc: BaseException, action: str, settings: FtpSettings, missing: bool = False) -> BaseException:
    """Map a low-level failure to the storage error family, naming host and option."""
    if isinstance(exc, (StorageError, KeyboardInterrupt, GeneratorExit)):
        return exc
    where = settings.where
    reply = reply_of(exc) if isinstance(exc, ftplib.Error) else ""
    if isinstance(exc, ftplib.error_proto):
        return StorageError(f"{where} does not answer like an FTP server during {action} ({reply}): "
                            "check --ftp-host and --ftp-port")
    if reply.startswith("500 OOPS"):
        return SessionDied(f"the session on {where} died during {action} ({reply})")
    if reply.startswith(FULL_CODES) or (reply.startswith("451") and says_full(reply)):
        return NoSpace(f"{where} is out of space during {action} ({reply}): free space on the server")
    if missing and reply.startswith(MISSING_CODES):
        return NotFound(f"{action}: no such file on {where} ({reply})")
    if reply.startswith(("550", "553", "532")):
        return PermissionDenied(f"{action} refused by {where} ({reply}): check --container and its permissions")
    if reply.startswith("530"):
        return AuthError(f"{where} refused {action} ({reply}): check --ftp-username and --ftp-password")
    if handshake_refused(exc) and not settings.certfile:
        return TLSError(f"TLS with {where} refused during {action} ({exc.reason}): if the server wants a "
                        "client certificate, give --ftp-certfile and --ftp-keyfile")
    if isinstance(exc, ftplib.Error):
        hint = " (the server gave up writing: its disk may be full)" if reply.startswith(("426", "451")) \
            and action.startswith("upload") else ""
        # 4xx is "try again later" in RFC 959: 421 busy, 425/426 data connection failed or cut.
        error = ServerBusy if reply.startswith("4") else StorageError
        return error(f"{action} failed on {where}: {reply}{hint}")
    return network_error_of(exc, where, action)


def network_error_of(exc: BaseException, where: str, action: str) -> BaseException:
    if isinstance(exc, ssl.SSLEOFError):
        return ConnectError(f"connection to {where} lost during {action}: {exc.reason or exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(f"certificate of {where} refused: {exc.verify_message}; "
                        "add its CA with --ftp-cacert (or, unsafely, --ftp-insecure)")
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS with {where} failed during {action}: {exc.reason or exc}")
    return network_error(exc, where, action, "--ftp")


def handshake_refused(exc: BaseException) -> bool:
    """The server ended the TLS handshake with an alert (as servers do to clients without a certificate)."""
    return (isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLCertVerificationError)
            and "ALERT_HANDSHAKE_FAILURE" in str(exc.reason or ""))


def says_full(reply: str) -> bool:
    return any(word in reply.lower() for word in ("no space", "disk full", "quota", "storage"))


def server_reason(ftp: ftplib.FTP) -> ftplib.Error | None:
    """The reply a server sent when it cut a data connection (a full disk, say), if it sent one."""
    try:
        ftp.sock.settimeout(REASON_WAIT)
        while ftp.getresp().startswith("1"):
            pass  # the 150 of an upload sent before it arrived; the reason follows
    except ftplib.Error as reply:
        return reply
    except (OSError, EOFError):
        pass
    return None


def reply_of(exc: BaseException) -> str:
    return str(exc.args[0] if exc.args else exc).strip()
