"""tar's record size: backups in the default 10 KiB records every reader consumes whole; any size read."""

import os
import subprocess

import fixtures
import testtools

from freezer.engine import tar

DEFAULT_RECORD = 20 * 512
READ_RECORD = 128 * 512


class TestTarRecords(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.work = self.useFixture(fixtures.TempDir()).path
        self.source = os.path.join(self.work, "source")
        os.makedirs(self.source)
        for index in range(3):
            with open(os.path.join(self.source, f"file{index}"), "wb") as out:
                out.write(os.urandom(30000 + index))

    def test_backup_stream_is_written_in_default_records(self):
        pipeline = tar.start_backup(self.source, os.path.join(self.work, "snapshot"),
                                    tar.TarOptions(compression="none"))
        stream = b"".join(pipeline.output_chunks())
        pipeline.close()
        # A default reader (tar --list, upstream's restore) stops at the end marker: with larger records
        # it could leave padding unread and kill the decompressor feeding it with SIGPIPE.
        self.assertEqual(0, len(stream) % DEFAULT_RECORD)

    def test_stream_in_default_10_kib_records_restores(self):
        stream = subprocess.run(["tar", "--create", "--format=posix", "--file=-", f"--directory={self.source}",
                                 "."], check=True, capture_output=True).stdout
        self.assertNotEqual(0, len(stream) % READ_RECORD)
        target = os.path.join(self.work, "target")
        os.makedirs(target)
        pipeline = tar.start_restore(target, "none", None)
        pipeline.feed([stream[i:i + 7000] for i in range(0, len(stream), 7000)])
        pipeline.close()
        for index in range(3):
            with open(os.path.join(target, f"file{index}"), "rb") as restored, \
                    open(os.path.join(self.source, f"file{index}"), "rb") as original:
                self.assertEqual(original.read(), restored.read())
