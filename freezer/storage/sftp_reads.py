"""An SFTP download on one connection: pipelined reads, parsed in a thread of their own, joined into pieces."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import paramiko

from freezer.common.prefetch import prefetch
from freezer.storage import chunking, sftp_requests
from freezer.storage.sftp_connect import LONG_ROUND_TRIP

# Reads in flight while downloading (sftp_requests.stream_range; with paramiko's prefetch, unbounded,
# 512 MiB took 58.6 s, 31 s at 256, 4.2 s at 64). Over a long link a download moves at most
# PREFETCH_LIMIT x OPENSSH_REQUEST (8 MiB) per round trip: 83-95 MiB/s at 40 ms and 1 Gbit/s,
# 21 MiB/s at 100 ms and 200 Mbit/s, where 16 requests (2 MiB in flight, what OpenSSH's sftp
# keeps) gave 35 and 16 MiB/s, as OpenSSH's own sftp did.
PREFETCH_LIMIT = 64
# On a LAN fewer do better: a 1 GiB restore through the agent on loopback took 4.94 s (median of
# four) with 64 in flight and 4.12 s with 32 (CPU 5.70 and 4.76 s); 128 took 6.1-6.9 s in process.
LAN_IN_FLIGHT = 32
# Joined pieces read ahead of the caller by the reading thread. Parsed in the caller's thread, the
# replies waited while it hashed: a 1 GiB LAN restore took 1 s more.
PIECES_AHEAD = 4


def in_flight_for(round_trip: float) -> int:
    """Reads kept in flight on a link with this round trip (seconds)."""
    return LAN_IN_FLIGHT if round_trip < LONG_ROUND_TRIP else PREFETCH_LIMIT


def read_through(sftp: paramiko.SFTPClient, handle: paramiko.SFTPFile, offset: int, left: int, request_size: int,
                 in_flight: int, piece_size: int, abandon: Callable[[], None]) -> Iterator[bytes]:
    """``left`` bytes of the open file from ``offset`` in pieces of about ``piece_size``; ``abandon()``
    is called when the caller leaves midway (the thread may still wait for a reply on this session)."""
    if not left:
        return
    replies = sftp_requests.stream_range(sftp, handle, offset, left, request_size, in_flight)
    pieces = prefetch(chunking.parts(replies, piece_size), depth=PIECES_AHEAD)
    handed = 0
    try:
        for piece in pieces:
            handed += len(piece)
            yield piece
    except BaseException:
        if handed < left:
            abandon()  # closing the session wakes the thread, so the close below does not wait for it
        raise
    finally:
        pieces.close()
