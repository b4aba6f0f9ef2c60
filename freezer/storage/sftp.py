"""SFTP storage on paramiko, for ``--storage sftp`` (``--ftp-*``) and ``--storage ssh`` (``--ssh-*``).

Host keys are checked against known_hosts (see hostkeys.py): unknown hosts are learnt
(OpenSSH's accept-new) or refused (``strict``); a changed key is always refused. Uploads are
pipelined to a temporary name and renamed into place; downloads prefetch.

This module holds the driver; its settings come built from common/settings.py. Around it:
sftp_connect.py (the connection), sftp_auth.py (the login), sftp_errors.py (error translation),
sftp_requests.py (batched requests), sftp_upload.py (uploads that go on after a cut), sftp_stripes.py
(the extra channels they stripe over) and paramiko_adapter.py (the only use of paramiko's internals).
"""

from __future__ import annotations

import logging
import posixpath
import stat
from collections.abc import Iterable, Iterator, Sequence

import paramiko

from freezer.common.settings import SftpSettings
from freezer.errors import NoSpace, PermissionDenied, StorageError
from freezer.storage import (
    paramiko_adapter,
    sftp_connect,
    sftp_errors,
    sftp_parallel,
    sftp_reads,
    sftp_requests,
    sftp_upload,
)
from freezer.storage.base import (
    Storage,
    checked_entries,
    checked_names,
    container_root,
    server_url,
    temporary_name,
)
from freezer.storage.sftp_auth import agent_keys
from freezer.storage.sftp_requests import close_later, close_quietly
from freezer.storage.sftp_stripes import ExtraChannels

LOG = logging.getLogger(__name__)
BLOCK_SIZE = 1 << 20
# Throughput settings: the connection's are in sftp_connect.py, the downloads' in sftp_reads.py.
FULL_BELOW = 1 << 20  # free bytes under which a failed upload is reported as a full disk


class SftpStorage(Storage):
    """Backups in a directory of an SFTP server."""

    kind = "sftp"

    def __init__(self, settings: SftpSettings, kind: str = "sftp"):
        self.settings = settings
        self.kind = kind
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._root: str | None = None
        self._request_size = sftp_connect.SAFE_REQUEST
        self._made_dirs: set[str] = set()  # directories this connection made or found: no round trip again
        self._channels: ExtraChannels | None = None  # for long uploads to OpenSSH, striped (sftp_stripes.py)
        self._connections = 1  # SSH connections for a large transfer (sftp_parallel.py); beyond one, _channels
        self._round_trip = 0.0

    def describe(self) -> str:
        s = self.settings
        return server_url(self.kind, s.username, s.where, s.container)

    # -- connection -------------------------------------------------------

    def _client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._connect()
            self._root = self._resolve_root(self._sftp)
        return self._sftp

    def _connect(self) -> paramiko.SFTPClient:
        """A new connection and its first channel; to OpenSSH, more channels for long uploads too."""
        s = self.settings
        try:
            connection = sftp_connect.connect(s, lambda: agent_keys(s))
        except StorageError:
            self.reset()
            raise
        self._transport = connection.transport
        self._request_size = connection.request_size
        self._connections = sftp_parallel.connection_count(s.connections, connection.round_trip)
        self._round_trip = connection.round_trip
        if self._connections > 1:
            self._channels = ExtraChannels(self._new_connection, s.where, self._connections - 1,
                                           sftp_parallel.close_connection)
        elif connection.to_openssh:
            self._channels = ExtraChannels(lambda: sftp_connect.open_channel(connection.transport, s.timeout), s.where)
        LOG.info("connected to %s", self.describe())
        return connection.sftp

    def _new_connection(self) -> paramiko.SFTPClient:
        """The SFTP channel of one more SSH connection, for a transfer split over several."""
        return sftp_connect.connect(self.settings, lambda: agent_keys(self.settings)).sftp

    def _resolve_root(self, sftp: paramiko.SFTPClient) -> str:
        container = self.settings.container
        if posixpath.isabs(container):  # the login directory does not matter: no round trip to ask it
            return posixpath.normpath(container)
        return container_root(container, sftp.normalize("."))

    def close(self) -> None:
        self.reset()

    def reset(self) -> None:
        for closable in (self._channels, self._sftp, self._transport):
            if closable is not None:
                try:
                    closable.close()
                except (OSError, EOFError, paramiko.SSHException):
                    pass
        self._sftp = self._transport = self._channels = None
        self._connections = 1
        self._made_dirs.clear()

    # -- operations -------------------------------------------------------

    def _abs(self, path: str) -> str:
        self._client()
        return posixpath.join(self._root, path)

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Three round trips besides the data: make the directories and open, size and close, rename.

        A cut connection does not fail the upload: it goes on over a fresh one (sftp_upload.py).
        """
        target = self._abs(path)
        temp = temporary_name(target)
        remote = None
        try:
            remote = self._pipelined(self._open_for_upload(temp))
            written, stored = sftp_upload.write_chunks(remote, chunks, temp, self._channels, self._open_again,
                                                       lambda: self._reopen(temp))
            self._check_stored(temp, written, stored)
            self._rename(temp, target)
        except BaseException as exc:
            close_quietly(remote)
            if self._transport is not None and not self._transport.is_active():
                self.reset()  # the link was cut: a new connection removes the partial upload
            known = self._disk_trouble(target, exc)
            self._discard(temp)
            raise (known or self._translate(exc, f"upload {target}")) from exc
        return written

    def _reopen(self, temp: str) -> tuple[paramiko.SFTPFile, ExtraChannels | None]:
        """After a cut: a fresh connection, and ``temp`` on it open for writing as it is (not truncated)."""
        self.reset()
        sftp = self._client()
        try:
            return self._pipelined(sftp.open(temp, "r+b", bufsize=BLOCK_SIZE)), self._channels
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._translate(exc, f"reopen {temp}", missing=True) from exc

    def _open_for_upload(self, temp: str) -> paramiko.SFTPFile:
        """Open ``temp`` for writing, making the directories it needs in the same round trip."""
        directory = posixpath.dirname(temp)
        dirs = self._dirs_to_make(directory)
        remote = sftp_requests.make_dirs_and_open(self._client(), dirs, temp, BLOCK_SIZE)
        if remote is None:  # step by step, which makes parents above the container and names what is in the way
            self._make_missing(directory)
            remote = self._client().open(temp, "wb", bufsize=BLOCK_SIZE)
        self._made_dirs.update(dirs)
        self._made_dirs.add(directory)
        return remote

    def _dirs_to_make(self, remote: str) -> list[str]:
        """``remote`` and its parents up to the container, parents first, but none known to exist."""
        dirs = []
        current = remote
        while current not in self._made_dirs and current not in ("/", ""):
            dirs.append(current)
            if current == self._root:
                break
            current = posixpath.dirname(current)
        return dirs[::-1]

    def _open_again(self, channel: paramiko.SFTPClient, temp: str) -> paramiko.SFTPFile:
        """``temp``, being uploaded, opened on another channel to write a stripe of it."""
        return self._pipelined(channel.open(temp, "r+b", bufsize=BLOCK_SIZE))

    def _pipelined(self, handle: paramiko.SFTPFile) -> paramiko.SFTPFile:
        paramiko_adapter.set_request_size(handle, self._request_size)
        handle.set_pipelined(True)
        return handle

    def _check_stored(self, remote: str, written: int, stored: int | None) -> None:
        """The server holds every byte sent: a server that loses some quietly fails the upload."""
        if stored is not None and stored != written:
            raise StorageError(f"{self.settings.where} stored {stored} of the {written} bytes sent to {remote} "
                               "(is its disk full?)")

    def _disk_trouble(self, target: str, exc: BaseException) -> StorageError | None:
        """After a bare SFTP "Failure", ask the server's filesystem whether it is full or read-only."""
        if type(exc) is not OSError:
            return None
        stats = sftp_requests.statvfs(self._client(), posixpath.dirname(target))
        if stats is None:
            return None
        where = self.settings.where
        if stats.read_only:
            return PermissionDenied(f"upload {target} refused by {where}: its filesystem is read-only")
        if stats.free_bytes < FULL_BELOW:
            return NoSpace(f"{where} is out of space during upload {target} "
                           f"({stats.free_bytes} bytes free): free space on the server")
        return None

    def _rename(self, source: str, target: str) -> None:
        sftp = self._client()
        try:
            sftp.posix_rename(source, target)
        except OSError:
            # Servers without posix-rename@openssh.com refuse to rename onto a file.
            try:
                sftp.remove(target)
            except OSError:
                pass
            sftp.rename(source, target)

    def _discard(self, remote: str) -> None:
        try:
            self._client().remove(remote)
        except (OSError, EOFError, paramiko.SSHException, StorageError):
            LOG.debug("could not remove partial upload %s", remote)

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """One round trip to open and size the file, then its reads; the close is not waited for."""
        remote = self._abs(path)
        handle = None
        try:
            handle, size = sftp_requests.open_with_size(self._client(), remote, BLOCK_SIZE)
            if self._parallel_read(size - offset):
                pieces, handle = self._read_ranges(remote, handle, offset, size), None
            else:
                pieces = self._read_through(handle, offset, size - offset)
        except BaseException as exc:
            close_later(handle)
            raise self._translate(exc, f"download {remote}", missing=True) from exc
        try:
            yield from pieces
        except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
            self.reset()  # replies may still be on their way: the session is out of step
            raise self._translate(exc, f"download {remote}") from exc
        finally:
            close_later(handle)

    def _parallel_read(self, length: int) -> bool:
        return self._channels is not None and self._connections > 1 and length >= sftp_parallel.PARALLEL_AFTER

    def _read_through(self, handle: paramiko.SFTPFile, offset: int, left: int) -> Iterator[bytes]:
        """Pipelined reads up to the size (no end-of-file reply waited for: two round trips saved), joined
        into pieces of about BLOCK_SIZE; a connection lost midway raises, so the download resumes."""
        client = self._client()
        return sftp_reads.read_through(client, handle, offset, left, self._request_size,
                                       sftp_reads.in_flight_for(self._round_trip), BLOCK_SIZE,
                                       lambda: self._reset_if(client))

    def _reset_if(self, client: paramiko.SFTPClient) -> None:
        """Drop the session if ``client`` is still its client (not one replaced since)."""
        if self._sftp is client:
            self.reset()

    def _read_ranges(self, remote: str, handle: paramiko.SFTPFile, offset: int, size: int) -> Iterator[bytes]:
        """Segments read over every connection at once (the extra ones join once logged in), in order."""
        yield from sftp_parallel.read_in_parallel(
            self._client(), handle, self._channels, lambda channel: channel.open(remote, "rb", bufsize=BLOCK_SIZE),
            sftp_parallel.Span(offset, size, self._request_size, self._connections), BLOCK_SIZE,
            sftp_parallel.growth_for(self.settings.connections, self._channels, self._round_trip))
        if self._transport is not None and not self._transport.is_active():
            self.reset()  # the first connection was cut: the others read its share, the next call reconnects

    def listdir(self, path: str) -> list[str]:
        return self.listdirs([path])[0]

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        """All of ``paths`` listed together: two round trips for up to 512 small directories."""
        remotes = [self._abs(path) for path in paths]
        try:
            listings = sftp_requests.list_dirs(self._client(), remotes)
        except BaseException as exc:
            raise self._translate(exc, f"list {remotes[0] if len(remotes) == 1 else 'directories'}") from exc
        names = []
        for remote, listing in zip(remotes, listings, strict=True):
            if isinstance(listing, FileNotFoundError):
                listing = []
            elif isinstance(listing, BaseException):
                raise self._translate(listing, f"list {remote}") from listing
            else:
                self._made_dirs.add(remote)  # it exists: no mkdir for it again
            names.append(sorted(checked_names(listing, remote, self.settings.where)))
        return names

    def rmtree(self, path: str) -> None:
        remote = self._abs(path)
        self._made_dirs = {d for d in self._made_dirs if not (d == remote or d.startswith(remote + "/"))}
        try:
            if stat.S_ISLNK(self._client().lstat(remote).st_mode):
                self._client().remove(remote)  # a link in the container goes, never what it points to
                return
            self._rmtree(remote)
        except FileNotFoundError:
            return
        except BaseException as exc:
            raise self._translate(exc, f"remove {remote}") from exc

    def _rmtree(self, remote: str) -> None:
        sftp = self._client()
        listing = sftp.listdir_attr(remote)
        entries = checked_entries(((entry.filename, entry) for entry in listing), remote, self.settings.where)
        for name, entry in entries:
            child = posixpath.join(remote, name)
            if stat.S_ISDIR(entry.st_mode):
                self._rmtree(child)
            else:
                sftp.remove(child)
        sftp.rmdir(remote)

    def size(self, path: str) -> int:
        remote = self._abs(path)
        try:
            return self._client().stat(remote).st_size
        except BaseException as exc:
            raise self._translate(exc, f"size of {remote}", missing=True) from exc

    def claim(self, path: str) -> bool:
        """One round trip: the mkdirs of the parents and of ``path``, whose own mkdir is the exclusive create."""
        remote = self._abs(path)
        parents = self._dirs_to_make(posixpath.dirname(remote))
        try:
            if sftp_requests.make_dirs(self._client(), parents + [remote]) is not None:
                # Taken, or something in the way: step by step, which names it (or makes parents above the container).
                self._make_missing(posixpath.dirname(remote))
                self._client().mkdir(remote)
        except BaseException as exc:
            # SFTP v3 has no "exists" status (OpenSSH answers a bare Failure): look at what is there.
            if isinstance(exc, OSError) and self._exists(remote):
                return False
            known = self._disk_trouble(posixpath.join(self._existing_ancestor(remote), "claim"), exc)
            raise (known or self._translate(exc, f"create {remote}")) from exc
        self._made_dirs.update(parents)
        self._made_dirs.add(remote)
        return True

    def _existing_ancestor(self, remote: str) -> str:
        current = posixpath.dirname(remote)
        while current not in ("/", "") and not self._exists(current):
            current = posixpath.dirname(current)
        return current or "/"

    def _exists(self, remote: str) -> bool:
        try:
            self._client().stat(remote)
            return True
        except FileNotFoundError:
            return False

    def _make_missing(self, remote: str) -> None:
        """Make ``remote`` and its missing parents, looking from the bottom: one round trip per level."""
        sftp = self._client()
        missing = []
        current = remote
        while current not in ("/", ""):
            try:
                if stat.S_ISDIR(sftp.stat(current).st_mode):
                    break
            except FileNotFoundError:
                missing.append(current)
                current = posixpath.dirname(current)
                continue
            raise StorageError(f"{current} on {self.settings.where} is a file, not a directory: check --container")
        for directory in reversed(missing):
            try:
                sftp.mkdir(directory)
            except OSError:
                if not self._exists(directory):  # else another client made it just now
                    raise

    # -- errors -----------------------------------------------------------

    def _translate(self, exc: BaseException, action: str, missing: bool = False) -> BaseException:
        """Map a low-level failure to the storage error family, naming host and option."""
        return sftp_errors.translate(exc, self.settings, action, missing)


def sftp_from_settings(settings: SftpSettings) -> SftpStorage:
    """``--storage sftp`` (the spec's ``--ftp-*``), bare: the registry wraps it."""
    return SftpStorage(settings, "sftp")


def ssh_from_settings(settings: SftpSettings) -> SftpStorage:
    """``--storage ssh`` (upstream's ``--ssh-*``), bare: the registry wraps it."""
    return SftpStorage(settings, "ssh")
