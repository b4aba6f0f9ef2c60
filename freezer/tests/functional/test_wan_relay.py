"""The benchmark's long-link relay (benchmarks/wan.py): bytes pass, and no sooner than the link allows.

Only lower bounds on time are asserted: a busy machine may make the relay slower, never faster.
"""

import contextlib
import ftplib
import io
import os
import socket
import threading
import time

import fixtures
import paramiko
import testtools

from benchmarks import wan
from freezer.testing import servers
from freezer.testing.sshd import Sshd

LINK = wan.Link.parse("100ms,8mbit")  # 1 MB/s: 256 KiB take 0.26 s on the line each way
PAYLOAD = 256 << 10


class TestWanRelay(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def relay(self, port: int, ftp: bool = False) -> wan.Relay:
        relay = wan.Relay(("127.0.0.1", port), LINK, ftp=ftp).start()
        self.addCleanup(relay.close)
        return relay

    def test_ftp_data_connections_pass_through_the_delayed_link(self):
        server = self.useFixture(servers.PyFtpd(self.tmp))
        relay = self.relay(server.port, ftp=True)
        payload = os.urandom(PAYLOAD)
        start = time.monotonic()
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", relay.port)
            ftp.login(server.username, server.password)
            ftp.storbinary("STOR relayed.bin", io.BytesIO(payload))
            received = io.BytesIO()
            ftp.retrbinary("RETR relayed.bin", received.write)
        elapsed = time.monotonic() - start
        self.assertEqual(payload, received.getvalue())
        with open(os.path.join(server.root, "relayed.bin"), "rb") as stored:
            self.assertEqual(payload, stored.read())
        # Both transfers cross the line (the relayed count proves the data went through the relay),
        # and at least connect, USER, PASS, PASV, STOR, PASV, RETR each wait a round trip.
        self.assertGreaterEqual(relay.relayed, 2 * PAYLOAD)
        self.assertGreaterEqual(elapsed, 2 * PAYLOAD / LINK.rate + 7 * LINK.rtt)

    def test_a_window_bounds_one_connection_to_a_window_per_round_trip(self):
        server = self.useFixture(servers.PyFtpd(self.tmp))
        link = wan.Link.parse("100ms,1gbit,64kib")  # one stream: 640 KiB/s, far below the line
        relay = wan.Relay(("127.0.0.1", server.port), link, ftp=True).start()
        self.addCleanup(relay.close)
        payload = os.urandom(1 << 20)
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", relay.port)
            ftp.login(server.username, server.password)
            start = time.monotonic()
            ftp.storbinary("STOR windowed.bin", io.BytesIO(payload))
            elapsed = time.monotonic() - start
        # 1 MiB at 64 KiB per round trip takes 16 of them (1.6 s); the line alone would take 8 ms.
        self.assertGreaterEqual(elapsed, len(payload) / link.one_stream())
        self.assertGreaterEqual(relay.relayed, len(payload))

    def test_sftp_passes_through_the_delayed_link(self):
        server = self.useFixture(Sshd(self.tmp))
        relay = self.relay(server.port)
        payload = os.urandom(PAYLOAD)
        start = time.monotonic()
        transport = paramiko.Transport(("127.0.0.1", relay.port))
        self.addCleanup(transport.close)
        transport.connect(username=server.username, password=server.password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        sftp.putfo(io.BytesIO(payload), f"{server.root}/relayed.bin")
        received = io.BytesIO()
        sftp.getfo(f"{server.root}/relayed.bin", received)
        elapsed = time.monotonic() - start
        self.assertEqual(payload, received.getvalue())
        self.assertGreaterEqual(elapsed, 2 * PAYLOAD / LINK.rate + 4 * LINK.rtt)


    def test_a_reader_that_hangs_up_mid_stream_resets_the_sender(self):
        # vsftpd keeps writing a RETR the client stopped reading (an aborted range): through the
        # relay its write must fail at once, as over TCP. (The race that left vsftpd on a zero window
        # for a minute, about one parallel restore in four at 100 ms, is not reproduced here: this
        # guards the behaviour, the benchmark loop in the commit message measured the fix.)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        relay = wan.Relay(listener.getsockname(), wan.Link.parse("10ms,1gbit,256kib"), ftp=False).start()
        self.addCleanup(relay.close)
        client = socket.create_connection(("127.0.0.1", relay.port))
        sender, _ = listener.accept()
        self.addCleanup(sender.close)
        failed = threading.Event()

        def write_forever():
            with contextlib.suppress(OSError):
                while True:
                    sender.sendall(b"x" * 65536)
            failed.set()

        threading.Thread(target=write_forever, daemon=True).start()
        got = 0
        while got < 1 << 20:
            got += len(client.recv(65536))
        client.close()  # with bytes unread: a reset
        self.assertTrue(failed.wait(10), "the sender was never told the reader had gone")

class TestLinkSpec(testtools.TestCase):
    def test_delay_and_rate_are_parsed(self):
        self.assertEqual(wan.Link(0.04, 25e6), wan.Link.parse("40ms,200mbit"))
        self.assertEqual(wan.Link(0.1, 125e6), wan.Link.parse("0.1s, 1gbit"))
        self.assertEqual("40ms,200mbit", str(wan.Link.parse("40ms,200mbit")))

    def test_a_window_is_the_optional_third_field(self):
        self.assertEqual(wan.Link(0.1, 125e6, 4 << 20), wan.Link.parse("100ms,1gbit,4mib"))
        self.assertEqual("100ms,1000mbit,4mib", str(wan.Link.parse("100ms,1gbit,4mib")))
        self.assertEqual("40ms,200mbit,512kib", str(wan.Link.parse("40ms,200mbit,512kib")))
        self.assertEqual(40 << 20, wan.Link.parse("100ms,1gbit,4mib").one_stream())
        self.assertEqual(125e6, wan.Link.parse("100ms,1gbit").one_stream())
        self.assertRaises(ValueError, wan.Link.parse, "100ms,1gbit,4mb")

    def test_a_malformed_spec_names_the_option(self):
        error = self.assertRaises(ValueError, wan.Link.parse, "40,200")
        self.assertIn("--wan", str(error))

