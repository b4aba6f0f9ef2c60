"""The Storage interface every driver implements, and helpers every driver shares."""

from __future__ import annotations

import abc
import logging
import posixpath
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from freezer.common.inputs import bare_host, host_and_port  # noqa: F401  (drivers import them from here)
from freezer.errors import ConnectError, ListingTooLong, Unreachable, reason

LOG = logging.getLogger(__name__)
K = TypeVar("K")
#: most names one directory listing may hold. A container holds one directory per chain or level, so a
#: listing past this is a server lying or the wrong --container; 500000 names stay under some 150 MB.
MAX_LISTING = 500_000


def listing_too_long(directory: str, where: str) -> ListingTooLong:
    """The error for a listing cut at ``MAX_LISTING`` names."""
    return ListingTooLong(f"{where} lists more than {MAX_LISTING} names in {directory}: not a freezer "
                          "container (check --container) or a server that lies")


def plain_name(name: object) -> bool:
    """True for one path component a listing may hold: not empty, ``.``, ``..``, nor with ``/``, ``\\`` or NUL.

    A freezer container never holds a backslash; refusing it keeps Windows servers' other separator out.
    """
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\x00")


def checked_entries(entries: Iterable[tuple[str, K]], directory: str, where: str) -> list[tuple[str, K]]:
    """The (name, kind) pairs a server listed, each name once and none that leaves ``directory``.

    Every driver's listing passes here; the order is the server's. A name listed twice keeps the pair
    that has a kind (not None).
    """
    kept: dict[str, K] = {}
    odd: list[str] = []
    seen = 0
    for name, kind in entries:
        seen += 1
        if seen > 2 * MAX_LISTING:
            raise listing_too_long(directory, where)
        if not plain_name(name):
            odd += [repr(name)] if name not in (".", "..") else []
            del odd[5:]
            continue
        if kept.get(name) is None:
            kept[name] = kind
        if len(kept) > MAX_LISTING:
            raise listing_too_long(directory, where)
    if odd:
        LOG.warning("%s listed names in %s that are not file names (%s): ignored", where, directory,
                    ", ".join(odd))
    return list(kept.items())


def checked_names(names: Iterable[str], directory: str, where: str) -> list[str]:
    """``checked_entries`` for a listing of bare names."""
    return [name for name, _ in checked_entries(((name, None) for name in names), directory, where)]


def temporary_name(path: str) -> str:
    """A hidden sibling of ``path`` for an upload in progress: ``dir/.name.partial-XXXXXXXX``."""
    directory, name = posixpath.split(path)
    return posixpath.join(directory, f".{name}.partial-{uuid.uuid4().hex[:8]}")


#: the object that marks a claimed ``path`` on object stores: ``path/.claim``
CLAIM_MARKER = ".claim"


def container_root(container: str, login_dir: str) -> str:
    """``--container`` as an absolute server path: as given, or below the login directory."""
    return posixpath.normpath(posixpath.join(login_dir, container))


def server_url(kind: str, username: str, where: str, container: str) -> str:
    """``kind://user@host:port/container`` for messages; never a password."""
    return f"{kind}://{username}@{where}/{container.lstrip('/')}"


def network_error(exc: BaseException, where: str, action: str, prefix: str,
                  timeout_option: str | None = None) -> BaseException:
    """A socket-level failure as ConnectError naming ``where`` and the ``<prefix>-host/-port`` options.

    A refused connection or an unknown host is Unreachable (permanent); timeouts and drops are
    transient. ``timeout_option`` is the option that sets the timeout when it is not ``<prefix>-timeout``.
    """
    host, port = f"{prefix}-host", f"{prefix}-port"
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"cannot resolve host of {where}: check {host}")
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(f"connection to {where} refused: check {host} and {port}")
    if isinstance(exc, TimeoutError):
        return ConnectError(f"{where} did not answer in time during {action}: check {host}, {port} "
                            f"and firewalls (or raise {timeout_option or prefix + '-timeout'})")
    if isinstance(exc, (OSError, EOFError)):
        return ConnectError(f"connection to {where} lost during {action}: {reason(exc)}")
    return exc


class Storage(abc.ABC):
    """A place that stores files under relative POSIX paths.

    Drivers know a protocol and nothing about backups; ``layout`` knows backups.
    """

    #: the name users pass to ``--storage``
    kind = "abstract"
    #: True when put_stream and get_stream only do local file I/O: the caller then moves chunks in its
    #: own thread (a reader thread ahead of them costs more CPU than the overlap it buys)
    streams_in_caller = False

    @abc.abstractmethod
    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Store ``chunks`` at ``path`` atomically and return the byte count."""

    @abc.abstractmethod
    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Yield the content of ``path`` from byte ``offset`` in chunks; NotFound if absent."""

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path``; empty when it does not exist."""

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        """``listdir`` of each of ``paths``, in order; a driver that can list several at once overrides it."""
        return [self.listdir(path) for path in paths]

    @abc.abstractmethod
    def rmtree(self, path: str) -> None:
        """Remove ``path`` and everything below it; absent is fine."""

    @abc.abstractmethod
    def size(self, path: str) -> int:
        """Size in bytes of file ``path``; NotFound if absent."""

    def expect_reads(self, paths: Sequence[str] = ()) -> None:  # noqa: B027 (a hint: doing nothing is complete)
        """A restore is about to list and read its metadata, then ``paths`` (its levels' data): a driver
        may connect now, and open what its transfers will need or ask what it will need to know of
        them meanwhile (a hint; a failure to connect is raised as the listing's would be)."""

    def expect_writes(self) -> None:  # noqa: B027 (a hint: doing nothing is a complete answer)
        """A backup is about to list its chain and write data: a driver may connect now and open what its
        transfers will need meanwhile (a hint; a failure to connect is raised as the listing's would be)."""

    def sibling(self) -> Storage | None:
        """Another handle on the same storage, for small work in a thread beside this one's (its own
        connection, closed by the caller); None when the driver has no cheap one or nothing to gain."""
        return None

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
