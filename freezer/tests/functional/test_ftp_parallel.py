"""FTP and FTPS over several connections (freezer/storage/ftp_segments.py) against pyftpdlib and vsftpd."""

from __future__ import annotations

import ftplib
import hashlib
import os
import socket
import threading

import fixtures
import testtools

from benchmarks import wan
from freezer.engine import incremental
from freezer.errors import NoSpace, NotFound, ServerBusy, StorageError
from freezer.storage import ftp as ftp_storage
from freezer.storage import ftp_opening, ftp_parallel, ftp_segments, ftp_session, ftp_writes, growth, index, read_ahead
from freezer.testing import servers
from freezer.tests.functional.base import AgentTestCase, describe_tree, soon, write

SEGMENT = 256 << 10  # small segments, so a few MiB make many of them
DATA = 5 * SEGMENT + 12345


def storage_on(test: testtools.TestCase, server, connections: int, port: int | None = None) -> ftp_storage.FtpStorage:
    """An FTP storage on ``server`` (reached at ``port``, a relay's, if given), closed at the test's cleanup."""
    ca = getattr(getattr(server, "ca", None), "ca_file", None)
    settings = ftp_storage.FtpSettings(host="127.0.0.1", port=port or server.port, username=server.username,
                                       password=server.password, container="backups", tls=server.storage == "ftps",
                                       cacert=ca, implicit_tls=getattr(server, "implicit", False),
                                       connections=connections)
    storage = ftp_storage.FtpStorage(settings)
    test.addCleanup(storage.close)
    return storage


class NeverAccepting:
    """An FTP server that refuses every STOR (553) without accepting its data connection, as vsftpd does
    when it cannot create the file: the passive port stays open, and nothing reads what is sent."""

    REPLIES = {"USER": "331 Password.", "PASS": "230 In.", "TYPE": "200 Binary.", "REST": "350 Ok.",
               "STOR": "553 Could not create file.", "QUIT": "221 Bye."}

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.passive: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 Ready.\r\n")
            for line in lines:
                command = line.decode().split(" ", 1)[0].strip().upper()
                conn.sendall((self._reply(command) + "\r\n").encode())
                if command == "QUIT":
                    return

    def _reply(self, command: str) -> str:
        if command != "PASV":
            return self.REPLIES.get(command, "500 Unknown.")
        passive = socket.create_server(("127.0.0.1", 0))
        self.passive.append(passive)
        port = passive.getsockname()[1]
        return f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255})."

    def close(self) -> None:
        for sock in [self.listener, *self.passive]:
            sock.close()


def small_segments(test: testtools.TestCase) -> None:
    """Uploads in SEGMENT-byte segments and downloads in SEGMENT-byte ranges, so a few MiB make many."""
    test.patch(ftp_segments, "SEGMENT_SIZE", SEGMENT)
    test.patch(ftp_segments, "RANGE_SIZE", SEGMENT)


def chunks_of(data: bytes):
    return (data[i:i + 65536] for i in range(0, len(data), 65536))



class ParallelStorageTests:
    """A storage with four connections, on the server ``make_server`` starts."""

    in_place = False  # whether the server writes at offsets (vsftpd), so segments go into one file
    verdict = ftp_writes.OffsetWrites.REFUSED  # what the probe finds (vsftpd locks uploads by default)

    def make_server(self, tmp: str):
        raise NotImplementedError

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.server = self.useFixture(self.make_server(self.tmp))
        small_segments(self)
        self.data = os.urandom(DATA)

    def storage(self, connections: int = 4) -> ftp_storage.FtpStorage:
        return storage_on(self, self.server, connections)

    def chunks(self):
        return chunks_of(self.data)

    def test_a_large_stream_is_stored_in_place_or_as_segments_and_read_back_in_order(self):
        storage = self.storage()
        self.assertEqual(DATA, storage.put_stream("level/data", self.chunks()))
        self.assertEqual(["data"], storage.listdir("level"))  # the temporary name was renamed, the probe left nothing
        if self.in_place:
            self.assert_plain_file_on_server("level/data")
        else:
            names = storage.listdir("level/data")
            self.assertGreater(len(names), 3)
            self.assertTrue(ftp_segments.is_segment_listing(names), names)
        self.assertEqual(DATA, storage.size("level/data"))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertEqual(self.data[SEGMENT + 7:], b"".join(storage.get_stream("level/data", SEGMENT + 7)))

    def test_auto_on_a_long_link_stores_a_plain_file_upstream_can_read(self):
        self.patch(ftp_parallel, "LAN_ROUND_TRIP", 0.0)  # loopback counts as a long link: auto picks 4
        storage = self.storage(connections=0)
        self.assertEqual(4, storage._connections())
        self.assertEqual(DATA, storage.put_stream("level/data", self.chunks()))
        self.assertEqual(DATA, storage.put_stream("other/data", self.chunks()))  # the probe's answer reused
        self.assertEqual(self.verdict, storage._offset_writes)
        self.assert_plain_file_on_server("level/data")
        self.assert_plain_file_on_server("other/data")
        self.assertEqual(["data"], storage.listdir("level"))
        self.assertEqual(self.data, b"".join(self.storage(connections=0).get_stream("level/data")))
        self.assertEqual(self.data, b"".join(self.storage(connections=1).get_stream("level/data")))

    def assert_plain_file_on_server(self, path: str) -> None:
        """On the server's own disk: one regular file holding exactly the data."""
        stored = os.path.join(self.server.root, "backups", path)
        self.assertTrue(os.path.isfile(stored), f"{stored} is not a regular file")
        with open(stored, "rb") as f:
            self.assertEqual(hashlib.sha256(self.data).hexdigest(), hashlib.sha256(f.read()).hexdigest())

    def test_after_a_claim_the_workers_log_in_and_take_the_upload(self):
        storage = self.storage()
        self.assertTrue(storage.claim("level"))
        self.assertTrue(storage._pool.warming())
        self.assertEqual(DATA, storage.put_stream("level/data", self.chunks()))
        self.assertEqual(self.verdict, storage._offset_writes)  # two segments or more: probed
        self.assertEqual(["data"], storage.listdir("level"))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_a_probe_that_fails_for_now_leaves_one_plain_upload(self):
        def busy(*args, **kwargs):
            raise ftplib.error_temp("425 Can't open data connection.")

        self.patch(ftp_writes, "probe_offset_writes", busy)  # the data is read by then: no replay
        storage = self.storage()
        with self.assertLogs("freezer.storage.ftp", "WARNING") as logs:
            self.assertEqual(DATA, storage.put_stream("level/data", self.chunks()))
        self.assertIn("probe failed", logs.output[0])
        self.assert_plain_file_on_server("level/data")
        self.assertEqual(["data"], storage.listdir("level"))

    def test_an_upload_of_one_segment_is_not_probed(self):
        storage = self.storage()
        self.assertTrue(storage.claim("level"))
        self.assertEqual(SEGMENT, storage.put_stream("level/data", chunks_of(self.data[:SEGMENT])))
        self.assertIsNone(storage._offset_writes)  # no REST 1 + STOR, no wait for a second writer
        self.assertEqual(["data"], storage.listdir("level"))
        self.assertEqual(self.data[:SEGMENT], b"".join(storage.get_stream("level/data")))

    def test_one_connection_reads_what_several_stored(self):
        self.storage().put_stream("level/data", self.chunks())
        single = self.storage(connections=1)
        self.assertEqual(DATA, single.size("level/data"))
        self.assertEqual(self.data, b"".join(single.get_stream("level/data")))

    def test_a_plain_file_is_read_in_ranges_and_stays_a_file(self):
        self.storage(connections=1).put_stream("level/data", self.chunks())
        storage = self.storage()
        self.assertEqual(DATA, storage.size("level/data"))
        self.assertIsNotNone(storage._parallel_ranges(storage._abs("level/data"), 3, 4))
        self.assertEqual(self.data[3:], b"".join(storage.get_stream("level/data", 3)))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_a_download_with_little_room_ahead_waits_and_still_reads_everything_in_order(self):
        waited = []

        class Recording(read_ahead.ReadAhead):
            def _must_wait(self, part: int) -> bool:
                must = super()._must_wait(part)
                waited.append(must)
                return must

        self.patch(ftp_segments, "READ_AHEAD", 1)  # a part other than the next waits once it has a byte
        self.patch(ftp_segments, "ReadAhead", Recording)
        self.storage(connections=1).put_stream("level/data", self.chunks())
        storage = self.storage()
        self.assertEqual(DATA, storage.size("level/data"))  # known to be large: read in ranges
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertIn(True, waited)

    def test_a_range_cut_short_is_read_again_from_the_byte_it_reached(self):
        self.patch(ftp_segments, "READ_SIZE", 64 << 10)
        self.patch(ftp_segments.time, "sleep", lambda seconds: None)
        real_receive, real_fetch = ftp_segments._receive, ftp_segments._fetch_one
        starts, cut = [], threading.Lock()

        def cut_once(conn, length, pace, deliver):
            if not cut.acquire(blocking=False):
                return real_receive(conn, length, pace, deliver)
            real_receive(conn, 64 << 10, pace, deliver)  # one block in, then the line drops
            raise ConnectionResetError("cut")

        def recorded(ftp, remote, start, length, pace, deliver):
            starts.append(start)
            return real_fetch(ftp, remote, start, length, pace, deliver)

        self.patch(ftp_segments, "_receive", cut_once)
        self.patch(ftp_segments, "_fetch_one", recorded)
        self.storage(connections=1).put_stream("level/data", self.chunks())
        storage = self.storage()
        self.assertEqual(DATA, storage.size("level/data"))
        with self.assertLogs("freezer.storage.ftp", "WARNING"):
            self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertEqual([64 << 10], [start % SEGMENT for start in starts if start % SEGMENT])  # the retry

    def test_a_small_stream_stays_one_plain_file(self):
        storage = self.storage()
        storage.put_stream("level/metadata", [b"{}"])
        self.assertEqual(2, storage.size("level/metadata"))
        self.assertEqual(b"{}", b"".join(storage.get_stream("level/metadata")))

    def test_removing_a_level_removes_its_segments(self):
        storage = self.storage()
        storage.put_stream("level/data", self.chunks())
        storage.rmtree("level")
        self.assertEqual([], storage.listdir(""))


class TestPyftpdParallel(ParallelStorageTests, testtools.TestCase):
    def make_server(self, tmp):
        return servers.PyFtpd(tmp)


class TestPyftpdFtpsParallel(ParallelStorageTests, testtools.TestCase):
    def make_server(self, tmp):
        return servers.PyFtpd(tmp, True)


class VsftpdParallel(ParallelStorageTests):
    """vsftpd writes at offsets; by default one writer of a file at a time (``lock_upload_files``)."""

    in_place = True
    verdict = ftp_writes.OffsetWrites.IN_TURN
    vsftpd_options: dict = {}

    def make_server(self, tmp):
        return servers.Vsftpd(tmp, **self.vsftpd_options)


class TestVsftpdParallel(VsftpdParallel, testtools.TestCase):
    pass


class TestVsftpdUnlockedParallel(VsftpdParallel, testtools.TestCase):
    """lock_upload_files=NO: the segments are written into the one file at the same time, not in turn."""

    verdict = ftp_writes.OffsetWrites.TOGETHER
    vsftpd_options = {"lock_uploads": False}


class TestVsftpdFtpsParallel(VsftpdParallel, testtools.TestCase):
    vsftpd_options = {"tls": True}


class TestVsftpdFtpsUnlockedParallel(VsftpdParallel, testtools.TestCase):
    """Writers together over TLS: the opening's second writer wraps its data connection after its 150."""

    verdict = ftp_writes.OffsetWrites.TOGETHER
    vsftpd_options = {"tls": True, "lock_uploads": False}


class TestVsftpdImplicitFtpsParallel(VsftpdParallel, testtools.TestCase):
    vsftpd_options = {"implicit": True}


class TestOpening(testtools.TestCase):
    """Under auto, the session's first parallel upload probes the server with its own first segments."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        small_segments(self)
        self.patch(ftp_parallel, "LAN_ROUND_TRIP", 0.0)  # loopback counts as a long link: auto picks 4
        self.data = os.urandom(DATA)

    def storage(self, server) -> ftp_storage.FtpStorage:
        return storage_on(self, self.useFixture(server), 0)

    def assert_stored(self, storage) -> None:
        self.assertEqual(["data"], storage.listdir("level"))  # no scratch file, no temporary name left
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_no_answer_from_the_second_writer_leaves_the_lead_sending_everything(self):
        self.patch(ftp_opening, "second_writer", lambda *args: (None, None))
        storage = self.storage(servers.Vsftpd(self.tmp, lock_uploads=False))
        with self.assertLogs("freezer.storage.ftp", "INFO") as logs:
            self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        self.assertIn("no answer on offset writes", "\n".join(logs.output))
        self.assertIsNone(storage._offset_writes)  # asked again by the next upload
        self.assert_stored(storage)

    def fail_transfer_start(self, call: int, error: BaseException) -> None:
        """The opening's ``call``-th transfer start (1: the lead's, 2: the second writer's) raises ``error``."""
        real, calls = ftp_opening.start_transfer, []

        def failing(ftp, cmd, *args, **kwargs):
            calls.append(cmd)
            if len(calls) == call:
                raise error
            return real(ftp, cmd, *args, **kwargs)

        self.patch(ftp_opening, "start_transfer", failing)

    def test_a_second_writer_that_cannot_log_in_leaves_the_lead_sending_everything(self):
        self.fail_transfer_start(2, StorageError("421 Too many connections"))  # as Worker.client() reports it
        storage = self.storage(servers.Vsftpd(self.tmp, lock_uploads=False))
        self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        self.assertIsNone(storage._offset_writes)
        self.assert_stored(storage)

    def test_a_cut_second_segment_is_sent_again(self):
        real, cuts = ftp_opening._send_segment, []

        def cut_once(ftp, conn, part):
            if not cuts:
                cuts.append(1)
                conn.close()
                ftp.voidresp()  # the server's reply to the empty upload
                raise ftplib.error_temp("426 Connection closed; transfer aborted.")
            return real(ftp, conn, part)

        self.patch(ftp_opening, "_send_segment", cut_once)
        storage = self.storage(servers.Vsftpd(self.tmp, lock_uploads=False))
        with self.assertLogs("freezer.storage.ftp", "WARNING") as logs:
            self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        self.assertIn("retrying this segment", "\n".join(logs.output))
        self.assertEqual(ftp_writes.OffsetWrites.TOGETHER, storage._offset_writes)
        self.assert_stored(storage)

    def test_a_lead_refused_for_now_is_tried_again(self):
        self.fail_transfer_start(1, ftplib.error_temp("425 Can't open data connection."))
        self.patch(ftp_segments.time, "sleep", lambda seconds: None)
        storage = self.storage(servers.Vsftpd(self.tmp, lock_uploads=False))
        with self.assertLogs("freezer.storage.ftp", "WARNING") as logs:
            self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        self.assertIn("retrying this segment", logs.output[0])
        self.assertEqual(ftp_writes.OffsetWrites.TOGETHER, storage._offset_writes)
        self.assert_stored(storage)

    def test_a_segment_failing_after_the_opening_fails_the_upload_and_leaves_nothing(self):
        real = ftp_segments._store_one

        def failing(worker, ftp, name, pieces, size, offset=None, on_open=None):
            if offset and offset >= 3 * SEGMENT:
                raise ftplib.error_perm("553 Could not create file.")
            return real(worker, ftp, name, pieces, size, offset, on_open)

        self.patch(ftp_segments, "_store_one", failing)
        storage = self.storage(servers.Vsftpd(self.tmp, lock_uploads=False))
        error = self.assertRaises(StorageError, storage.put_stream, "level/data", chunks_of(self.data))
        self.assertIn("553", str(error))
        self.assertEqual([], storage.listdir("level"))

    def test_a_server_losing_bytes_of_the_lead_fails_the_upload_and_leaves_nothing(self):
        storage = self.storage(servers.PyFtpd(self.tmp, False, "--lose-after", "1000"))
        error = self.assertRaises(StorageError, storage.put_stream, "level/data", chunks_of(self.data))
        self.assertIn("stored 1000 of the", str(error))
        self.assertEqual(ftp_writes.OffsetWrites.REFUSED, storage._offset_writes)
        self.assertEqual([], storage.listdir("level"))


class TestTransferHints(testtools.TestCase):
    """``expect_reads`` and ``expect_writes``: a restore's or a backup's hint that data follows; on a long link
    the extra connections log in."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.server = self.useFixture(servers.PyFtpd(self.tmp))

    def test_on_a_long_link_the_workers_log_in(self):
        self.patch(ftp_parallel, "LAN_ROUND_TRIP", 0.0)
        storage = storage_on(self, self.server, 0)
        storage.expect_reads()
        self.assertTrue(storage._pool.warming())
        self.assertEqual(ftp_parallel.WAN_CONNECTIONS, len(storage._pool.take(ftp_parallel.WAN_CONNECTIONS)))

    def test_before_a_backup_too(self):
        self.patch(ftp_parallel, "LAN_ROUND_TRIP", 0.0)
        storage = storage_on(self, self.server, 0)
        storage.expect_writes()
        self.assertTrue(storage._pool.warming())
        self.assertEqual(ftp_parallel.WAN_CONNECTIONS, len(storage._pool.take(ftp_parallel.WAN_CONNECTIONS)))

    def test_on_a_lan_or_with_one_connection_nothing_happens(self):
        for connections in (0, 1):
            storage = storage_on(self, self.server, connections)
            storage.expect_reads()
            storage.expect_writes()
            self.assertFalse(storage._pool.warming())

    def test_a_restore_asks_its_datas_size_with_the_first_download(self):
        storage = storage_on(self, self.server, 1)
        storage.put_bytes("level/metadata", b"{}")
        storage.put_bytes("level/data", b"0123456789")
        writes: list[list[str]] = []
        real = ftp_session.send_together
        self.patch(ftp_session, "send_together", lambda ftp, lines: (writes.append(lines), real(ftp, lines))[1])
        storage.expect_reads(["level/data", "level/gone"])
        self.assertEqual(b"{}", storage.get_bytes("level/metadata"))
        self.assertEqual(10, storage.size("level/data"))  # answered already: no command of its own
        self.assertEqual([["SIZE", "SIZE", "PASV", "RETR"]], [[line.split()[0] for line in w] for w in writes])
        self.assertRaises(NotFound, storage.size, "level/gone")  # refused then: asked again, and missing
        self.assertEqual(10, storage.size("level/data"))  # each answer is given once; later ones ask

    def test_a_download_that_fails_still_reads_the_sizes_asked_with_it(self):
        storage = storage_on(self, self.server, 1)
        storage.put_bytes("level/data", b"0123456789")
        storage.expect_reads(["level/data"])
        self.assertRaises(NotFound, storage.get_bytes, "level/missing")
        self.assertEqual(10, storage.size("level/data"))
        self.assertEqual(["data"], storage.listdir("level"))  # the replies are in step

    def test_a_server_out_of_reach_fails_the_hint_as_it_would_fail_the_listing(self):
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]  # nothing listens there once it is closed
        storage = storage_on(self, self.server, 0, port)
        self.assertRaises(StorageError, storage.expect_reads)  # the retries are the wrapper's


class TestSibling(testtools.TestCase):
    """A one-connection session for work beside the caller's: on an idle extra connection when there is one."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        small_segments(self)

    def check(self, server) -> None:
        storage = storage_on(self, self.useFixture(server), connections=3)
        storage.put_stream("level/data", chunks_of(os.urandom(DATA)))  # the pool now holds logged-in workers
        idle = len(storage._pool.workers)
        twin = storage.sibling()
        self.addCleanup(twin.close)
        logins = []
        for module in (ftp_storage, ftp_parallel):  # no login: the twin has its connection, the pool enough
            self.patch(module, "open_session", lambda *a, **k: logins.append(a))
        twin.put_bytes("level/index", b"beside")
        storage.put_bytes("level/engine_metadata", b"main")  # both sessions at once, each on its own connection
        self.assertEqual((b"beside", b"main", []), (twin.get_bytes("level/index"),
                                                     storage.get_bytes("level/engine_metadata"), logins))
        self.assertEqual((idle - 1, 1), (len(storage._pool.workers), twin._connections()))

    def test_pyftpdlib(self):
        self.check(servers.PyFtpd(self.tmp))

    def test_vsftpd_ftps(self):
        self.check(servers.Vsftpd(self.tmp, True))

    def test_on_a_lan_under_auto_none(self):
        storage = storage_on(self, self.useFixture(servers.PyFtpd(self.tmp)), connections=0)
        storage.put_bytes("x", b"1")
        self.assertIsNone(storage.sibling())

    def test_while_a_transfer_runs_no_worker_is_taken(self):
        storage = storage_on(self, self.useFixture(servers.PyFtpd(self.tmp)), connections=3)
        storage.put_stream("big", chunks_of(os.urandom(DATA)))
        storage.size("big")  # so the read goes over several connections
        reading = storage.get_stream("big")
        first = next(reading)
        idle = len(storage._pool.workers)
        twin = storage.sibling()
        self.addCleanup(twin.close)
        twin.put_bytes("x", b"1")  # logged in itself: the workers are the transfer's
        self.assertEqual(idle, len(storage._pool.workers))
        self.assertEqual(DATA, len(first) + sum(map(len, reading)))

    def test_without_an_idle_connection_its_own_login(self):
        storage = storage_on(self, self.useFixture(servers.PyFtpd(self.tmp)), connections=3)
        twin = storage.sibling()  # no transfer yet: no worker to lend
        self.addCleanup(twin.close)
        twin.put_bytes("x", b"1")
        self.assertEqual(b"1", storage.get_bytes("x"))


class TestWorkerLogin(testtools.TestCase):
    """An extra connection sends TYPE I with its login's last write: a round trip fewer than the first."""

    def writes_of_a_worker_login(self, server) -> list[list[str]]:
        writes: list[list[str]] = []
        real = ftp_session.send_together
        self.patch(ftp_session, "send_together", lambda ftp, lines: (writes.append(lines), real(ftp, lines))[1])
        tmp = self.useFixture(fixtures.TempDir()).path
        worker = ftp_parallel.Worker(storage_on(self, self.useFixture(server(tmp)), 0).settings)
        self.addCleanup(worker.quit)
        ftp = worker.client()
        self.assertFalse(ftp.reply_within(0.3), "a reply of the login was left unread")
        self.assertTrue(ftp.voidcmd("NOOP").startswith("200"))
        return [[line.split()[0] for line in lines] for lines in writes]

    def test_plain_ftp(self):
        for server in (servers.PyFtpd, servers.Vsftpd):
            self.assertEqual([["USER", "PASS", "TYPE"]], self.writes_of_a_worker_login(server))

    def test_ftps(self):
        for server in (lambda tmp: servers.PyFtpd(tmp, True), lambda tmp: servers.Vsftpd(tmp, tls=True)):
            self.assertEqual([["USER", "PASS"], ["PBSZ", "PROT", "TYPE"]], self.writes_of_a_worker_login(server))


class TestParallelFaults(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        small_segments(self)
        self.data = os.urandom(DATA)

    def storage(self, server, connections: int = 4) -> ftp_storage.FtpStorage:
        return storage_on(self, server, connections)

    def test_a_server_limiting_connections_gets_fewer_and_the_transfer_still_completes(self):
        server = self.useFixture(servers.PyFtpd(self.tmp, False, "--max-cons", "2"))
        storage = self.storage(server, connections=6)
        self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        # The main connection and at most one more (pyftpdlib may count a burst of refused ones too).
        self.assertLessEqual(storage._pool.limit, 1)
        self.assertEqual(DATA, storage.size("level/data"))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_without_workers_the_segments_read_while_asking_go_first_over_one_connection(self):
        storage = self.storage(self.useFixture(servers.PyFtpd(self.tmp)), connections=4)
        self.patch(ftp_parallel.Pool, "take", lambda pool, wanted: [])  # as when the server takes no more
        self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_the_first_two_segments_are_read_while_the_workers_log_in(self):
        self.patch(ftp_parallel, "LAN_ROUND_TRIP", 0.0)  # loopback counts as a long link: auto picks 4
        storage = self.storage(self.useFixture(servers.PyFtpd(self.tmp)), connections=0)
        read, at_take = [0], []
        real_take = ftp_parallel.Pool.take

        def take(pool, wanted):
            at_take.append((read[0], pool.warming()))
            return real_take(pool, wanted)

        self.patch(ftp_parallel.Pool, "take", take)

        def counted(chunks):
            for chunk in chunks:
                read[0] += len(chunk)
                yield chunk

        storage.expect_writes()  # as a backup does before it lists its chain
        self.assertEqual(DATA, storage.put_stream("level/data", counted(chunks_of(self.data))))
        self.assertGreaterEqual(at_take[0][0], 2 * SEGMENT)
        self.assertTrue(at_take[0][1], "the workers were asked for before the data was read")
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_without_workers_a_transient_failure_before_the_rest_is_read_is_tried_again(self):
        storage = self.storage(self.useFixture(servers.PyFtpd(self.tmp)), connections=4)
        self.patch(ftp_parallel.Pool, "take", lambda pool, wanted: [])  # as when the server takes no more
        self.patch(ftp_storage, "HELD_PATIENCE", 5.0)
        real_store, failures = ftp_storage.FtpStorage._store, [1]

        def store(driver, remote, chunks, make=()):
            if failures:
                failures.pop()
                raise ServerBusy("425 Can't open data connection.")
            return real_store(driver, remote, chunks, make)

        self.patch(ftp_storage.FtpStorage, "_store", store)
        self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_a_segment_sends_its_first_bytes_before_the_servers_150(self):
        self.patch(ftp_session, "SEGMENT_EARLY_BYTES", 100 << 10)  # inside the first segment's second piece
        sent: dict[int, int] = {}  # per worker thread, what went before its 150 (the rest goes by sendall)
        at_mark: list[int] = []
        real_send, real_mark = socket.socket.send, ftp_session.read_mark

        def counted_send(sock, data, *args):
            result = real_send(sock, data, *args)
            sent[threading.get_ident()] = sent.get(threading.get_ident(), 0) + result
            return result

        def mark(ftp):
            at_mark.append(sent.pop(threading.get_ident(), 0))
            return real_mark(ftp)

        self.patch(socket.socket, "send", counted_send)
        self.patch(ftp_session, "read_mark", mark)
        storage = self.storage(self.useFixture(servers.PyFtpd(self.tmp)), connections=2)  # segment files here
        self.assertEqual(DATA, storage.put_stream("level/data", chunks_of(self.data)))
        # Every segment: 100 KiB of the 5 whole ones, all 12345 bytes of the last, before its 150.
        self.assertEqual(sorted([100 << 10] * 5 + [12345]), sorted(at_mark))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_a_segment_refused_by_a_server_that_never_reads_it_fails_at_once_with_its_reason(self):
        server = NeverAccepting()
        self.addCleanup(server.close)
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", server.port, timeout=120)
        ftp.login("u", "p")
        self.addCleanup(ftp.close)
        self.patch(ftp_session, "SEGMENT_EARLY_BYTES", 256 << 20)  # far more than any send buffer takes
        worker, outcome = ftp_parallel.Worker(None), []

        def store() -> None:
            try:
                ftp_segments._store_one(worker, ftp, "/x", [bytes(256 << 20)], 256 << 20, offset=16 << 20)
            except ftplib.Error as exc:
                outcome.append(str(exc))

        thread = threading.Thread(target=store, daemon=True)
        thread.start()
        thread.join(60)  # well within the 120 s a blocked send would wait
        self.assertFalse(thread.is_alive(), "the upload waited on a data connection nobody reads")
        self.assertEqual(["553 Could not create file."], outcome)

    def test_segments_refused_by_a_full_server_fail_as_no_space(self):
        storage = self.storage(self.useFixture(servers.PyFtpd(self.tmp, False, "--full")), connections=3)
        self.assertRaises(NoSpace, storage.put_stream, "level/data", chunks_of(self.data))

    def test_a_cut_segment_is_fetched_again_on_a_fresh_connection(self):
        honest = servers.PyFtpd(self.tmp)
        honest.setUp()
        try:
            self.storage(honest).put_stream("level/data", [self.data])
        finally:
            honest.cleanUp()
        cutting = self.useFixture(servers.PyFtpd(self.tmp, False, "--cut-download-after", str(SEGMENT // 2)))
        storage = self.storage(cutting)
        logged = self.useFixture(fixtures.FakeLogger(level="WARNING"))
        self.assertEqual(DATA, storage.size("level/data"))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertIn("retrying this segment", logged.output)

    def test_a_server_losing_bytes_fails_the_upload_and_leaves_no_segments(self):
        server = self.useFixture(servers.PyFtpd(self.tmp, False, "--lose-after", "1000"))
        storage = self.storage(server)
        error = self.assertRaises(StorageError, storage.put_stream, "level/data", [self.data])
        self.assertIn("stored 1000 of the", str(error))
        self.assertEqual([], storage.listdir("level"))


class TestAutoGrowsOnALongLink(testtools.TestCase):
    """``auto`` through a 40 ms relay: a transfer starts on 4 connections and doubles once (GROWN_CAP).

    Segments here are small, so each connection keeps little in flight: WINDOW_BOUND is lowered to match.
    """

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        small_segments(self)
        self.patch(growth, "WINDOW_BOUND", 1)
        self.data = os.urandom(40 * SEGMENT + 999)

    def through_relay(self, server, connections: int = 0) -> ftp_storage.FtpStorage:
        relay = wan.Relay(("127.0.0.1", server.port), wan.Link.parse("40ms,1gbit"), ftp=True).start()
        self.addCleanup(relay.close)
        return storage_on(self, server, connections, relay.port)

    def chunks(self):
        return chunks_of(self.data)

    def test_a_restore_grows(self):
        storage = self.through_relay(self.useFixture(servers.PyFtpd(self.tmp)))
        storage.put_stream("level/data", self.chunks())
        self.assertEqual(ftp_parallel.WAN_CONNECTIONS, len(storage._pool.workers))
        self.assertEqual(len(self.data), storage.size("level/data"))  # as a restore asks first
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertTrue(soon(lambda: len(storage._pool.workers) == growth.GROWN_CAP))  # logged in by a thread

    def test_an_upload_written_together_grows(self):
        storage = self.through_relay(self.useFixture(servers.Vsftpd(self.tmp, lock_uploads=False)))
        self.assertEqual(len(self.data), storage.put_stream("level/data", self.chunks()))
        self.assertTrue(soon(lambda: len(storage._pool.workers) == growth.GROWN_CAP))
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))

    def test_connections_that_keep_little_in_flight_stay_four(self):
        self.patch(growth, "WINDOW_BOUND", 64 << 20)
        storage = self.through_relay(self.useFixture(servers.PyFtpd(self.tmp)))
        storage.put_stream("level/data", self.chunks())
        storage.size("level/data")
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertEqual(ftp_parallel.WAN_CONNECTIONS, len(storage._pool.workers))

    def test_an_explicit_number_is_kept(self):
        storage = self.through_relay(self.useFixture(servers.PyFtpd(self.tmp)), connections=3)
        storage.put_stream("level/data", self.chunks())
        storage.size("level/data")
        self.assertEqual(self.data, b"".join(storage.get_stream("level/data")))
        self.assertEqual(3, len(storage._pool.workers))


class TestAgentOverSeveralConnections(AgentTestCase):
    """The agent end to end with --ftp-connections: a level larger than two 16 MiB segments."""

    def storage_args(self):
        return self.server.agent_options() + ["--ftp-connections", "3"]

    def round_trip(self, server, segmented: bool) -> None:
        self.server = self.useFixture(server)
        write(f"{self.source}/big.bin", os.urandom(70 << 20))
        write(f"{self.source}/small", "x")
        self.backup("--compression", "none")
        datas = [os.path.join(d, "data") for d, names, files in os.walk(self.server.root)
                 if "data" in names + files and "engine_metadata" in files]
        self.assertEqual(1, len(datas), datas)
        self.assertEqual(segmented, os.path.isdir(datas[0]), "segments only where the server refuses offset writes")
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(datas[0]))), index.NAME), "rb") as f:
            entries = index.decode(f.read())  # written beside the metadata, on an extra connection
        self.assertEqual([(0, True)], [(ref.level, s.data_size > 70 << 20) for ref, s in entries.items()])
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)

    def test_pyftpdlib_with_a_number_gets_segments(self):
        self.round_trip(servers.PyFtpd(self.tmp), segmented=True)

    def test_vsftpd_ftps_gets_one_file_written_in_place(self):
        self.round_trip(servers.Vsftpd(self.tmp, True), segmented=False)

    def test_vsftpd_without_upload_locks_gets_one_file_written_at_once(self):
        self.round_trip(servers.Vsftpd(self.tmp, lock_uploads=False), segmented=False)

    def test_a_level_1_builds_on_engine_metadata_put_beside_the_data(self):
        self.server = self.useFixture(servers.Vsftpd(self.tmp, lock_uploads=False))
        write(f"{self.source}/big.bin", os.urandom(70 << 20))
        os.makedirs(f"{self.source}/d")
        write(f"{self.source}/d/old", "x")
        self.backup("--compression", "none")
        os.rename(f"{self.source}/d", f"{self.source}/e")
        write(f"{self.source}/e/new", "y")
        self.assertEqual(1, self.backup("--compression", "none")["level"])
        stored = [os.path.join(d, "engine_metadata") for d, _, files in os.walk(self.server.root)
                  if "engine_metadata" in files]
        for path in stored:  # as a level stores it: no device, so no directory rename recorded
            devices = {d.device for d in incremental.read(path).directories}
            self.assertEqual({incremental.NO_DEVICE}, devices)
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)
