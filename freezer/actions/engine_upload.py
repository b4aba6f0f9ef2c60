"""A level's engine metadata uploaded as soon as tar exits, beside the data's last segments."""

from __future__ import annotations

import hashlib
import subprocess

from freezer.engine import incremental
from freezer.storage.base import Storage
from freezer.storage.beside import Beside


class EngineMetadataUpload:
    """tar's snapshot, as a level stores it, put at ``path`` on a sibling of ``storage`` once ``tar``
    exits; where the storage has none (or it failed), in the caller's thread at ``finish``."""

    def __init__(self, storage: Storage, path: str, snapshot: str, tar: subprocess.Popen):
        self.path, self.snapshot = path, snapshot
        self._body: bytes | None = None
        self.beside = Beside(storage, self._upload, lambda: self._upload(storage), before=tar.wait)

    def body(self) -> bytes:
        """What is stored: the snapshot with every directory's device 0 (it says this level holds no rename)."""
        if self._body is None:
            self._body = incremental.stored_form(self.snapshot)
        return self._body

    def _upload(self, storage: Storage) -> None:
        storage.put_bytes(self.path, self.body())

    def finish(self) -> str:
        """Wait for the upload (made here if it was not made beside); the SHA-256 of what was stored."""
        self.beside.finish()
        return hashlib.sha256(self.body()).hexdigest()

    def stop(self) -> None:
        """Before tar is killed: the upload must not start on what it leaves."""
        self.beside.abandoned.set()

    def abandon(self) -> None:
        self.beside.abandon()
