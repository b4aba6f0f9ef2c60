"""S3 storage against SeaweedFS on 127.0.0.1: conformance, round trips and the errors users meet."""

import os

import testtools

from freezer.storage import registry, s3
from freezer.tests import objectstores
from freezer.tests.functional import roundtrip
from freezer.tests.functional.base import AgentTestCase, make_tree, write
from freezer.tests.functional.test_storage_contract import CutDownload, DroppedConnections, StorageContract
from freezer.tests.proxy import CuttingProxy

PART = 5 * 1024 * 1024


def settings(server, bucket: str, prefix: str = "backups/host1", **extra) -> s3.S3Settings:
    values = {"bucket": bucket, "prefix": prefix, "endpoint": server.endpoint,
              "access_key": objectstores.S3_ACCESS_KEY, "secret_key": objectstores.S3_SECRET_KEY,
              "part_size": PART, "timeout": 10}
    values.update(extra)
    return s3.S3Settings(**values)


class TestS3Contract(StorageContract, testtools.TestCase):
    def make_storage(self):
        self.server = objectstores.seaweed()
        self.bucket = self.server.new_bucket()
        return s3.S3Storage(settings(self.server, self.bucket))

    def pending_uploads(self):
        return self.server.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def test_failed_multipart_upload_is_aborted(self):
        self.storage.put_bytes("keep", b"earlier")

        def broken():
            for _ in range(12):
                yield os.urandom(1 << 20)
            raise RuntimeError("source failed")

        self.assertRaises(RuntimeError, self.storage.put_stream, "keep", broken())
        self.assertEqual(b"earlier", self.storage.get_bytes("keep"))
        self.assertEqual([], self.pending_uploads())

    def test_bucket_created_on_first_upload(self):
        self.assertEqual([], self.storage.listdir(""))
        self.storage.put_bytes("x", b"1")
        self.assertIn("Name", self.server.client().list_buckets()["Buckets"][0])
        self.assertEqual(["x"], self.storage.listdir(""))

    def test_keys_on_the_server(self):
        """The layout upstream freezer and earlier agents read: keys below the prefix, claims as ``.claim``."""
        self.assertTrue(self.storage.claim("data/1_2"))
        self.storage.put_stream("data/1_2/big", (b"x" * (1 << 20) for _ in range(11)))
        self.storage.put_bytes("metadata/1_2/metadata", b"{}")
        keys = [o["Key"] for o in self.server.client().list_objects_v2(Bucket=self.bucket)["Contents"]]
        self.assertEqual(["backups/host1/data/1_2/.claim", "backups/host1/data/1_2/big",
                          "backups/host1/metadata/1_2/metadata"], sorted(keys))
        self.assertEqual(11 << 20, self.storage.size("data/1_2/big"))

    def test_prefix_keeps_keys_apart(self):
        self.storage.put_bytes("a/b", b"1")
        keys = [o["Key"] for o in self.server.client().list_objects_v2(Bucket=self.bucket)["Contents"]]
        self.assertEqual(["backups/host1/a/b"], keys)


class TestS3CutDownload(CutDownload, DroppedConnections, testtools.TestCase):
    def make_cut_driver(self):
        server = objectstores.seaweed()
        proxy = self.useFixture(CuttingProxy("127.0.0.1", int(server.endpoint.rsplit(":", 1)[1])))
        endpoint = f"http://127.0.0.1:{proxy.port}"
        return s3.S3Storage(settings(server, server.new_bucket(), endpoint=endpoint)), proxy


class S3AgentTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.server = objectstores.seaweed()
        self.bucket = self.server.new_bucket()
        self.container = f"{self.bucket}/freezer"

    def storage_args(self):
        return [*self.server.agent_options(self.container), "--max-segment-size", str(PART)]

    def server_view(self):
        return registry.wrap(s3.S3Storage(settings(self.server, self.bucket, "freezer")))


class TestS3RoundTrip(S3AgentTest, roundtrip.RoundTripTests):
    """The shared round trips on S3."""

    # xz emits its first output after a whole 24 MiB block; uploads here start after two parts.
    slow_compression = "bzip2"

    def upload_in_progress(self, files_before):
        uploads = self.server.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return bool(uploads)

    def test_interrupted_backup_aborts_its_multipart_upload(self):
        self.test_interrupted_backup_leaves_earlier_backups_intact()
        uploads = self.server.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        self.assertEqual([], uploads)


class TestS3Errors(S3AgentTest):
    def test_wrong_secret_key(self):
        make_tree(self.source)
        proc = self.agent("--path-to-backup", self.source, "--secret-key", "wrong", expect=None)
        self.assertOneLineError(proc, "--secret-key")
        self.assertNotIn("wrong", proc.stderr)

    def test_unknown_access_key(self):
        proc = self.agent("--action", "info", "--access-key", "nobody", expect=None)
        self.assertOneLineError(proc, "--access-key")

    def test_unreachable_endpoint(self):
        proc = self.agent("--action", "info", "--endpoint", "http://127.0.0.1:9", "--s3-timeout", "2",
                          expect=None)
        self.assertFailsAtOnce(proc, "--endpoint", "127.0.0.1:9")

    def test_invalid_bucket_name(self):
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, "--container", "B!/x", expect=None)
        self.assertOneLineError(proc, "--container")

    def test_credentials_from_environment_and_file(self):
        write(f"{self.source}/f", "x")
        key_file = os.path.join(self.tmp, "secret")
        write(key_file, objectstores.S3_SECRET_KEY + "\n", mode=0o600)
        args = ["--storage", "s3", "--container", self.container, "--backup-name", "b",
                "--path-to-backup", self.source, "--secret-key-file", key_file]
        env = {"ACCESS_KEY": objectstores.S3_ACCESS_KEY, "ENDPOINT": self.server.endpoint}
        self.storage_args = lambda: args
        proc = self.agent(env=env)
        self.assertNotIn(objectstores.S3_SECRET_KEY, proc.stderr + proc.stdout)
        keys = [o["Key"] for o in self.server.client().list_objects_v2(Bucket=self.bucket)["Contents"]]
        self.assertEqual(1, len([k for k in keys if k.startswith("freezer/metadata/")]))

    def test_missing_bucket_on_restore(self):
        proc = self.agent("--action", "restore", "--restore-abs-path", f"{self.tmp}/r", expect=None)
        self.assertOneLineError(proc, "no backup")
