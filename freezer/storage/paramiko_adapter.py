"""The one module that reaches into paramiko's private attributes, for what its public API cannot do.

paramiko's SFTP client waits for each reply before it sends the next request, checks pipelined
writes only past 100 pending, and has no call for OpenSSH's statvfs extension. The SFTP modules send
batches, confirm every write and ask for free space through the functions below, and touch nothing
private themselves (``freezer/tests/unit/test_architecture.py`` holds them to it).

Checked against paramiko 3.4.0, 4.0.0 and 5.1.0 (the same sftp_client, sftp_file, sftp_attr, sftp
and file modules in all three), whose ``SFTPClient._async_request``, ``_read_response``,
``_convert_status``, ``_request``, ``SFTPAttributes._from_msg``, ``SFTPFile._close``,
``SFTPFile._reqs``, ``SFTPFile.MAX_REQUEST_SIZE``, ``BufferedFile._wbuffer`` and the
``_async_response`` callback are used here; setup.cfg bounds paramiko to that range and
tools/test-paramiko.sh tests its two ends.
"""

from __future__ import annotations

import paramiko
from paramiko.message import Message
from paramiko.sftp import CMD_EXTENDED
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile


class Replies:
    """Replies to requests sent with ``send``, by request number, as paramiko's reader hands them over."""

    def __init__(self) -> None:
        self.received: dict[int, tuple[int, Message]] = {}

    def _async_response(self, kind: int, msg: Message, num: int) -> None:
        """paramiko's reader calls this (by this name) with each reply to one of our requests."""
        self.received[num] = (kind, msg)


def send(sftp: paramiko.SFTPClient, replies: Replies | None, kind: int, *args) -> int:
    """Send a request without waiting; its reply goes to ``replies``, or is dropped unread for None."""
    return sftp._async_request(type(None) if replies is None else replies, kind, *args)


def read_next_reply(sftp: paramiko.SFTPClient) -> None:
    """Read one reply from the channel and hand it to whoever sent its request."""
    sftp._read_response()


def raise_status(sftp: paramiko.SFTPClient, msg: Message) -> None:
    """Raise a failure status as paramiko does (OSError and its children, EOFError at the end of a listing)."""
    sftp._convert_status(msg)


def attributes(msg: Message, name: str | None = None, longname: str | None = None) -> SFTPAttributes:
    """The file attributes that come next in ``msg``."""
    return SFTPAttributes._from_msg(msg, name, longname)


def extended_request(sftp: paramiko.SFTPClient, name: str, *args) -> tuple[int | None, Message | None]:
    """Send an extension's request (e.g. ``statvfs@openssh.com``) and wait for its reply."""
    return sftp._request(CMD_EXTENDED, name, *args)


def set_request_size(remote: SFTPFile, size: int) -> None:
    """Bytes per read or write request on this file (paramiko's default is 32 KiB)."""
    remote.MAX_REQUEST_SIZE = size


def mark_closed(remote: SFTPFile) -> None:
    """Mark the file closed without paramiko sending its own CLOSE (the caller sent one in a batch)."""
    paramiko.file.BufferedFile.close(remote)


def forget(remote: SFTPFile) -> None:
    """Mark a file whose connection is gone closed, dropping what it buffered, so that its ``__del__``
    does not try to send it again (and print that failure to stderr)."""
    remote._wbuffer.seek(0)
    remote._wbuffer.truncate()
    paramiko.file.BufferedFile.close(remote)


def close_without_waiting(remote: SFTPFile) -> None:
    """Send the file's CLOSE and do not wait for the reply."""
    remote._close(async_=True)


def unconfirmed_bytes(remote: SFTPFile) -> int:
    """At most this many bytes written to ``remote`` wait for the server to confirm them (sent or buffered)."""
    return len(remote._reqs) * remote.MAX_REQUEST_SIZE + remote._wbuffer.tell()


def confirm_writes(remote: SFTPFile) -> None:
    """Read the replies to pipelined writes that paramiko has not read yet; raise on a failed one.

    paramiko reads them only once over 100 wait and forgets the rest when the file closes: a write
    a full disk refused would pass unseen.
    """
    while remote._reqs:
        remote.sftp._read_response(remote._reqs.popleft())
