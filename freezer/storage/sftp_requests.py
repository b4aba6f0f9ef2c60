"""SFTP requests sent together: a batch in flight costs one round trip, where paramiko waits for each.

paramiko's ``SFTPClient`` sends a request and reads its reply before the next one. Over a long link
every such wait is a round trip, so the driver sends independent requests (the mkdirs of a path and
the open below them, a listing of several directories, the size and close of an upload) at once and
then reads their replies, in whatever order the server gives them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import mmap
from collections.abc import Iterator

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED_REPLY,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_MKDIR,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_STAT,
    CMD_STATUS,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from freezer.storage import paramiko_adapter
from freezer.storage.paramiko_adapter import Replies, confirm_writes

LOG = logging.getLogger(__name__)
# Directories open at once while listing: one per stored backup at the deepest level, so info and admin
# take the same round trips up to 512 backups of a name. Each is a file descriptor of the server's
# process, half the usual limit of 1024; a server that runs out gets fewer (see list_dirs).
LIST_IN_FLIGHT = 512
DIR_MODE = 0o777  # what paramiko's mkdir asks for; the server's umask applies
WRITE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
ST_RDONLY = 0x1  # statvfs@openssh.com flag bit


class Batch:
    """Requests on one SFTP channel whose replies are read only when asked for."""

    def __init__(self, sftp: paramiko.SFTPClient):
        self.sftp = sftp
        self.replies = Replies()

    def send(self, kind: int, *args) -> int:
        """Send a request now; return its number for ``reply``."""
        return paramiko_adapter.send(self.sftp, self.replies, kind, *args)

    def reply(self, num: int) -> tuple[int, Message]:
        """The reply to request ``num``; a failure status raised as paramiko raises it (OSError, EOFError)."""
        while num not in self.replies.received:
            paramiko_adapter.read_next_reply(self.sftp)
        kind, msg = self.replies.received.pop(num)
        if kind == CMD_STATUS:
            paramiko_adapter.raise_status(self.sftp, msg)
        return kind, msg

    def error(self, num: int) -> OSError | None:
        """The failure of request ``num``, or None if it succeeded."""
        try:
            self.reply(num)
        except OSError as exc:
            return exc
        return None

    def handle(self, num: int) -> bytes:
        kind, msg = self.reply(num)
        if kind != CMD_HANDLE:
            raise paramiko.SFTPError("Expected handle")
        return msg.get_binary()

    def attributes(self, num: int) -> SFTPAttributes:
        kind, msg = self.reply(num)
        if kind != CMD_ATTRS:
            raise paramiko.SFTPError("Expected attributes")
        return paramiko_adapter.attributes(msg)

    def names(self, num: int) -> list[str]:
        """The names of one READDIR reply, without ``.`` and ``..``; EOFError once the listing is over."""
        kind, msg = self.reply(num)
        if kind != CMD_NAME:
            raise paramiko.SFTPError("Expected name response")
        names = []
        for _ in range(msg.get_int()):
            name, longname = msg.get_text(), msg.get_text()
            paramiko_adapter.attributes(msg, name, longname)  # read past its attributes
            if name not in (".", ".."):
                names.append(name)
        return names

    def mkdir(self, path: str) -> int:
        attributes = SFTPAttributes()
        attributes.st_mode = DIR_MODE
        return self.send(CMD_MKDIR, path, attributes)


def read_range(sftp: paramiko.SFTPClient, handle: SFTPFile, offset: int, length: int, request_size: int,
               in_flight: int) -> memoryview:
    """``stream_range`` received into a mapping of its own (its pages become memory as data lands; all go
    back with the last view of it)."""
    buffer = memoryview(mmap.mmap(-1, length)) if length else memoryview(b"")
    filled = 0
    for data in stream_range(sftp, handle, offset, length, request_size, in_flight):
        buffer[filled:filled + len(data)] = data
        filled += len(data)
    return buffer


def stream_range(sftp: paramiko.SFTPClient, handle: SFTPFile, offset: int, length: int, request_size: int,
                 in_flight: int) -> Iterator[bytes]:
    """``length`` bytes of the open file from ``offset``, in order, a reply at a time, with up to ``in_flight``
    reads sent ahead of the one read (so at most that many replies wait in memory).

    A server may answer a read with fewer bytes: the rest is asked next. EOFError where the file ends early.
    """
    batch = Batch(sftp)
    asked, waiting = 0, collections.deque()
    while asked < length or waiting:
        while asked < length and len(waiting) < in_flight:
            size = min(request_size, length - asked)
            waiting.append((batch.send(CMD_READ, handle.handle, int64(offset + asked), size), asked, size))
            asked += size
        num, start, size = waiting.popleft()
        data = _data(batch, num, size)
        if len(data) < size:
            rest = (start + len(data), size - len(data))
            waiting.appendleft((batch.send(CMD_READ, handle.handle, int64(offset + rest[0]), rest[1]), *rest))
        yield data


def _data(batch: Batch, num: int, asked: int) -> bytes:
    """The bytes of one READ reply: at least one, at most ``asked``."""
    kind, msg = batch.reply(num)
    if kind != CMD_DATA:
        raise paramiko.SFTPError("Expected data")
    data = msg.get_binary()
    if not data:
        raise EOFError("the server answered a read with no data")
    if len(data) > asked:
        raise paramiko.SFTPError(f"the server answered a read of {asked} bytes with {len(data)}")
    return data


def make_dirs_and_open(sftp: paramiko.SFTPClient, dirs: list[str], path: str, bufsize: int) -> SFTPFile | None:
    """mkdir each of ``dirs`` (parents first; "exists" is fine) and open ``path`` for writing, in one round trip.

    The open file, or None where it could not be opened.
    """
    batch = Batch(sftp)
    making = [batch.mkdir(directory) for directory in dirs]
    opening = batch.send(CMD_OPEN, path, WRITE_FLAGS, SFTPAttributes())
    for num in making:
        batch.error(num)  # a directory that was there already answers Failure: what counts is the open
    try:
        return SFTPFile(sftp, batch.handle(opening), "wb", bufsize)
    except OSError:
        return None


def make_dirs(sftp: paramiko.SFTPClient, dirs: list[str]) -> OSError | None:
    """mkdir each of ``dirs`` (parents first) in one round trip; the error of the last one, or None."""
    batch = Batch(sftp)
    sent = [batch.mkdir(directory) for directory in dirs]
    errors = [batch.error(num) for num in sent]
    return errors[-1]


def open_with_size(sftp: paramiko.SFTPClient, path: str, bufsize: int) -> tuple[SFTPFile, int]:
    """``path`` opened for reading and its size, in one round trip."""
    batch = Batch(sftp)
    opening = batch.send(CMD_OPEN, path, SFTP_FLAG_READ, SFTPAttributes())
    stating = batch.send(CMD_STAT, path)
    handle = SFTPFile(sftp, batch.handle(opening), "rb", bufsize)
    try:
        size = batch.attributes(stating).st_size
    except BaseException:
        close_later(handle)
        raise
    return handle, size


def size_and_close(remote: SFTPFile) -> int | None:
    """Send what is buffered, then ask the size of the open file and close it, in one round trip.

    Every pending write is confirmed too (a write refused by a full disk raises here); the size is the
    server's after those writes; None where the server does not say.
    """
    return _finish(remote, with_size=True)


def close_after_writes(remote: SFTPFile) -> None:
    """Send what is buffered and close the file, confirming every pending write, in one round trip."""
    _finish(remote, with_size=False)


def _finish(remote: SFTPFile, with_size: bool) -> int | None:
    remote.flush()
    batch = Batch(remote.sftp)
    stating = batch.send(CMD_FSTAT, remote.handle) if with_size else None
    closing = batch.send(CMD_CLOSE, remote.handle)
    paramiko_adapter.mark_closed(remote)  # paramiko must not send its own CLOSE
    confirm_writes(remote)
    size = batch.attributes(stating).st_size if stating is not None else None
    batch.reply(closing)
    return size


def close_later(remote: SFTPFile | None) -> None:
    """Close a file opened for reading without waiting for the reply (a failed close changes nothing)."""
    if remote is None:
        return
    try:
        paramiko_adapter.close_without_waiting(remote)
    except (OSError, EOFError, paramiko.SSHException):
        LOG.debug("could not close remote file", exc_info=True)


def close_quietly(closable: SFTPFile | paramiko.SFTPClient | paramiko.Transport | None) -> None:
    """Close a file, channel or connection now, so a dead connection cannot make its ``__del__`` complain later."""
    if closable is None:
        return
    try:
        closable.close()
    except (OSError, EOFError, paramiko.SSHException):
        LOG.debug("could not close remote file", exc_info=True)
        if isinstance(closable, SFTPFile):
            paramiko_adapter.forget(closable)


def list_dirs(sftp: paramiko.SFTPClient, paths: list[str]) -> list[list[str] | OSError]:
    """The names in each of ``paths`` (or the error listing it), two round trips for a batch of small ones.

    A directory the server could not open for a reason it does not name (out of handles) is listed again
    in a later batch no larger than what the server did open; alone, its error stands.
    """
    results: dict[int, list[str] | OSError] = {}
    waiting, window = list(range(len(paths))), LIST_IN_FLIGHT
    while waiting:
        batch, waiting = waiting[:window], waiting[window:]
        listed = dict(zip(batch, _list_some(sftp, [paths[index] for index in batch]), strict=True))
        results.update(listed)
        refused = [index for index, listing in listed.items() if len(batch) > 1 and _unnamed_failure(listing)]
        if refused:
            window = max(1, len(batch) - len(refused))
            LOG.debug("server refused %d of %d directories listed at once; %d at a time now",
                      len(refused), len(batch), window)
            waiting = refused + waiting
    return [results[index] for index in range(len(paths))]


def _unnamed_failure(listing: list[str] | OSError) -> bool:
    """A generic SFTP failure (no errno): what OpenSSH answers when it has no descriptor left."""
    return isinstance(listing, OSError) and not isinstance(listing, FileNotFoundError) and listing.errno is None


def _list_some(sftp: paramiko.SFTPClient, paths: list[str]) -> list[list[str] | OSError]:
    batch = Batch(sftp)
    opening = [batch.send(CMD_OPENDIR, path) for path in paths]
    results: list[list[str] | OSError] = []
    handles: dict[int, bytes] = {}
    for index, num in enumerate(opening):
        try:
            handles[index] = batch.handle(num)
            results.append([])
        except OSError as exc:
            results.append(exc)
    while handles:
        # Two reads each: a directory whose names fit in one reply learns that it is over in the same round trip.
        reads = {index: (batch.send(CMD_READDIR, handle), batch.send(CMD_READDIR, handle))
                 for index, handle in handles.items()}
        over = [index for index, nums in reads.items() if _read_names(batch, nums, results, index)]
        for index in over:
            paramiko_adapter.send(sftp, None, CMD_CLOSE, handles.pop(index))  # its reply is not waited for
    return results


def _read_names(batch: Batch, nums: tuple[int, ...], results: list, index: int) -> bool:
    """Add the names of these READDIR replies to ``results[index]``; True once the listing is over."""
    over = False
    for num in nums:
        try:
            names = batch.names(num)
        except EOFError:
            over = True
            continue
        except OSError as exc:
            results[index], over = exc, True
            continue
        if not over and isinstance(results[index], list):
            results[index] += names
    return over


@dataclasses.dataclass(frozen=True)
class FsStats:
    """What ``statvfs@openssh.com`` tells about the filesystem holding a path."""

    free_bytes: int
    read_only: bool


def statvfs(sftp: paramiko.SFTPClient, path: str) -> FsStats | None:
    """OpenSSH's statvfs extension; None where the server lacks it or the call fails."""
    try:
        kind, msg = paramiko_adapter.extended_request(sftp, "statvfs@openssh.com", path)
    except (OSError, EOFError, paramiko.SSHException):
        return None
    if kind != CMD_EXTENDED_REPLY:
        return None
    _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    for _ in range(4):  # files, ffree, favail, fsid
        msg.get_int64()
    flags = msg.get_int64()
    return FsStats(free_bytes=bavail * frsize, read_only=bool(flags & ST_RDONLY))
