"""FTP, FTPS and SFTP servers reached over IPv6 (::1): EPSV data connections, bracketed host keys."""

import os

from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree

LOOPBACK6 = "::1"


class Ipv6RoundTrip:
    """A backup and a restore through a server listening on ::1 only."""

    def make_server(self):
        raise NotImplementedError

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(self.make_server())

    host_spelling = LOOPBACK6

    def storage_args(self):
        return [self.host_spelling if arg == LOOPBACK6 else arg for arg in self.server.agent_options()]

    def test_round_trip_over_ipv6(self):
        make_tree(self.source)
        self.assertEqual(0, self.backup()["level"])
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)
        self.assertNotIn("password", self.agent("--action", "info").stdout.lower())

    def test_bracketed_address_accepted(self):
        make_tree(self.source)
        self.host_spelling = f"[{LOOPBACK6}]"
        self.assertEqual(0, self.backup()["level"])

    def test_refused_connection_names_bracketed_address(self):
        self.server.proc.kill()
        self.server.proc.wait()
        proc = self.agent("--action", "info", expect=None)
        self.assertOneLineError(proc, f"[{LOOPBACK6}]:{self.server.port}")


class TestFtpIpv6(Ipv6RoundTrip, AgentTestCase):
    def make_server(self):
        return servers.PyFtpd(self.tmp, host=LOOPBACK6)


class TestFtpsIpv6(Ipv6RoundTrip, AgentTestCase):
    """The certificate names ::1, so verification passes on the address itself."""

    def make_server(self):
        return servers.PyFtpd(self.tmp, True, host=LOOPBACK6)


class TestSftpIpv6(Ipv6RoundTrip, AgentTestCase):
    """known_hosts keeps the key under ``[::1]:port``, and the second run checks it there."""

    def make_server(self):
        return Sshd(self.tmp, host=LOOPBACK6)

    def test_host_key_recorded_in_known_hosts_form(self):
        make_tree(self.source)
        self.backup()
        with open(self.server.known_hosts) as known:
            self.assertIn(f"[{LOOPBACK6}]:{self.server.port} ", known.read())
        self.assertEqual(1, self.backup()["level"])
