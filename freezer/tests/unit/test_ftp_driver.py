"""The FTP driver's data connections, against a fake client: no server needed."""

import ftplib

import testtools

from freezer.errors import StorageError
from freezer.storage import ftp, ftp_session


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
    """The control socket: keeps what the client wrote."""

    def __init__(self):
        self.written = b""

    def settimeout(self, seconds):
        pass

    def sendall(self, data: bytes) -> None:
        self.written += data


class Replies:
    """A control connection that answers from a list of replies and keeps the commands sent."""

    encoding = "utf-8"

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.sock = FakeSock()

    def getmultiline(self) -> str:
        return self.replies.pop(0)

    @property
    def commands(self) -> list[str]:
        return self.sock.written.decode().split("\r\n")[:-1]


class FakeClient:
    """The control connection: hands out ``conn`` and answers the end of a transfer with ``reply``."""

    passiveserver = False  # so the driver opens transfers with transfercmd, one command at a time
    encoding = "utf-8"

    def __init__(self, conn: FakeConn, reply: BaseException | None = None):
        self.conn = conn
        self.reply = reply
        self.sock = FakeSock()
        self.replies = ["226 done", f"213 {len(b'abcdef')}"]

    def transfercmd(self, cmd, rest=None):
        return self.conn

    def getmultiline(self):
        if self.reply is not None:
            raise self.reply
        return self.replies.pop(0)

    getresp = getmultiline


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


class TestStoredSize(testtools.TestCase):
    """SIZE goes out as an upload's data ends; its reply may come before or after the transfer's."""

    def test_after_the_transfer_end_one_question(self):
        control = Replies("226 done", "213 6")  # vsftpd: one command at a time
        self.assertEqual(6, ftp_session.stored_size(control, "/c/x", 6, marked=True))
        self.assertEqual(["SIZE /c/x"], control.commands)

    def test_before_the_end_asked_again_when_it_differs(self):
        control = Replies("150 ok", "213 0", "226 done", "213 6")  # pyftpdlib, data not yet read
        self.assertEqual(6, ftp_session.stored_size(control, "/c/x", 6, marked=False))
        self.assertEqual(["SIZE /c/x", "SIZE /c/x"], control.commands)

    def test_refused_while_the_transfer_runs_asked_again_after_it(self):
        for refusal in ("500 Unknown command", "550 No such file"):  # pure-ftpd; ProFTPD's hidden stores
            control = Replies(refusal, "226 done", "213 6")
            self.assertEqual(6, ftp_session.stored_size(control, "/c/x", 6, marked=True))
            self.assertEqual(["SIZE /c/x", "SIZE /c/x"], control.commands)

    def test_refused_after_the_end_fails_the_upload(self):
        self.assertRaises(ftplib.error_perm, ftp_session.stored_size, Replies("226 done", "502 no SIZE"),
                          "/c/x", 6, True)

    def test_a_failed_transfer_is_raised_whatever_size_said(self):
        for replies in (("500 Unknown command", "451 write failed"), ("451 write failed", "500 Unknown command")):
            error = self.assertRaises(ftplib.error_temp, ftp_session.stored_size, Replies(*replies), "/c/x", 6, True)
            self.assertIn("451", str(error))

    def test_an_end_at_once_without_a_mark(self):
        self.assertEqual(6, ftp_session.stored_size(Replies("226 done", "213 6"), "/c/x", 6, marked=False))

    def test_before_the_end_and_right_no_second_question(self):
        control = Replies("150 ok", "213 6", "226 done")
        self.assertEqual(6, ftp_session.stored_size(control, "/c/x", 6, marked=False))
        self.assertEqual(["SIZE /c/x"], control.commands)

    def test_a_short_size_after_the_end_is_what_the_server_holds(self):
        self.assertEqual(5, ftp_session.stored_size(Replies("226 done", "213 5"), "/c/x", 6, marked=True))

    def test_a_refused_transfer_is_raised(self):
        control = Replies("213 3", "452 no space left")
        error = self.assertRaises(ftplib.error_temp, ftp_session.stored_size, control, "/c/x", 6, True)
        self.assertIn("452", str(error))

    def test_a_refused_size_is_raised(self):
        self.assertRaises(ftplib.error_perm, ftp_session.stored_size, Replies("226 done", "550 no"), "/c/x", 6,
                          True)

    def test_a_size_that_is_no_number_is_a_protocol_error(self):
        self.assertRaises(ftplib.error_proto, ftp_session.stored_size, Replies("226 done", "213 lots"), "/c/x", 6,
                          True)

    def test_the_driver_fails_an_upload_the_server_holds_short(self):
        conn = FakeConn()
        client = FakeClient(conn)
        client.replies = ["226 done", "213 5"]
        storage = ftp.FtpStorage(ftp.FtpSettings(host="127.0.0.1", port=21, username="u", password="p",
                                                 container="c"))
        self.patch(storage, "_binary", lambda: client)
        error = self.assertRaises(StorageError, storage._store, "/c/x", [b"abc", b"def"])
        self.assertIn("stored 5 of the 6 bytes", str(error))


class Refusing(FakeClient):
    """Answers MKD with ``mkd_reply`` and refuses the STOR: no directory to store into."""

    def __init__(self, mkd_reply: str):
        super().__init__(FakeConn())
        self.replies = [mkd_reply]

    def putcmd(self, line):
        pass

    def transfercmd(self, cmd, rest=None):
        raise ftplib.error_perm("553 no such directory")


class TestDirectoriesMadeWithTheUpload(testtools.TestCase):
    def store(self, client: FakeClient):
        storage = ftp.FtpStorage(ftp.FtpSettings(host="127.0.0.1", port=21, username="u", password="p",
                                                 container="c"))
        self.patch(storage, "_binary", lambda: client)
        return storage._store("/c/d/x", [b"abc"], ["/c/d"])

    def test_a_directory_refused_for_now_makes_the_upload_worth_a_retry(self):
        self.assertRaises(ftplib.error_temp, self.store, Refusing("421 busy"))

    def test_a_directory_refused_for_good_fails_it(self):
        self.assertRaises(ftplib.error_perm, self.store, Refusing("550 denied"))


class TestSizesAnswered(testtools.TestCase):
    """The sizes a restore asked ahead: only a plain ``213 n`` counts, whatever a server sends."""

    def test_sizes_and_refusals(self):
        paths = ["/a", "/b", "/c", "/d", "/e", "/f"]
        replies = ["213 10", "550 not a plain file", "213 12a", "213 -5", "213 ١٢", "213  0 "]
        self.assertEqual({"/a": 10, "/f": 0}, ftp_session.sizes_answered(paths, replies))

    def test_fewer_replies_when_the_transfer_failed_first(self):
        self.assertEqual({"/a": 3}, ftp_session.sizes_answered(["/a", "/b"], ["213 3"]))
