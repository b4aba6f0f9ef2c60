"""Which directories of an FTP server exist, learnt from listings, so making a path costs few round trips."""

from __future__ import annotations

import ftplib
import posixpath

from freezer.errors import PermissionDenied
from freezer.storage import ftp_session


class KnownDirectories:
    """Mixin of the FTP driver: ``_known_dirs`` kept, MKD and CWD spent sparingly.

    The driver provides ``_client()`` and ``settings``.
    """

    _known_dirs: set[str]

    def _learn_dirs(self, remote: str, entries: list[tuple[str, str | None]]) -> None:
        """A directory that could be listed exists, and so do its ancestors and its typed subdirectories."""
        current = remote
        while current not in ("", "/") and current not in self._known_dirs:
            self._know_dir(current)
            current = posixpath.dirname(current)
        self._known_dirs.update(posixpath.join(remote, name) for name, kind in entries if kind == "dir")

    def _makedirs(self, remote: str) -> None:
        """Make ``remote`` and its parents not known to exist, every MKD in one write: one round trip."""
        missing = self._unknown_part(remote)
        if missing:
            self._make_all(missing)

    def _claim_dir(self, remote: str) -> bool:
        """MKD ``remote`` and its parents not known to exist, in one write; False when ``remote``
        already exists (another backup's claim)."""
        return self._make_all(self._unknown_part(posixpath.dirname(remote)) + [remote])

    def _make_all(self, directories: list[str]) -> bool:
        """MKD each of ``directories`` (top first) in one write; whether the last one was made now.

        A refusal is an existing directory on most servers (550): only the last one's is checked (CWD).
        """
        ftp = self._client()
        ftp_session.send_together(ftp, [f"MKD {directory}" for directory in directories])
        replies = [ftp.getmultiline() for _ in directories]
        if busy := ftp_session.busy_reply(replies):
            raise busy
        made = replies[-1].startswith("2")
        if not made and not self._is_dir(directories[-1]):
            refusal = next(reply for reply in replies if not reply.startswith("2"))
            raise PermissionDenied(f"cannot create {directories[-1]} on {self.settings.where} "
                                   f"({refusal}): check --container and its permissions")
        for directory in directories:
            self._know_dir(directory)
        return made

    def _know_dir(self, remote: str) -> None:
        self._known_dirs.add(remote)

    def _unknown_part(self, remote: str) -> list[str]:
        """``remote`` and its ancestors below the deepest one known to exist, top first."""
        missing = []
        current = remote
        while current.strip("/") and current not in self._known_dirs:
            missing.append(current)
            current = posixpath.dirname(current)
        return missing[::-1]

    def _is_dir(self, remote: str) -> bool:
        ftp = self._client()
        try:
            ftp.cwd(remote)
            return True
        except ftplib.error_perm:
            return False
