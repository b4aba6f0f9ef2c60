"""FTP listings read safely: MLSD lines parsed, NLST names trimmed, size and time bounded."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

from freezer.storage.base import MAX_LISTING, listing_too_long
from freezer.storage.ftp_client import FtpSettings

READ_SIZE = 1 << 20
MAX_LISTING_BYTES = MAX_LISTING * 64  # an MLSD line of a freezer container is under 60 bytes


def read_listing(conn: socket.socket, remote: str, settings: FtpSettings) -> bytearray:
    """A listing's bytes, whole within --ftp-timeout and at most ``MAX_LISTING_BYTES`` of them."""
    deadline = time.monotonic() + settings.timeout
    listing = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the listing of {remote} did not end in time")
        conn.settimeout(remaining)
        if not (data := conn.recv(READ_SIZE)):
            return listing
        listing += data
        if len(listing) > MAX_LISTING_BYTES:
            raise listing_too_long(remote, settings.where)


def nlst_name(name: str, remote: str) -> str:
    """A name of an NLST reply, which may carry the directory listed in front; any other path stays as
    it is, for ``checked_entries`` to refuse."""
    prefix = remote.rstrip("/") + "/"
    return name[len(prefix):] if name.startswith(prefix) else name


def lines(data: bytearray) -> Iterator[bytes]:
    """The lines of ``data`` one at a time (a list of them all would be several times its size)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield bytes(data[start:end])
        start = end + 1


def mlsd_entry(line: str) -> tuple[str, str | None] | None:
    """``("name", type)`` from one MLSD line (``fact=value;...; name``); None for a blank line."""
    facts, _, name = line.rstrip("\r\n").partition(" ")
    if not name:
        return None
    for fact in facts.split(";"):
        key, _, value = fact.partition("=")
        if key.lower() == "type":
            value = value.lower()
            return name, "dir" if value == "dir" else "file" if value == "file" else value or None
    return name, None
