"""Large SFTP transfers over several SSH connections (--ftp-connections), against OpenSSH sshd on 127.0.0.1."""

import hashlib
import os

import fixtures
import testtools

from benchmarks import wan
from freezer.errors import StorageError
from freezer.storage import growth, sftp_parallel, sftp_stripes, sftp_upload
from freezer.storage import sftp as sftp_storage
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import describe_tree, soon, write
from freezer.tests.functional.test_sftp import SshdAgentTest
from freezer.tests.proxy import CuttingProxy

LARGE = sftp_parallel.PARALLEL_AFTER + 3 * sftp_parallel.SEGMENT + 12345  # uneven: a misplaced range shows


def digest(chunks) -> str:
    hashed = hashlib.sha256()
    for chunk in chunks:
        hashed.update(chunk)
    return hashed.hexdigest()


def large_chunks(seed: bytes) -> list[bytes]:
    """LARGE bytes, in chunks of uneven sizes, reproducible from ``seed``."""
    block = hashlib.sha256(seed).digest() * (1 << 15)  # 1 MiB
    chunks, left = [], LARGE
    for number in range(LARGE):
        size = min(left, len(block) - (number % 7) * 1000)
        chunks.append(bytes([number % 256]) + block[1:size])
        left -= size
        if not left:
            return chunks
    return chunks



class ParallelSession(testtools.TestCase):
    """A storage on sshd, maybe through a proxy, asked for ``connections`` connections."""

    connections = 3
    extra_config: tuple[str, ...] = ()

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path, extra_config=self.extra_config))
        self.proxy = self.useFixture(CuttingProxy("127.0.0.1", self.server.port))
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=self.proxy.port, username=self.server.username,
                                             password=self.server.password, container=self.server.container(),
                                             known_hosts=self.server.known_hosts, connections=self.connections)
        self.storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(self.storage.close)


class TestParallelRoundTrip(ParallelSession):
    def test_large_level_up_and_down_over_every_connection(self):
        chunks = large_chunks(b"one")
        self.assertEqual(LARGE, self.storage.put_stream("level/data", iter(chunks)))
        self.assertEqual(self.connections, self.proxy.connections)  # the stripes went over the extra connections
        self.assertEqual(self.connections - 1, len(self.storage._channels.channels))
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))
        self.assertEqual(self.connections, self.proxy.connections)  # the restore reused them
        self.assertEqual(["data"], self.storage.listdir("level"))  # one file, no temporary left

    def test_a_download_from_an_offset(self):
        chunks = large_chunks(b"two")
        self.storage.put_stream("level/data", iter(chunks))
        whole = b"".join(chunks)
        offset = 5 * sftp_parallel.SEGMENT + 3
        self.assertEqual(digest([whole[offset:]]), digest(self.storage.get_stream("level/data", offset)))

    def test_chunks_handed_out_are_bounded(self):
        self.storage.put_stream("level/data", iter(large_chunks(b"three")))
        self.assertLessEqual(max(len(chunk) for chunk in self.storage.get_stream("level/data")),
                             sftp_storage.BLOCK_SIZE)

    def test_a_small_file_takes_no_extra_connection(self):
        self.storage.put_stream("small/data", [b"x" * 1000])
        self.assertEqual(b"x" * 1000, b"".join(self.storage.get_stream("small/data")))
        self.assertEqual(1, self.proxy.connections)


class TestOneSessionPerConnection(ParallelSession):
    """MaxSessions 1 refuses more channels, not more connections: the transfer is still split."""

    extra_config = ("MaxSessions 1",)

    def test_parallel_despite_max_sessions(self):
        chunks = large_chunks(b"four")
        self.storage.put_stream("level/data", iter(chunks))
        self.assertEqual(self.connections, self.proxy.connections)
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))


class TestServerRefusingConnections(ParallelSession):
    """A server (or firewall) that drops further connections: the transfer goes on over fewer."""

    def test_backs_off_to_the_connections_it_has(self):
        self.useFixture(fixtures.FakeLogger())
        self.storage.listdir("")  # the first connection
        self.proxy.link_down(10)
        chunks = large_chunks(b"five")
        self.assertEqual(LARGE, self.storage.put_stream("level/data", iter(chunks)))
        self.assertTrue(self.storage._channels.refused)
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))


class TestInterruptedConnection(ParallelSession):
    def test_a_cut_mid_download_is_read_over_the_other_connections(self):
        self.useFixture(fixtures.FakeLogger())
        chunks = large_chunks(b"six")
        self.storage.put_stream("level/data", iter(chunks))
        self.proxy.cut_after(LARGE // 2)
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))
        self.assertEqual(1, self.proxy.cuts)
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))  # and again, reconnected

    def test_every_connection_cut_fails_cleanly_and_the_storage_recovers(self):
        self.useFixture(fixtures.FakeLogger())
        chunks = large_chunks(b"nine")
        self.storage.put_stream("level/data", iter(chunks))
        self.storage.close()
        self.proxy.link_down(1)  # the first login fails
        self.assertRaises(StorageError, lambda: digest(self.storage.get_stream("level/data")))
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))

    def test_a_cut_mid_upload_is_resumed(self):
        logs = self.useFixture(fixtures.FakeLogger())
        self.useFixture(fixtures.MockPatchObject(sftp_upload, "PAUSE", 0.01))
        self.storage.listdir("")
        self.proxy.cut_upload_after(LARGE // 2)
        chunks = large_chunks(b"seven")
        self.assertEqual(LARGE, self.storage.put_stream("level/data", iter(chunks)))
        self.assertEqual(1, self.proxy.cuts)
        self.assertEqual(1, logs.output.count("retrying in"), logs.output)
        self.assertEqual(["data"], self.storage.listdir("level"))  # no temporary left beside it
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))


class TestResumedUploadOverOneConnection(ParallelSession):
    """One connection (its extra channel rides on it): a cut takes everything, and the upload reconnects."""

    connections = 1

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger())
        self.useFixture(fixtures.MockPatchObject(sftp_upload, "PAUSE", 0.01))
        self.storage.listdir("")

    def test_a_striped_upload(self):
        self.proxy.cut_upload_after(LARGE - (3 << 20))
        chunks = large_chunks(b"ten")
        self.assertEqual(LARGE, self.storage.put_stream("level/data", iter(chunks)))
        self.assertEqual((1, 2), (self.proxy.cuts, self.proxy.connections))
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))

    def test_a_short_upload_cut_twice(self):
        data = os.urandom(6 << 20)
        self.proxy.cut_upload_after(2 << 20)
        pieces = iter([data[start:start + (1 << 20)] for start in range(0, len(data), 1 << 20)])

        def cut_again():
            for number, piece in enumerate(pieces):
                if number == 4:
                    self.proxy.cut_upload_after(1 << 19)
                yield piece

        self.assertEqual(len(data), self.storage.put_stream("short/data", cut_again()))
        self.assertEqual(2, self.proxy.cuts)
        self.assertEqual(2, self.logs.output.count("retrying in"), self.logs.output)
        self.assertEqual(data, b"".join(self.storage.get_stream("short/data")))

    def test_a_link_that_stays_down_fails_the_upload_cleanly(self):
        self.proxy.cut_upload_after(LARGE // 2, reset_next=1000)
        self.assertRaises(StorageError, self.storage.put_stream, "level/data", iter(large_chunks(b"eight")))
        self.assertEqual(sftp_upload.RESUMES, self.logs.output.count("retrying in"), self.logs.output)
        self.proxy.link_down(0)
        self.assertNotIn("data", self.storage.listdir("level"))  # an interrupted upload never looks complete
        chunks = large_chunks(b"nine")
        self.storage.put_stream("level/data", iter(chunks))
        self.assertEqual(digest(chunks), digest(self.storage.get_stream("level/data")))


class TestAgentOverConnections(SshdAgentTest):
    """The agent end to end with --ftp-connections, a level larger than the parallel threshold."""

    def storage_args(self):
        return self.server.agent_options() + ["--ftp-connections", "3"]

    def test_backup_and_restore(self):
        write(f"{self.source}/random", os.urandom(sftp_parallel.PARALLEL_AFTER + sftp_stripes.STRIPE_AFTER))
        write(f"{self.source}/small", "x")
        self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none")
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)


class ProxiedAgentTest(SshdAgentTest):
    """The agent reaching sshd through a proxy that can cut its connections."""

    def setUp(self):
        super().setUp()
        self.proxy = self.useFixture(CuttingProxy("127.0.0.1", self.server.port))

    def storage_args(self):
        options = self.server.agent_options()
        options[options.index("--ftp-port") + 1] = str(self.proxy.port)
        return options


class TestAgentThroughACut(ProxiedAgentTest):
    """An operator's backup whose connection drops midway: it completes, with one warning, and restores."""

    def test_backup_goes_on_over_a_new_connection(self):
        write(f"{self.source}/random", os.urandom(12 << 20))
        self.proxy.cut_upload_after(6 << 20)
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none")
        self.assertEqual(1, self.proxy.cuts)
        self.assertEqual(1, proc.stderr.count("retrying in"), proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertNotIn("Exception ignored", proc.stderr)
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)


class TestAgentLinkStaysDown(ProxiedAgentTest):
    """The same backup when the link stays down through the upload's 3 resumes (6 s of pauses), then
    comes back for the clean-up: one error line, and no level left that looks complete."""

    def test_fails_with_one_line(self):
        write(f"{self.source}/random", os.urandom(12 << 20))
        self.proxy.cut_upload_after(6 << 20, reset_next=sftp_upload.RESUMES)
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none",
                          expect=None)
        self.assertOneLineError(proc, "freezer-agent: error:", "127.0.0.1")  # "lost during connect", or the banner
        self.assertNotIn("Exception ignored", proc.stderr)
        restore = self.agent("--action", "restore", "--restore-abs-path", os.path.join(self.tmp, "restored"),
                             expect=None)
        self.assertNotEqual(0, restore.returncode)  # the interrupted level never looks complete


class TestAutoConnections(testtools.TestCase):
    """``--ftp-connections auto``: one connection (and today's extra channel) on loopback, more on a long link."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path))

    def connected(self, port: int) -> sftp_storage.SftpStorage:
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=port, username=self.server.username,
                                             password=self.server.password, container=self.server.container(),
                                             known_hosts=self.server.known_hosts)
        storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(storage.close)
        storage.listdir("")
        return storage

    def test_loopback(self):
        self.assertEqual(1, self.connected(self.server.port)._connections)

    def test_long_link(self):
        relay = wan.Relay(("127.0.0.1", self.server.port), wan.Link.parse("60ms,1gbit")).start()
        self.addCleanup(relay.close)
        self.assertEqual(sftp_parallel.WAN_CONNECTIONS, self.connected(relay.port)._connections)


class TestAutoGrowsOnALongLink(testtools.TestCase):
    """``auto`` through a 60 ms relay: a restore starts on 4 connections and doubles once (GROWN_CAP).

    Segments are made small, so there are many and each connection keeps little in flight: WINDOW_BOUND
    is lowered to match.
    """

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path))
        self.patch(sftp_parallel, "SEGMENT", 1 << 20)
        self.patch(growth, "WINDOW_BOUND", 1)
        relay = wan.Relay(("127.0.0.1", self.server.port), wan.Link.parse("60ms,1gbit")).start()
        self.addCleanup(relay.close)
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=relay.port, username=self.server.username,
                                             password=self.server.password, container=self.server.container(),
                                             known_hosts=self.server.known_hosts)
        self.storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(self.storage.close)
        self.chunks = large_chunks(b"grow")
        self.storage.put_stream("level/data", iter(self.chunks))

    def test_a_restore_grows(self):
        self.assertEqual(sftp_parallel.WAN_CONNECTIONS - 1, len(self.storage._channels.channels))
        self.assertEqual(digest(self.chunks), digest(self.storage.get_stream("level/data")))
        self.assertTrue(soon(lambda: len(self.storage._channels.channels) == growth.GROWN_CAP - 1))

    def test_connections_that_keep_little_in_flight_stay_four(self):
        self.patch(growth, "WINDOW_BOUND", 64 << 20)
        self.assertEqual(digest(self.chunks), digest(self.storage.get_stream("level/data")))
        self.assertEqual(sftp_parallel.WAN_CONNECTIONS - 1, len(self.storage._channels.channels))


class TestConnectionCount(testtools.TestCase):
    def test_auto_is_one_on_a_lan_and_more_on_a_long_link(self):
        self.assertEqual(1, sftp_parallel.connection_count(0, 0.0002))
        self.assertEqual(sftp_parallel.WAN_CONNECTIONS, sftp_parallel.connection_count(0, 0.1))

    def test_explicit_is_capped(self):
        self.assertEqual(2, sftp_parallel.connection_count(2, 0.0))
        self.assertEqual(sftp_parallel.MAX_CONNECTIONS, sftp_parallel.connection_count(99, 0.0))


