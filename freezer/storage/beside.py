"""Small storage work run in a thread beside the caller's, on a sibling handle of the storage.

A backup uploads its engine metadata as soon as tar exits, while the data's last segments are still
on their way, and records its level in the index while it writes its metadata: on a long link that
hides their round trips. Without a sibling, or when the work fails there, it is done in the
caller's thread when finished, as it would have been without this.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from freezer.storage.base import Storage

LOG = logging.getLogger(__name__)
ABANDON_WAIT = 5.0  # seconds a failed caller waits for the work beside it: a stalled server is not waited out


class Beside:
    """``work`` on a sibling of ``storage`` in a thread, once ``before()`` returned there; ``fallback``
    in the caller's thread at ``finish`` when there is no sibling or the work failed there."""

    def __init__(self, storage: Storage, work: Callable[[Storage], None], fallback: Callable[[], None],
                 before: Callable[[], object] | None = None):
        self.work, self.fallback, self.before = work, fallback, before
        self.failure: BaseException | None = None
        self.done = False
        self.abandoned = threading.Event()
        self.sibling = storage.sibling()
        self.thread: threading.Thread | None = None
        if self.sibling is not None:
            self.thread = threading.Thread(target=self._run, name="beside", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            if self.before is not None:
                self.before()
            if not self.abandoned.is_set():
                self.work(self.sibling)
                self.done = True
        except Exception as exc:  # noqa: BLE001 (any failure: the caller's thread does the work again)
            self.failure = exc
        finally:
            with contextlib.suppress(Exception):
                self.sibling.close()

    def finish(self) -> None:
        """Wait for the work; do it here if it had no sibling or was not done there."""
        if self.thread is not None:
            self.thread.join()
        if not self.done:
            if self.failure is not None:
                LOG.info("work beside the backup failed (%s): done again on the main connection", self.failure)
            self.fallback()

    def abandon(self) -> None:
        """Stop the work if it has not started and wait a little for it (the caller failed and cleans
        up); a thread still running then is a daemon."""
        self.abandoned.set()
        if self.thread is not None:
            self.thread.join(ABANDON_WAIT)
