"""The local driver turns every OSError into the storage error family, naming the path."""

import os

import fixtures
import testtools

from freezer.errors import NotFound, StorageError
from freezer.storage.local import LocalStorage


class TestLocalReadErrors(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.storage = LocalStorage(self.root)

    def test_a_read_that_fails_is_a_storage_error_naming_the_path(self):
        # Reading our own address 0 through /proc fails with EIO after open succeeded: a failing disk.
        os.symlink("/proc/self/mem", os.path.join(self.root, "data"))
        error = self.assertRaises(StorageError, b"".join, self.storage.get_stream("data"))
        self.assertIn(os.path.join(self.root, "data"), str(error))
        self.assertIsInstance(error.__cause__, OSError)

    def test_a_missing_file_is_not_found(self):
        self.assertRaises(NotFound, b"".join, self.storage.get_stream("absent"))

    def test_reads_from_an_offset(self):
        self.storage.put_bytes("d/f", b"0123456789")
        self.assertEqual(b"6789", b"".join(self.storage.get_stream("d/f", 6)))
