"""tar's record size: 32 KiB records written, streams of any record size read."""

import os
import subprocess

import fixtures
import testtools

from freezer.engine import tar

RECORD = 64 * 512


class TestTarRecords(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.work = self.useFixture(fixtures.TempDir()).path
        self.source = os.path.join(self.work, "source")
        os.makedirs(self.source)
        for index in range(3):
            with open(os.path.join(self.source, f"file{index}"), "wb") as out:
                out.write(os.urandom(30000 + index))

    def test_backup_stream_is_written_in_32_kib_records(self):
        pipeline = tar.start_backup(self.source, os.path.join(self.work, "snapshot"),
                                    tar.TarOptions(compression="none"))
        stream = b"".join(pipeline.output_chunks())
        pipeline.close()
        self.assertEqual(0, len(stream) % RECORD)  # in 10 KiB records, ~100 KB could not be

    def test_stream_in_default_10_kib_records_restores(self):
        stream = subprocess.run(["tar", "--create", "--format=posix", "--file=-", f"--directory={self.source}",
                                 "."], check=True, capture_output=True).stdout
        self.assertNotEqual(0, len(stream) % RECORD)
        target = os.path.join(self.work, "target")
        os.makedirs(target)
        pipeline = tar.start_restore(target, "none", None)
        pipeline.feed([stream[i:i + 7000] for i in range(0, len(stream), 7000)])
        pipeline.close()
        for index in range(3):
            with open(os.path.join(target, f"file{index}"), "rb") as restored, \
                    open(os.path.join(self.source, f"file{index}"), "rb") as original:
                self.assertEqual(original.read(), restored.read())
