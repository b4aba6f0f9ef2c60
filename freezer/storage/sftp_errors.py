"""paramiko's and the socket's failures as the storage error family, naming the host and the option to change."""

from __future__ import annotations

import errno
import socket

import paramiko

from freezer.common.settings import SftpSettings
from freezer.errors import ConnectError, NoSpace, NotFound, PermissionDenied, StorageError, reason
from freezer.storage.base import network_error as socket_error


def translate(exc: BaseException, s: SftpSettings, action: str, missing: bool = False) -> BaseException:
    """Map a low-level failure during ``action`` to the storage error family, naming host and option."""
    if isinstance(exc, (StorageError, KeyboardInterrupt, GeneratorExit)):
        return exc
    where = s.where
    if isinstance(exc, FileNotFoundError) and missing:
        return NotFound(f"{action}: no such file on {where}")
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"{action} refused by {where}: check --container and its permissions")
    if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT) or "quota" in str(exc).lower()
                                      or "no space" in str(exc).lower()):
        return NoSpace(f"{where} is out of space during {action}: free space on the server")
    if isinstance(exc, (EOFError, paramiko.SSHException)) or _socket_closed(exc):
        return ConnectError(f"connection to {where} lost during {action}: {reason(exc)}")
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
        return network_error(exc, s, action)
    if isinstance(exc, paramiko.SFTPError):  # a reply that breaks the protocol (more data than asked, ...)
        return StorageError(f"{action} failed on {where}: {reason(exc)}")
    if isinstance(exc, OSError):
        # OpenSSH's sftp-server reports a full or read-only disk as a bare "Failure".
        hint = " (the server's disk may be full or read-only)" if action.startswith("upload") else ""
        return StorageError(f"{action} failed on {where}: {reason(exc)}{hint}")
    return exc


def _socket_closed(exc: BaseException) -> bool:
    """paramiko's channel refusing to send once the server has gone: a lost connection, worth a retry."""
    return isinstance(exc, OSError) and exc.errno is None and str(exc) == "Socket is closed"


def connect_error(exc: paramiko.SSHException | OSError | EOFError, s: SftpSettings) -> BaseException:
    """A failed SSH handshake, login or SFTP channel: no subsystem, or the connection failing."""
    if isinstance(exc, paramiko.SSHException):
        if "subsystem" in str(exc).lower() or "channel closed" in str(exc).lower():
            return StorageError(f"{s.where} offers no SFTP subsystem: enable it on the server")
        return ConnectError(f"SSH with {s.where} failed: {reason(exc)}")
    return network_error(exc, s)


def network_error(exc: BaseException, s: SftpSettings, action: str = "connect") -> BaseException:
    """Hints name the host and port options of the spelling in use; both spellings read --ssh-timeout."""
    return socket_error(exc, s.where, action, s.option_prefix, timeout_option="--ssh-timeout")
