"""Counters of what a command costs on the wire: storage calls, FTP commands, SFTP round trips.

Tests and benchmarks use them to show that a command's cost does not grow with the history stored.
They patch client classes for the duration of a ``with`` block, so they are for one thread's test only.
"""

from __future__ import annotations

import collections
import contextlib
import ftplib
from collections.abc import Iterator


class CountingStorage:
    """A storage whose method calls are counted by name; ``listdirs`` of many paths is one call."""

    def __init__(self, storage):
        self._storage = storage
        self.calls: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __getattr__(self, name: str):
        attribute = getattr(self._storage, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


class RoundTrips:
    """Times a client waited for a server: one per reply awaited after a run of requests sent."""

    def __init__(self):
        self.requests = 0
        self.round_trips = 0
        self._sent = False

    def sent(self) -> None:
        self.requests += 1
        self._sent = True

    def waited(self) -> None:
        if self._sent:
            self.round_trips += 1
            self._sent = False


@contextlib.contextmanager
def _patched(cls: type, name: str, before) -> Iterator[None]:
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        before()
        return original(self, *args, **kwargs)

    setattr(cls, name, wrapper)
    try:
        yield
    finally:
        setattr(cls, name, original)


@contextlib.contextmanager
def ftp_round_trips() -> Iterator[RoundTrips]:
    """Count the FTP commands every ftplib client sends in the block (each one waits for its reply)."""
    counter = RoundTrips()
    with _patched(ftplib.FTP, "putcmd", counter.sent), _patched(ftplib.FTP, "getresp", counter.waited):
        yield counter


@contextlib.contextmanager
def sftp_round_trips() -> Iterator[RoundTrips]:
    """Count SFTP requests and round trips (a wait for replies after requests were sent) in the block."""
    import paramiko  # only the SFTP tests need it

    counter = RoundTrips()
    with _patched(paramiko.SFTPClient, "_async_request", counter.sent), \
            _patched(paramiko.SFTPClient, "_read_response", counter.waited):
        yield counter
