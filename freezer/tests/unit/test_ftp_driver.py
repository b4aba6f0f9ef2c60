"""The FTP driver's data connections, against a fake client: no server needed."""

import ftplib

import testtools

from freezer.storage import ftp


class FakeConn:
    """A data connection that counts closes and fails the send when told to."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.closes = 0
        self.sent = b""

    def setsockopt(self, *args):
        pass

    def sendall(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent += data

    def close(self) -> None:
        self.closes += 1


class FakeSock:
    def settimeout(self, seconds):
        pass


class FakeClient:
    """The control connection: hands out ``conn`` and answers the end of a transfer with ``reply``."""

    passiveserver = False  # so the driver opens transfers with transfercmd, one command at a time

    def __init__(self, conn: FakeConn, reply: BaseException | None = None):
        self.conn = conn
        self.reply = reply
        self.sock = FakeSock()

    def transfercmd(self, cmd, rest=None):
        return self.conn

    def voidresp(self):
        if self.reply is not None:
            raise self.reply
        return "226 done"

    getresp = voidresp


class TestStoreClosesOnce(testtools.TestCase):
    def driver(self, client: FakeClient) -> ftp.FtpStorage:
        storage = ftp.FtpStorage(ftp.FtpSettings(host="127.0.0.1", port=21, username="u", password="p",
                                                 container="c"))
        self.patch(storage, "_binary", lambda: client)
        return storage

    def test_a_stored_stream_closes_its_data_connection_once(self):
        conn = FakeConn()
        self.assertEqual(6, self.driver(FakeClient(conn))._store("/c/x", [b"abc", b"def"]))
        self.assertEqual((b"abcdef", 1), (conn.sent, conn.closes))

    def test_a_send_that_fails_closes_its_data_connection_once(self):
        conn = FakeConn(fail=BrokenPipeError())
        client = FakeClient(conn, reply=ftplib.error_temp("452 no space left"))
        error = self.assertRaises(ftplib.error_temp, self.driver(client)._store, "/c/x", [b"abc"])
        self.assertIn("452", str(error))
        self.assertEqual(1, conn.closes)

    def test_a_source_that_fails_closes_its_data_connection_once(self):
        conn = FakeConn()

        def chunks():
            yield b"abc"
            raise ValueError("source broke")

        self.assertRaises(ValueError, self.driver(FakeClient(conn))._store, "/c/x", chunks())
        self.assertEqual(1, conn.closes)
