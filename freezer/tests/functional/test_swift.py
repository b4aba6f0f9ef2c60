"""Swift storage against a Swift all-in-one on 127.0.0.1: conformance, round trips and errors."""

import json
import os

import testtools

from freezer.storage import registry, swift
from freezer.tests import objectstores
from freezer.tests.functional import roundtrip
from freezer.tests.functional.base import AgentTestCase, make_tree, write
from freezer.tests.functional.test_storage_contract import CutDownload, DroppedConnections, StorageContract
from freezer.tests.proxy import CuttingProxy

SEGMENT = 4 * 1024 * 1024


def settings(server, container: str, prefix: str = "backups", **extra) -> swift.SwiftSettings:
    values = {"auth_url": server.auth_url, "username": objectstores.SWIFT_USER, "password": objectstores.SWIFT_KEY,
              "container": container, "prefix": prefix, "segment_size": SEGMENT, "timeout": 10}
    values.update(extra)
    return swift.SwiftSettings(**values)


class TestSwiftContract(StorageContract, testtools.TestCase):
    contested_claims_may_all_lose = True

    def make_storage(self):
        self.server = objectstores.swift()
        self.container = self.server.new_container()
        return swift.SwiftStorage(settings(self.server, self.container))

    def segments(self):
        return self.driver._listing("", self.driver.settings.segments, "")

    def test_large_object_is_segmented_and_removed_whole(self):
        block = os.urandom(1 << 20)
        self.storage.put_stream("d/big", (block for _ in range(10)))
        self.assertEqual(3, len(self.segments()))
        self.assertEqual(10 << 20, self.storage.size("d/big"))
        self.assertEqual(block * 10, self.storage.get_bytes("d/big"))
        self.storage.rmtree("d")
        self.assertEqual([], self.segments())
        self.assertEqual([], self.storage.listdir(""))

    def test_names_on_the_server(self):
        """The layout upstream freezer and earlier agents read: objects below the prefix, segments of
        ``key`` as ``key/<upload>/<8 digits>`` in ``<container>_segments``, claims as ``.claim-<token>``."""
        self.assertTrue(self.storage.claim("data/1_2"))
        self.storage.put_stream("data/1_2/big", (b"x" * (1 << 20) for _ in range(9)))
        names = sorted(entry["name"] for entry in self.driver._listing("", self.container, ""))
        self.assertEqual(2, len(names), names)
        self.assertRegex(names[0], r"^backups/data/1_2/\.claim-[0-9a-f]{32}$")
        self.assertEqual("backups/data/1_2/big", names[1])
        segments = sorted(entry["name"] for entry in self.segments())
        self.assertEqual(3, len(segments), segments)
        for number, name in enumerate(segments):
            self.assertRegex(name, rf"^backups/data/1_2/big/[0-9a-f]{{32}}/{number:08d}$")
        _, manifest = self.driver.conn.get_object(self.container, names[1], query_string="multipart-manifest=get")
        self.assertEqual([f"/{self.container}_segments/{name}" for name in segments],
                         [segment["name"] for segment in json.loads(manifest)])

    def test_failed_segmented_upload_leaves_no_segments(self):
        self.storage.put_bytes("keep", b"earlier")

        def broken():
            for _ in range(9):
                yield os.urandom(1 << 20)
            raise RuntimeError("source failed")

        self.assertRaises(RuntimeError, self.storage.put_stream, "keep", broken())
        self.assertEqual(b"earlier", self.storage.get_bytes("keep"))
        self.assertEqual([], self.segments())

    def test_dynamic_manifest_where_slo_is_missing(self):
        self.driver._slo = False
        block = os.urandom(1 << 20)
        self.storage.put_stream("dlo", (block for _ in range(9)))
        self.assertEqual(block * 9, self.storage.get_bytes("dlo"))


class TestSwiftCutDownload(CutDownload, DroppedConnections, testtools.TestCase):
    reconnect_cost = 2  # a new Connection logs in (auth URL), then stores

    def make_cut_driver(self):
        server = objectstores.swift()
        proxy = self.useFixture(CuttingProxy("127.0.0.1", server.port))
        auth_url = f"http://127.0.0.1:{proxy.port}/auth/v1.0"
        return swift.SwiftStorage(settings(server, server.new_container(), auth_url=auth_url)), proxy


class SwiftAgentTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.server = objectstores.swift()
        self.swift_container = self.server.new_container()

    def storage_args(self):
        return [*self.server.agent_options(f"{self.swift_container}/freezer"), "--max-segment-size", str(SEGMENT)]

    def server_view(self):
        return registry.wrap(swift.SwiftStorage(settings(self.server, self.swift_container, "freezer")))


class TestSwiftRoundTrip(SwiftAgentTest, roundtrip.RoundTripTests):
    """The shared round trips on Swift."""

    # xz emits its first output after a whole 24 MiB block; uploads here start after two parts.
    slow_compression = "bzip2"

    def upload_in_progress(self, files_before):
        view = registry.unwrap(self.server_view())
        try:
            return bool(view._listing("", view.settings.segments, ""))
        finally:
            view.close()

    def test_interrupted_backup_removes_its_segments(self):
        self.test_interrupted_backup_leaves_earlier_backups_intact()
        self.assertFalse(self.upload_in_progress(0))


class TestSwiftErrors(SwiftAgentTest):
    def test_wrong_password(self):
        make_tree(self.source)
        proc = self.agent("--path-to-backup", self.source, "--os-password", "wrong-Key", expect=None)
        self.assertOneLineError(proc, "--os-password")
        self.assertNotIn("wrong-Key", proc.stderr)

    def test_unreachable_auth_url(self):
        proc = self.agent("--action", "info", "--os-auth-url", "http://127.0.0.1:9/auth/v1.0", expect=None)
        self.assertFailsAtOnce(proc, "--os-auth-url")

    def test_missing_username(self):
        proc = self.agent("--action", "info", "--os-username", "", expect=None)
        self.assertOneLineError(proc, "--os-username")

    def test_password_from_environment(self):
        write(f"{self.source}/f", "x")
        args = [a for a in self.storage_args() if a not in ("--os-password", objectstores.SWIFT_KEY)]
        self.storage_args = lambda: args
        proc = self.agent("--path-to-backup", self.source, "--debug", env={"OS_PASSWORD": objectstores.SWIFT_KEY})
        self.assertNotIn(objectstores.SWIFT_KEY, proc.stderr + proc.stdout)
        self.assertEqual(1, len(self.server_view().listdir("metadata/tar")))
