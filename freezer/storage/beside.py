"""Small storage work run in a thread beside the caller's, on a sibling handle of the storage.

A backup records its level in the index while it writes its metadata: on a long link that hides the
index's round trips. Without a sibling, or when the work fails there, it is done in the caller's
thread when finished, as it would have been without this.
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
    """``work`` on a sibling of ``storage`` in a thread; ``fallback`` in the caller's thread at ``finish``
    when there is no sibling or the work failed there."""

    def __init__(self, storage: Storage, work: Callable[[Storage], None], fallback: Callable[[], None]):
        self.work, self.fallback = work, fallback
        self.failure: Exception | None = None
        self.sibling = storage.sibling()
        self.thread: threading.Thread | None = None
        if self.sibling is not None:
            self.thread = threading.Thread(target=self._run, name="beside", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.work(self.sibling)
        except Exception as exc:  # noqa: BLE001 (any failure: the caller's thread does the work again)
            self.failure = exc
        finally:
            with contextlib.suppress(Exception):
                self.sibling.close()

    def finish(self) -> None:
        """Wait for the work; do it here if it had no sibling or failed there."""
        if self.thread is not None:
            self.thread.join()
        if self.thread is None or self.failure is not None:
            if self.failure is not None:
                LOG.info("work beside the backup failed (%s): done again on the main connection", self.failure)
            self.fallback()

    def abandon(self) -> None:
        """Wait a little for the work, whatever comes of it (the caller failed and is cleaning up); a
        thread still running then is a daemon, and its entry shows no level (see ``add_to_index_beside``)."""
        if self.thread is not None:
            self.thread.join(ABANDON_WAIT)
