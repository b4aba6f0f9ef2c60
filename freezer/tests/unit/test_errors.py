"""Messages built from low-level failures always say what happened and which option to change."""

import socket

import testtools

from freezer import errors
from freezer.storage import base

# Failures whose text is empty (or paramiko's dangling "Server connection dropped: ").
BARE = [EOFError(), OSError(), ConnectionResetError(), BrokenPipeError(), ConnectionAbortedError(),
        TimeoutError(), socket.gaierror(), ConnectionRefusedError(), OSError(""),
        EOFError("  "), OSError("Server connection dropped: ")]


class TestNetworkError(testtools.TestCase):
    def test_never_an_empty_reason(self):
        for exc in BARE:
            for action in ("connect", "download x"):
                message = str(base.network_error(exc, "h:21", action, "--ftp"))
                self.assertFalse(message.rstrip().endswith(":"), message)
                for part in message.split(": ")[1:]:
                    self.assertTrue(part.strip(), message)

    def test_reason_is_never_empty(self):
        for exc in BARE:
            self.assertTrue(errors.reason(exc).strip(), repr(exc))
        self.assertEqual("the server closed the connection", errors.reason(EOFError()))
        self.assertEqual("Server connection dropped", errors.reason(OSError("Server connection dropped: ")))

    def test_timeout_names_the_option_of_the_storage(self):
        message = str(base.network_error(TimeoutError(), "h:22", "connect", "--ftp", timeout_option="--ssh-timeout"))
        self.assertIn("--ftp-host", message)
        self.assertIn("--ssh-timeout", message)
        self.assertNotIn("--ftp-timeout", message)
        self.assertIn("--ftp-timeout", str(base.network_error(TimeoutError(), "h:21", "connect", "--ftp")))
