"""``--upload-limit`` / ``--download-limit``: measured rates over a few MiB on every storage.

A rate check, not a timing race: the transfer must take at least 0.9 x size / limit and its
average rate must not exceed 1.1 x the limit.
"""

import os
import time

import fixtures
import testtools

from freezer.common import config
from freezer.storage import registry
from freezer.storage.throttle import Throttled
from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests import objectstores
from freezer.tests.functional.base import write
from freezer.tests.functional.test_ftp import ServerAgentTest

LIMIT = 1024 * 1024  # bytes per second
SIZE = 3 * 1024 * 1024


class RateAssertions:
    def assertWithinLimit(self, size, elapsed):
        self.assertGreaterEqual(elapsed, 0.9 * size / LIMIT, f"{size} bytes in {elapsed:.2f}s: too fast")
        self.assertLessEqual(size / elapsed, 1.1 * LIMIT, f"{size / elapsed:.0f} B/s over the limit")


class StorageLimitsTest(RateAssertions, testtools.TestCase):
    """The wrapper the registry puts around every driver, on local disk and on an FTP server."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.data = os.urandom(SIZE)

    def storage(self, *storage_args):
        conf = config.build([*storage_args, "--upload-limit", "1M", "--download-limit", str(LIMIT)])
        storage = registry.build(conf)
        self.addCleanup(storage.close)
        self.assertIsInstance(storage, Throttled)
        return storage

    def round_trip(self, storage):
        chunks = [self.data[i:i + (1 << 20)] for i in range(0, SIZE, 1 << 20)]
        started = time.monotonic()
        storage.put_stream("limits/blob", iter(chunks))
        self.assertWithinLimit(SIZE, time.monotonic() - started)
        started = time.monotonic()
        back = b"".join(storage.get_stream("limits/blob"))
        self.assertWithinLimit(SIZE, time.monotonic() - started)
        self.assertEqual(self.data, back)

    def test_local(self):
        self.round_trip(self.storage("--storage", "local", "--container", os.path.join(self.tmp, "c")))

    def test_ftp(self):
        server = self.useFixture(servers.PyFtpd(self.tmp))
        self.round_trip(self.storage(*server.agent_options("backups")))

    def test_sftp(self):
        server = self.useFixture(Sshd(self.tmp))
        self.round_trip(self.storage(*server.agent_options()))

    def test_s3(self):
        server = objectstores.seaweed()
        self.round_trip(self.storage(*server.agent_options(f"{server.new_bucket()}/limits")))

    def test_swift(self):
        server = objectstores.swift()
        self.round_trip(self.storage(*server.agent_options(server.new_container())))

    def test_no_limit_no_wrapper(self):
        conf = config.build(["--storage", "local", "--container", self.tmp])
        self.assertNotIsInstance(registry.build(conf), Throttled)


class AgentLimitsTest(RateAssertions, ServerAgentTest):
    """The agent end to end over FTP: a backup held to --upload-limit, a restore to --download-limit."""

    def make_server(self):
        return servers.PyFtpd(self.tmp)

    def test_backup_and_restore_within_limits(self):
        write(f"{self.source}/random.bin", os.urandom(SIZE))
        started = time.monotonic()
        size = self.backup("--compression", "none", "--upload-limit", "1M")["size"]
        self.assertWithinLimit(size, time.monotonic() - started)
        started = time.monotonic()
        self.restore(os.path.join(self.tmp, "restored"), "--download-limit", "1M")
        self.assertWithinLimit(size, time.monotonic() - started)

    def test_bad_limit_is_one_line(self):
        proc = self.agent("--action", "info", "--upload-limit", "fast", expect=None)
        self.assertOneLineError(proc, "--upload-limit")
