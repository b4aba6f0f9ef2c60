"""One SSH connection and its SFTP channel: socket, window sizes, ciphers, timeouts, host key check and login."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable

import paramiko

from freezer.common.settings import SftpSettings
from freezer.errors import StorageError
from freezer.storage.hostkeys import HostKeyCheck
from freezer.storage.sftp_auth import authenticate
from freezer.storage.sftp_errors import connect_error, network_error
from freezer.storage.sftp_requests import close_quietly

# Throughput settings, measured on loopback and over benchmarks/wan.py's long link (performance.rst).
# Our receive window must hold every reply in flight (8 MiB); uploads are bounded instead by the
# server's window (2 MiB from OpenSSH's sshd, per channel), for OpenSSH's client as well.
WINDOW_SIZE = 64 << 20
MAX_PACKET = 256 << 10
# SFTP requests: 32 KiB is what every server must accept; OpenSSH takes up to 256 KiB,
# and 128 KiB ran 1.5x faster than 32 KiB against OpenSSH on loopback; over a 40 ms, 1 Gbit/s
# link 32 KiB requests moved 28/36 MiB/s up/down against 37/83-95 and took 1.5x the CPU.
SAFE_REQUEST = 32 << 10
OPENSSH_REQUEST = 128 << 10
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
KEEPALIVE = 30  # seconds
#: a round trip beyond this is a long link (auto's --ftp-connections, sftp_parallel.py); a LAN's is far less
LONG_ROUND_TRIP = 0.025


@dataclasses.dataclass
class Connection:
    """A logged-in SSH connection, its first SFTP channel and the request size its server takes."""

    transport: paramiko.Transport
    sftp: paramiko.SFTPClient
    request_size: int
    round_trip: float = 0.0  # seconds, estimated from opening the SFTP channel (three round trips)

    def close(self) -> None:
        close_quietly(self.sftp)
        close_quietly(self.transport)

    @property
    def to_openssh(self) -> bool:
        return self.request_size == OPENSSH_REQUEST


def connect(s: SftpSettings, agent_keys: Callable[[], list]) -> Connection:
    """Connect, check the host key, log in and open the SFTP channel; StorageError on any failure."""
    transport = paramiko.Transport(_socket(s), default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET)
    # Past start_client's own timeout, so a silent server is reported as a timeout, not a banner error.
    transport.banner_timeout = transport.handshake_timeout = s.timeout + 1
    try:
        sftp, round_trip = _log_in(transport, s, agent_keys)
    except BaseException as exc:
        close_quietly(transport)
        if isinstance(exc, (paramiko.SSHException, OSError, EOFError)) and not isinstance(exc, StorageError):
            raise connect_error(exc, s) from exc
        raise
    sftp.get_channel().settimeout(s.timeout)
    request_size = OPENSSH_REQUEST if "OpenSSH" in (transport.remote_version or "") else SAFE_REQUEST
    return Connection(transport, sftp, request_size, round_trip)


def _socket(s: SftpSettings) -> socket.socket:
    try:
        sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
    except OSError as exc:
        raise network_error(exc, s) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _log_in(transport: paramiko.Transport, s: SftpSettings,
            agent_keys: Callable[[], list]) -> tuple[paramiko.SFTPClient, float]:
    """The SFTP channel, and the round trip its opening took (channel open, subsystem, version: three)."""
    host_keys = HostKeyCheck(s.host, s.port, s.known_hosts, s.host_key_policy,
                             known_hosts_option=s.known_hosts_option, policy_option=s.host_key_policy_option)
    known = host_keys.known_keys()
    host_keys.prefer_known_types(transport, known)
    _prefer_fast_ciphers(transport)
    transport.start_client(timeout=s.timeout)
    if transport.host_key is None:  # start_client gives up quietly after its timeout
        raise TimeoutError("no SSH handshake")
    host_keys.verify(transport.get_remote_server_key(), known)
    authenticate(transport, s, agent_keys)
    transport.set_keepalive(KEEPALIVE)
    started = time.monotonic()
    sftp = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET)
    return sftp, _confirmed_round_trip(sftp, (time.monotonic() - started) / 3)


def _confirmed_round_trip(sftp: paramiko.SFTPClient, estimate: float) -> float:
    """``estimate``, or a second sample (one REALPATH) if it was lower: a busy CPU can make a LAN look long."""
    if estimate <= LONG_ROUND_TRIP:
        return estimate
    started = time.monotonic()
    sftp.normalize(".")
    return min(estimate, time.monotonic() - started)


def open_channel(transport: paramiko.Transport, timeout: float) -> paramiko.SFTPClient:
    """One more SFTP channel on the same SSH connection."""
    channel = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET)
    channel.get_channel().settimeout(timeout)
    return channel


def _prefer_fast_ciphers(transport: paramiko.Transport) -> None:
    options = transport.get_security_options()
    available = list(options.ciphers)
    options.ciphers = [c for c in FAST_CIPHERS if c in available] + [c for c in available if c not in FAST_CIPHERS]

