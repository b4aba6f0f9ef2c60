"""The Storage interface every driver implements, and the error family."""

from __future__ import annotations

import abc
import posixpath
import socket
import uuid
from collections.abc import Iterable, Iterator


class FreezerError(Exception):
    """An expected failure: main.py prints it as one line and exits non-zero."""

    exit_code = 2


class StorageError(FreezerError):
    """A storage operation failed."""


class ConnectError(StorageError):
    """The server could not be reached, or the connection dropped."""


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


def temporary_name(path: str) -> str:
    """A hidden sibling of ``path`` for an upload in progress: ``dir/.name.partial-XXXXXXXX``."""
    directory, name = posixpath.split(path)
    return posixpath.join(directory, f".{name}.partial-{uuid.uuid4().hex[:8]}")


#: the object that marks a claimed ``path`` on object stores: ``path/.claim``
CLAIM_MARKER = ".claim"


def container_root(container: str, login_dir: str) -> str:
    """``--container`` as an absolute server path: as given, or below the login directory."""
    return posixpath.normpath(posixpath.join(login_dir, container))


def host_and_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets: ``[::1]:21``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bare_host(host: str) -> str:
    """The host as sockets want it: ``[::1]`` (as users often write it) becomes ``::1``."""
    host = (host or "").strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def server_url(kind: str, username: str, where: str, container: str) -> str:
    """``kind://user@host:port/container`` for messages; never a password."""
    return f"{kind}://{username}@{where}/{container.lstrip('/')}"


def network_error(exc: BaseException, where: str, action: str, prefix: str) -> BaseException:
    """A socket-level failure as ConnectError naming ``where`` and the ``<prefix>-host/-port`` options."""
    host, port = f"{prefix}-host", f"{prefix}-port"
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve host of {where}: check {host}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(f"connection to {where} refused: check {host} and {port}")
    if isinstance(exc, TimeoutError):
        return ConnectError(f"{where} did not answer in time during {action}: check {host}, {port} "
                            f"and firewalls (or raise {prefix}-timeout)")
    if isinstance(exc, (OSError, EOFError)):
        return ConnectError(f"connection to {where} lost during {action}: {exc or type(exc).__name__}")
    return exc


class Storage(abc.ABC):
    """A place that stores files under relative POSIX paths.

    Drivers know a protocol and nothing about backups; ``layout`` knows backups.
    """

    #: the name users pass to ``--storage``
    kind = "abstract"

    @abc.abstractmethod
    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Store ``chunks`` at ``path`` atomically and return the byte count."""

    @abc.abstractmethod
    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Yield the content of ``path`` from byte ``offset`` in chunks; NotFound if absent."""

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path``; empty when it does not exist."""

    @abc.abstractmethod
    def rmtree(self, path: str) -> None:
        """Remove ``path`` and everything below it; absent is fine."""

    @abc.abstractmethod
    def size(self, path: str) -> int:
        """Size in bytes of file ``path``; NotFound if absent."""

    @abc.abstractmethod
    def claim(self, path: str) -> bool:
        """Create directory ``path`` exclusively (its parents as needed); False if it already exists.

        Two writers claiming one path at once: exactly one gets True. Object stores, which have no
        directories, write a marker object below ``path`` (see ``CLAIM_MARKER``).
        """

    def put_bytes(self, path: str, data: bytes) -> int:
        """Store a small object atomically."""
        return self.put_stream(path, [data])

    def get_bytes(self, path: str) -> bytes:
        """Read a small object whole."""
        return b"".join(self.get_stream(path))

    def close(self) -> None:
        """Release connections; the default holds none."""
        return None

    def reset(self) -> None:
        """Drop a broken connection so the next operation reconnects."""
        return None

    def describe(self) -> str:
        """Where the storage is, for messages; never contains a secret."""
        return self.kind

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
