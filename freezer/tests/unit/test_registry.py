"""The registry builds every --storage the same way: bare driver, then retries for network drivers."""

import testtools

from freezer.common import config
from freezer.errors import FreezerError
from freezer.storage import ftp, local, registry, s3, sftp, swift
from freezer.storage.retry import Retrying

OPTIONS = {
    "local": ["--container", "/tmp/freezer-registry-test"],
    "ftp": ["--container", "c", "--ftp-host", "127.0.0.1"],
    "ftps": ["--container", "c", "--ftp-host", "127.0.0.1"],
    "sftp": ["--container", "c", "--ftp-host", "127.0.0.1"],
    "ssh": ["--container", "c", "--ssh-host", "127.0.0.1"],
    "s3": ["--container", "bucket/prefix", "--endpoint", "http://127.0.0.1:9", "--access-key", "a",
           "--secret-key", "s"],
    "swift": ["--container", "c", "--os-auth-url", "http://127.0.0.1:9/auth/v1.0", "--os-username", "u",
              "--os-password", "p"],
}
BARE = {"local": local.LocalStorage, "ftp": ftp.FtpStorage, "ftps": ftp.FtpStorage, "sftp": sftp.SftpStorage,
        "ssh": sftp.SftpStorage, "s3": s3.S3Storage, "swift": swift.SwiftStorage}


def build(name: str):
    return registry.build(config.build(["--storage", name, *OPTIONS[name]]))


class TestRegistry(testtools.TestCase):
    def test_every_storage_has_a_case_here(self):
        self.assertEqual(set(config.STORAGES), set(registry.BUILDERS))
        self.assertEqual(set(registry.BUILDERS), set(OPTIONS))

    def test_network_drivers_are_wrapped_once_with_retries(self):
        for name in ("ftp", "ftps", "sftp", "ssh", "s3", "swift"):
            storage = build(name)
            self.assertIsInstance(storage, Retrying, name)
            self.assertIsInstance(storage.inner, BARE[name], name)
            self.assertIs(storage.inner, registry.unwrap(storage))
            self.assertIs(storage, registry.wrap(storage))
            self.assertEqual(name, storage.kind)

    def test_bare_returns_the_bare_driver(self):
        for name, (_settings, path) in registry.BUILDERS.items():
            conf = config.build(["--storage", name, *OPTIONS[name]])
            self.assertIsInstance(registry.bare(conf), BARE[name], path)

    def test_local_is_not_wrapped(self):
        storage = build("local")
        self.assertIsInstance(storage, local.LocalStorage)
        self.assertIs(storage, registry.unwrap(storage))

    def test_wrap_passes_retry_options(self):
        storage = registry.wrap(ftp.FtpStorage(ftp.FtpSettings("h", 21, "u", "p", "c")), attempts=5, backoff=0.5)
        self.assertEqual((5, 0.5), (storage.attempts, storage.backoff))

    def test_missing_and_unknown_storage(self):
        self.assertIn("--storage is required", str(self.assertRaises(FreezerError, registry.build,
                                                                      config.build([]))))
        error = self.assertRaises(FreezerError, registry.build, config.build(["--storage", "nfs", "--container", "c"]))
        self.assertIn("unknown --storage 'nfs'", str(error))
