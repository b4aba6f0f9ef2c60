"""Long SFTP uploads striped over more channels of the one SSH connection.

sshd gives each channel its own 2 MiB window, which bounds one channel to 2 MiB per round trip.
Measured with put_stream through benchmarks/wan.py (96 MiB): one channel 14.8-15.1 MiB/s, two 17.5,
three 16.1 at 100 ms, 200 Mbit/s; 36-37, 47-54 and 50-52 MiB/s at 40 ms, 1 Gbit/s. Opening a channel
costs about four round trips: not for small files, and done in the background while the upload goes on.
On a long link the stripes go over more SSH connections instead (sftp_parallel.py opens them), each its
own TCP connection: the same class holds them, given how to open and close one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paramiko

from freezer.storage.sftp_requests import close_quietly

LOG = logging.getLogger(__name__)
UPLOAD_CHANNELS = 2  # channels an upload is striped over once STRIPE_AFTER bytes are sent
STRIPE_AFTER = 8 << 20
# The extra channels are opened in the background from this point of an upload (once per connection), so
# that they are ready by STRIPE_AFTER: at 40 ms, 200 Mbit/s starting at 4 MiB still left 60 ms to wait.
OPEN_CHANNELS_AFTER = 1 << 20

OpenAgain = Callable[[paramiko.SFTPClient, str], paramiko.SFTPFile]  # (channel, path) -> the file open for writing
OpenChannel = Callable[[], paramiko.SFTPClient]


class ExtraChannels:
    """SFTP channels beyond the first; a server that refuses one is not asked again, and those opened are kept."""

    def __init__(self, open_channel: OpenChannel, where: str, count: int = UPLOAD_CHANNELS - 1,
                 close_channel: Callable[[paramiko.SFTPClient], None] = close_quietly):
        self.open_channel, self.where, self.count = open_channel, where, count
        self.close_channel = close_channel
        self.channels: list[paramiko.SFTPClient] = []
        self.refused = False
        self._opener: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    def open_early(self) -> None:
        """Start opening the channels in the background, unless that was done (or refused) already."""
        if self._opener is None and not self.refused:
            self._opener = threading.Thread(target=self._open, name="sftp-channels", daemon=True)
            self._opener.start()

    def wait(self) -> None:
        """Until the background opening is over."""
        if self._opener is not None:
            self._opener.join()

    def live(self) -> list[paramiko.SFTPClient]:
        """The channels still open; those a cut link closed are dropped, and replaced by the next ``open_early``."""
        with self._lock:
            dead = [channel for channel in self.channels if not is_open(channel)]
            if dead and self._opener is not None and not self._opener.is_alive():
                self._opener = None
            self.channels = [channel for channel in self.channels if channel not in dead]
        for channel in dead:
            self.close_channel(channel)
        return list(self.channels)

    def handles(self, path: str, open_again: OpenAgain) -> list[paramiko.SFTPFile]:
        """``path`` opened on each extra channel; none where they cannot be opened."""
        self.live()
        if self.refused:
            return []
        self.open_early()  # chunks so large that the upload comes here before it started
        self.wait()  # what is left of its round trips, if the link was faster than them
        try:
            return [open_again(channel, path) for channel in self.channels]
        except (OSError, EOFError, paramiko.SSHException):
            LOG.debug("uploading over one channel: cannot open %s again on %s", path, self.where, exc_info=True)
            self.refused = True
            return []

    def grow(self, count: int) -> list[paramiko.SFTPClient]:
        """Up to ``count`` channels: the missing ones opened now, at once; the live ones once that is over."""
        self.wait()
        with self._lock:
            self.count = max(self.count, count)
        self.live()
        self._opener = None
        self.open_early()
        self.wait()
        return self.live()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for channel in self.channels:
                self.close_channel(channel)
            self.channels = []

    def _open(self) -> None:
        """Open the missing channels at once (a login over a long link is several round trips), keep those opened."""
        with self._lock:
            missing = self.count - len(self.channels)
        opened: list[paramiko.SFTPClient | BaseException] = []
        threads = [threading.Thread(target=self._open_one, args=(opened,), daemon=True) for _ in range(missing)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        channels = [item for item in opened if not isinstance(item, BaseException)]
        refused = len(channels) < missing
        if refused:  # a refused session, or a login the server drops (sshd's MaxStartups): back off
            failure = next(item for item in opened if isinstance(item, BaseException))
            if channels:
                LOG.debug("%d more channels to %s: the server takes no more", len(channels), self.where,
                          exc_info=failure)
            else:
                LOG.debug("uploading over one channel: no more SFTP channels on %s", self.where, exc_info=failure)
        with self._lock:
            self.refused = refused and not channels
            if not self._closed:
                self.channels += channels
                return
        for channel in channels:  # the connection was closed meanwhile
            self.close_channel(channel)

    def _open_one(self, opened: list) -> None:
        try:
            opened.append(self.open_channel())
        except Exception as exc:
            opened.append(exc)


def is_open(channel: paramiko.SFTPClient) -> bool:
    """Whether the channel and its connection are still up."""
    transport = channel.get_channel().get_transport()
    return not channel.get_channel().closed and transport is not None and transport.is_active()
