"""The engine metadata put beside the data once tar exits, or in the caller's thread."""

import hashlib
import os
import subprocess

import fixtures
import testtools

from freezer.actions.engine_upload import EngineMetadataUpload

SNAPSHOT = b"GNU tar-1.34-2\n1\x002\x00"  # a snapshot of no directory: stored as it is


class Recording:
    """A storage keeping what it was given; its sibling is ``twin``, whose puts fail if told so."""

    kind = "fake"

    def __init__(self, twin=None, fail: bool = False):
        self.twin, self.fail = twin, fail
        self.puts: list[tuple[str, bytes]] = []

    def sibling(self):
        return self.twin

    def put_bytes(self, path: str, data: bytes) -> int:
        if self.fail:
            raise OSError("connection lost")
        self.puts.append((path, data))
        return len(data)

    def close(self):
        pass


class TestEngineMetadataUpload(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.snapshot = os.path.join(self.useFixture(fixtures.TempDir()).path, "snapshot")
        with open(self.snapshot, "wb") as handle:
            handle.write(SNAPSHOT)

    def upload(self, storage, tar: subprocess.Popen) -> EngineMetadataUpload:
        self.addCleanup(tar.wait)
        return EngineMetadataUpload(storage, "lvl/engine_metadata", self.snapshot, tar)

    def test_put_on_the_sibling_once_tar_exits(self):
        twin = Recording()
        main = Recording(twin)
        upload = self.upload(main, subprocess.Popen(["true"]))
        self.assertEqual(hashlib.sha256(SNAPSHOT).hexdigest(), upload.finish())
        self.assertEqual(([("lvl/engine_metadata", SNAPSHOT)], []), (twin.puts, main.puts))

    def test_put_here_without_a_sibling_or_when_it_fails(self):
        for main in (Recording(None), Recording(Recording(fail=True))):
            upload = self.upload(main, subprocess.Popen(["true"]))
            upload.finish()
            self.assertEqual([("lvl/engine_metadata", SNAPSHOT)], main.puts)

    def test_stopped_before_tar_is_killed_nothing_is_put(self):
        twin = Recording()
        tar = subprocess.Popen(["sleep", "30"])
        upload = self.upload(Recording(twin), tar)
        upload.stop()
        tar.kill()
        upload.abandon()
        self.assertEqual(([], False), (twin.puts, upload.beside.thread.is_alive()))
