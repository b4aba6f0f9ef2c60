"""GNU tar snapshot files (read, devices forgotten) and the split hard-link check, with the real tar."""

import os
import subprocess
import time

import fixtures
import testtools

from freezer.engine import hardlinks, incremental, tar
from freezer.errors import FreezerError

SAMPLE = (b"GNU tar-1.34-2\n1796587217\x00849071132\x00"
          b"0\x001796587217\x00248183963\x0065024\x002146692\x00./d2/d\x00Yf\x00Nk\x00\x00\x00"
          b"1\x001796587218\x00578140868\x0065024\x002146475\x00./empty\x00\x00\x00")


class TestSnapshotFile(testtools.TestCase):
    def test_round_trip(self):
        snapshot = incremental.parse(SAMPLE)
        self.assertEqual((b"1796587217", b"849071132"), snapshot.time)
        self.assertEqual([b"./d2/d", b"./empty"], [d.name for d in snapshot.directories])
        self.assertEqual([[b"Yf", b"Nk"], []], [d.entries for d in snapshot.directories])
        self.assertEqual(SAMPLE, snapshot.to_bytes())

    def test_forget_devices_keeps_everything_else(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "snapshot")
        with open(path, "wb") as handle:
            handle.write(SAMPLE)
        self.assertEqual(2, incremental.forget_devices(path))
        with open(path, "rb") as handle:
            self.assertEqual(SAMPLE.replace(b"\x0065024\x00", b"\x000\x00"), handle.read())

    def test_the_stored_form_forgets_devices_and_leaves_the_file(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "snapshot")
        with open(path, "wb") as handle:
            handle.write(SAMPLE)
        self.assertEqual(SAMPLE.replace(b"\x0065024\x00", b"\x000\x00"), incremental.stored_form(path))
        with open(path, "rb") as handle:
            self.assertEqual(SAMPLE, handle.read())

    def test_no_directories(self):
        data = b"GNU tar-1.34-2\n1\x002\x00"
        self.assertEqual(data, incremental.parse(data).to_bytes())

    def test_not_format_2(self):
        error = self.assertRaises(FreezerError, incremental.parse, b"GNU tar-1.26-1\n123\n", "engine_metadata")
        self.assertIn("engine_metadata is not a GNU tar snapshot file of format 2", str(error))

    def test_cut_short(self):
        for cut in (len(SAMPLE) - 1, len(SAMPLE) - 3, 60):
            error = self.assertRaises(FreezerError, incremental.parse, SAMPLE[:cut], "snap")
            self.assertIn("snap", str(error))


class TestSplitLinks(testtools.TestCase):
    """Level 0, a change, then what ``hardlinks.check`` says of level 1 (tar run as the agent runs it)."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.source = os.path.join(self.tmp, "source")
        self.snapshot = os.path.join(self.tmp, "snapshot")
        for name in ("a/f", "b/g"):
            os.makedirs(os.path.dirname(os.path.join(self.source, name)), exist_ok=True)
            with open(os.path.join(self.source, name), "w") as handle:
                handle.write(name)
        os.link(os.path.join(self.source, "a/f"), os.path.join(self.source, "b/linked"))

    def tar(self) -> None:
        subprocess.run(["tar", "--create", "--file=/dev/null", f"--directory={self.source}",
                        f"--listed-incremental={self.snapshot}", "--no-check-device", "."], check=True)

    def level_1(self, change) -> None:
        self.tar()
        # File times come from the kernel's coarse clock, which may lag tar's snapshot time by a tick:
        # a change within that tick would look older than the level 0 (a new link then seems split).
        time.sleep(0.02)
        change()
        since = incremental.read(self.snapshot).time
        incremental.forget_devices(self.snapshot)
        self.tar()
        hardlinks.check(self.source, self.snapshot, since)

    def test_moved_directory_splits_a_link(self):
        error = self.assertRaises(hardlinks.SplitLink, self.level_1,
                                  lambda: os.rename(f"{self.source}/a", f"{self.source}/c"))
        self.assertIn("c/f is stored but its hard link b/linked is not", str(error))

    def test_changed_file_is_stored_under_every_name(self):
        self.level_1(lambda: os.chmod(f"{self.source}/a/f", 0o600))

    def test_new_link_is_stored_with_its_file(self):
        self.level_1(lambda: os.link(f"{self.source}/b/g", f"{self.source}/a/g2"))

    def test_link_outside_the_source(self):
        os.unlink(f"{self.source}/b/linked")
        os.link(f"{self.source}/a/f", f"{self.tmp}/outside")
        self.level_1(lambda: os.rename(f"{self.source}/a", f"{self.source}/c"))


class TestPrepare(testtools.TestCase):
    def prepare(self, data: bytes, level: int) -> tuple[tuple[bytes, bytes], bytes]:
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "snapshot")
        with open(path, "wb") as handle:
            handle.write(data)
        since = incremental.prepare(path, level, "data/tar/h_b/1/1_2/engine_metadata")
        with open(path, "rb") as handle:
            return since, handle.read()

    def test_level_0_with_devices_is_built_on(self):
        self.assertEqual(((b"1796587217", b"849071132"), SAMPLE.replace(b"\x0065024\x00", b"\x000\x00")),
                         self.prepare(SAMPLE, 0))

    def test_level_without_devices_is_built_on(self):
        data = SAMPLE.replace(b"\x0065024\x00", b"\x000\x00")
        self.assertEqual(data, self.prepare(data, 3)[1])

    def test_level_with_devices_starts_a_new_chain(self):
        error = self.assertRaises(incremental.NewChain, self.prepare, SAMPLE, 1)
        self.assertIn("level 1 was written by an agent that let tar record directory renames", str(error))

    def test_broken_snapshot_starts_a_new_chain(self):
        error = self.assertRaises(incremental.NewChain, self.prepare, b"garbage", 2)
        self.assertIn("data/tar/h_b/1/1_2/engine_metadata is not a GNU tar snapshot file", str(error))

    def test_tar_matches_directories_without_devices(self):
        self.assertIn("--no-check-device", tar.create_command("/", "snap", tar.TarOptions()))
