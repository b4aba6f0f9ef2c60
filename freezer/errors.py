"""The one exception family of freezer, and what a message says about any exception.

main.py turns a ``FreezerError`` into one line on stderr and a non-zero exit. Every module
raises from here; storage drivers translate their protocol's errors into ``StorageError``
children.
"""

from __future__ import annotations

import socket


class FreezerError(Exception):
    """An expected failure: main.py prints it as one line and exits non-zero."""

    exit_code = 2


class StorageError(FreezerError):
    """A storage operation failed."""

    #: True when the same operation may succeed a moment later; ``Retrying`` repeats only these.
    transient = False


class ConnectError(StorageError):
    """The connection dropped or timed out: worth another try."""

    transient = True


class Unreachable(ConnectError):
    """Nothing answers at the address (connection refused, unknown host): retrying will not help."""

    transient = False


class ServerBusy(StorageError):
    """The server said "not now" (FTP 4xx, HTTP 5xx, throttling): worth another try."""

    transient = True


class AuthError(StorageError):
    """The server refused the credentials."""


class HostKeyError(StorageError):
    """An SSH host key is unknown or changed."""


class TLSError(StorageError):
    """TLS could not be set up or the certificate was refused."""


class NotFound(StorageError):
    """The path does not exist on the storage."""


class PermissionDenied(StorageError):
    """The server refused access to a path."""


class NoSpace(StorageError):
    """The storage is full or over quota."""


class ListingTooLong(StorageError):
    """A directory listing holds more names than ``MAX_LISTING``."""


def never_connected(exc: BaseException) -> bool:
    """True when a client library's error comes from a refused connection or an unknown host.

    Follows the chain HTTP libraries wrap these in (``__cause__``, urllib3's ``reason``, botocore's
    ``kwargs['error']``); a reset or a timeout, even while connecting, is not one of them.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (ConnectionRefusedError, socket.gaierror)):
            return True
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  (getattr(current, "kwargs", None) or {}).get("error"), *getattr(current, "args", ())]
        pending += [link for link in linked if isinstance(link, BaseException)]
    return False


# What an exception without a message means, most specific first.
_MEANINGS = (
    (EOFError, "the server closed the connection"),
    (ConnectionResetError, "the server reset the connection"),
    (BrokenPipeError, "the server closed the connection while we were sending"),
    (ConnectionAbortedError, "the connection was aborted"),
    (TimeoutError, "timed out"),
)


def reason(exc: BaseException) -> str:
    """The text of ``exc`` for a message, never empty: its own words, else what its type means.

    A dangling colon goes (paramiko says "Server connection dropped: " with nothing after it).
    """
    text = str(exc).strip().rstrip(":").rstrip()
    if text:
        return text
    for kind, meaning in _MEANINGS:
        if isinstance(exc, kind):
            return meaning
    return type(exc).__name__
