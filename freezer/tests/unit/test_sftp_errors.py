"""How SFTP failures become the storage error family (pure logic: no server)."""

import paramiko
import testtools

from freezer.common.settings import SftpSettings
from freezer.errors import ConnectError, StorageError
from freezer.storage import sftp_errors

SETTINGS = SftpSettings(host="h", port=22, username="u", container="/c")


class TestTranslate(testtools.TestCase):
    def test_closed_socket_is_a_lost_connection_worth_a_retry(self):
        # paramiko's Channel.send raises this once the server is gone (seen when sshd was killed mid-restore).
        error = sftp_errors.translate(OSError("Socket is closed"), SETTINGS, "download /x")
        self.assertIsInstance(error, ConnectError)
        self.assertTrue(error.transient)

    def test_other_bare_failure_stays_permanent(self):
        error = sftp_errors.translate(OSError("Failure"), SETTINGS, "upload /x")
        self.assertIsInstance(error, StorageError)
        self.assertNotIsInstance(error, ConnectError)
        self.assertIn("disk may be full", str(error))

    def test_a_reply_that_breaks_the_protocol_is_one_storage_error(self):
        error = sftp_errors.translate(paramiko.SFTPError("the server answered a read of 8 bytes with 16"),
                                      SETTINGS, "download /x")
        self.assertIsInstance(error, StorageError)
        self.assertIn("download /x failed on", str(error))
        self.assertIn("with 16", str(error))
