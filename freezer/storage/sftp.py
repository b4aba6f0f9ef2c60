"""SFTP storage on paramiko, for ``--storage sftp`` (``--ftp-*``) and ``--storage ssh`` (``--ssh-*``).

Host keys are checked against known_hosts (see hostkeys.py): unknown hosts are learnt
(OpenSSH's accept-new) or refused (``strict``); a changed key is always refused. Uploads are
pipelined to a temporary name and renamed into place; downloads prefetch.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import posixpath
import socket
import stat
from collections.abc import Iterable, Iterator, Sequence

import paramiko

from freezer.common.settings import SftpSettings
from freezer.errors import AuthError, ConnectError, NoSpace, NotFound, PermissionDenied, StorageError, reason
from freezer.storage import sftp_requests, sftp_stripes
from freezer.storage.base import (
    Storage,
    checked_entries,
    checked_names,
    container_root,
    network_error,
    server_url,
    temporary_name,
)
from freezer.storage.hostkeys import HostKeyCheck
from freezer.storage.sftp_requests import close_later, close_quietly
from freezer.storage.sftp_stripes import ExtraChannels

LOG = logging.getLogger(__name__)
BLOCK_SIZE = 1 << 20
# Throughput settings, measured on loopback and over benchmarks/wan.py's long link (performance.rst).
# Reads in flight while downloading. Unbounded, paramiko queues every reply of a large file and
# scans that queue on each read: 512 MiB restored in 58.6 s unbounded, 31 s at 256, 4.2 s at 64.
# Over a long link a download moves at most PREFETCH_LIMIT x OPENSSH_REQUEST (8 MiB) per round
# trip: 83-95 MiB/s at 40 ms and 1 Gbit/s, 21 MiB/s at 100 ms and 200 Mbit/s, where 16 requests
# (2 MiB in flight, what OpenSSH's sftp keeps) gave 35 and 16 MiB/s, as OpenSSH's own sftp did.
PREFETCH_LIMIT: int | None = 64
# Our receive window must hold every reply in flight (8 MiB); uploads are bounded instead by the
# server's window (2 MiB from OpenSSH's sshd, per channel), for OpenSSH's client as well.
WINDOW_SIZE = 64 << 20
MAX_PACKET = 256 << 10
# SFTP requests: 32 KiB is what every server must accept; OpenSSH takes up to 256 KiB,
# and 128 KiB ran 1.5x faster than 32 KiB against OpenSSH on loopback; over a 40 ms, 1 Gbit/s
# link 32 KiB requests moved 28/36 MiB/s up/down against 37/83-95 and took 1.5x the CPU.
SAFE_REQUEST = 32 << 10
OPENSSH_REQUEST = 128 << 10
FULL_BELOW = 1 << 20  # free bytes under which a failed upload is reported as a full disk
ST_RDONLY = 0x1  # statvfs@openssh.com flag bit
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


class SftpStorage(Storage):
    """Backups in a directory of an SFTP server."""

    kind = "sftp"

    def __init__(self, settings: SftpSettings, kind: str = "sftp"):
        self.settings = settings
        self.kind = kind
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._root: str | None = None
        self._request_size = SAFE_REQUEST
        self._made_dirs: set[str] = set()  # directories this connection made or found: no round trip again
        self._channels: ExtraChannels | None = None  # for long uploads to OpenSSH, striped (sftp_stripes.py)

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
        s = self.settings
        sock = self._socket()
        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET)
        self._transport = transport
        # Past start_client's own timeout, so a silent server is reported as a timeout, not a banner error.
        transport.banner_timeout = transport.handshake_timeout = s.timeout + 1
        host_keys = HostKeyCheck(s.host, s.port, s.known_hosts, s.host_key_policy,
                                 known_hosts_option=s.known_hosts_option, policy_option=s.host_key_policy_option)
        try:
            known = host_keys.known_keys()
            host_keys.prefer_known_types(transport, known)
            _prefer_fast_ciphers(transport)
            transport.start_client(timeout=s.timeout)
            if transport.host_key is None:  # start_client gives up quietly after its timeout
                raise TimeoutError("no SSH handshake")
            host_keys.verify(transport.get_remote_server_key(), known)
            self._authenticate(transport)
            transport.set_keepalive(30)
            sftp = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET)
        except StorageError:
            self.reset()
            raise
        except paramiko.SSHException as exc:
            self.reset()
            if "subsystem" in str(exc).lower() or "channel closed" in str(exc).lower():
                raise StorageError(f"{s.where} offers no SFTP subsystem: enable it on the server") from exc
            raise ConnectError(f"SSH with {s.where} failed: {reason(exc)}") from exc
        except (OSError, EOFError) as exc:
            self.reset()
            raise _network_error(exc, s) from exc
        sftp.get_channel().settimeout(s.timeout)
        self._request_size = OPENSSH_REQUEST if "OpenSSH" in (transport.remote_version or "") else SAFE_REQUEST
        if self._request_size == OPENSSH_REQUEST:
            self._channels = ExtraChannels(transport, s.where, s.timeout, WINDOW_SIZE, MAX_PACKET)
        LOG.info("connected to %s", self.describe())
        return sftp

    def _socket(self) -> socket.socket:
        s = self.settings
        try:
            sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
        except OSError as exc:
            raise _network_error(exc, s) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _authenticate(self, transport: paramiko.Transport) -> None:
        s = self.settings
        tried = []
        if s.key_file:
            tried.append(f"key {s.key_file}")
            if self._try(lambda: transport.auth_publickey(s.username, _load_key(s))):
                return
        if s.password:
            tried.append("password")
            if self._try(lambda: transport.auth_password(s.username, s.password)):
                return
        for agent_key in _agent_keys(s):
            tried.append("ssh-agent")
            if self._try(lambda k=agent_key: transport.auth_publickey(s.username, k)):
                return
        what = ", ".join(dict.fromkeys(tried)) or "no password, key or agent"
        raise AuthError(f"login to {s.where} as {s.username!r} refused (tried {what}): check "
                        f"{s.option('username')}, {s.option('password')} or --ssh-key")

    @staticmethod
    def _try(attempt) -> bool:
        try:
            attempt()
            return True
        except paramiko.AuthenticationException:
            return False

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
        self._made_dirs.clear()

    # -- operations -------------------------------------------------------

    def _abs(self, path: str) -> str:
        self._client()
        return posixpath.join(self._root, path)

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Three round trips besides the data: make the directories and open, size and close, rename."""
        target = self._abs(path)
        temp = temporary_name(target)
        remote = None
        written = 0
        try:
            remote = self._pipelined(self._open_for_upload(temp))
            written = sftp_stripes.write_chunks(remote, chunks, temp, self._channels, self._open_again)
            self._check_stored(temp, written, sftp_requests.size_and_close(remote))
            self._rename(temp, target)
        except BaseException as exc:
            close_quietly(remote)
            known = self._disk_trouble(target, exc)
            self._discard(temp)
            raise (known or self._translate(exc, f"upload {target}")) from exc
        return written

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
        handle.MAX_REQUEST_SIZE = self._request_size
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
        stats = _statvfs(self._client(), posixpath.dirname(target))
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
            handle.MAX_REQUEST_SIZE = self._request_size
            handle.seek(offset)
            handle.prefetch(size, max_concurrent_requests=PREFETCH_LIMIT)
        except BaseException as exc:
            close_later(handle)
            raise self._translate(exc, f"download {remote}", missing=True) from exc
        try:
            left = size - offset  # reading up to the size, not to an end-of-file reply, saves two round trips
            while left > 0 and (data := handle.read(min(BLOCK_SIZE, left))):
                left -= len(data)
                yield data
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.reset()
            raise self._translate(exc, f"download {remote}") from exc
        finally:
            close_later(handle)

    def listdir(self, path: str) -> list[str]:
        return self.listdirs([path])[0]

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        """All of ``paths`` listed together: two round trips for up to 64 small directories."""
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
        if isinstance(exc, (StorageError, KeyboardInterrupt, GeneratorExit)):
            return exc
        where = self.settings.where
        if isinstance(exc, FileNotFoundError) and missing:
            return NotFound(f"{action}: no such file on {where}")
        if isinstance(exc, PermissionError):
            return PermissionDenied(f"{action} refused by {where}: check --container and its permissions")
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT) or "quota" in str(exc).lower()
                                          or "no space" in str(exc).lower()):
            return NoSpace(f"{where} is out of space during {action}: free space on the server")
        if isinstance(exc, (EOFError, paramiko.SSHException)):
            return ConnectError(f"connection to {where} lost during {action}: {reason(exc)}")
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
            return _network_error(exc, self.settings, action)
        if isinstance(exc, OSError):
            # OpenSSH's sftp-server reports a full or read-only disk as a bare "Failure".
            hint = " (the server's disk may be full or read-only)" if action.startswith("upload") else ""
            return StorageError(f"{action} failed on {where}: {reason(exc)}{hint}")
        return exc


@dataclasses.dataclass(frozen=True)
class FsStats:
    """What ``statvfs@openssh.com`` tells about the filesystem holding a path."""

    free_bytes: int
    read_only: bool


def _statvfs(sftp: paramiko.SFTPClient, path: str) -> FsStats | None:
    """OpenSSH's statvfs extension; None where the server lacks it or the call fails."""
    try:
        kind, msg = sftp._request(paramiko.sftp.CMD_EXTENDED, "statvfs@openssh.com", path)
    except (OSError, EOFError, paramiko.SSHException):
        return None
    if kind != paramiko.sftp.CMD_EXTENDED_REPLY:
        return None
    _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    for _ in range(4):  # files, ffree, favail, fsid
        msg.get_int64()
    flags = msg.get_int64()
    return FsStats(free_bytes=bavail * frsize, read_only=bool(flags & ST_RDONLY))


def _prefer_fast_ciphers(transport: paramiko.Transport) -> None:
    options = transport.get_security_options()
    available = list(options.ciphers)
    options.ciphers = [c for c in FAST_CIPHERS if c in available] + [c for c in available if c not in FAST_CIPHERS]


def _load_key(s: SftpSettings) -> paramiko.PKey:
    try:
        passphrase = s.key_passphrase.encode() if s.key_passphrase else None
        return paramiko.PKey.from_path(os.path.expanduser(s.key_file), password=passphrase)
    except FileNotFoundError as exc:
        raise AuthError(f"--ssh-key {s.key_file} does not exist") from exc
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        if s.key_passphrase:
            raise AuthError(f"cannot decrypt --ssh-key {s.key_file}: check --ssh-key-passphrase-file") from exc
        raise AuthError(f"--ssh-key {s.key_file} is encrypted: give --ssh-key-passphrase-file") from exc
    except (paramiko.SSHException, ValueError) as exc:
        raise AuthError(f"cannot load --ssh-key {s.key_file} (wrong passphrase or format): {reason(exc)}") from exc


def _agent_keys(s: SftpSettings) -> list:
    if not s.agent_socket:
        return []
    try:
        return list(paramiko.Agent().get_keys())
    except (paramiko.SSHException, OSError):
        return []


def _network_error(exc: BaseException, s: SftpSettings, action: str = "connect") -> BaseException:
    """Hints name the host and port options of the spelling in use; both spellings read --ssh-timeout."""
    return network_error(exc, s.where, action, s.option_prefix, timeout_option="--ssh-timeout")


def sftp_from_settings(settings: SftpSettings) -> SftpStorage:
    """``--storage sftp`` (the spec's ``--ftp-*``), bare: the registry wraps it."""
    return SftpStorage(settings, "sftp")


def ssh_from_settings(settings: SftpSettings) -> SftpStorage:
    """``--storage ssh`` (upstream's ``--ssh-*``), bare: the registry wraps it."""
    return SftpStorage(settings, "ssh")
