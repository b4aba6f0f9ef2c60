"""Which directories of an FTP server exist, learnt from listings, so making a path costs few round trips."""

from __future__ import annotations

import ftplib
import posixpath

from freezer.errors import PermissionDenied
from freezer.storage.ftp_errors import reply_of


class KnownDirectories:
    """Mixin of the FTP driver: ``_known_dirs`` and ``_absent_dirs`` kept, MKD and CWD spent sparingly.

    The driver provides ``_client()`` and ``settings``.
    """

    _known_dirs: set[str]
    _absent_dirs: set[str]

    def _learn_dirs(self, remote: str, entries: list[tuple[str, str | None]]) -> None:
        """A directory that could be listed exists, and so do its ancestors and its typed subdirectories."""
        current = remote
        while current not in ("", "/") and current not in self._known_dirs:
            self._know_dir(current)
            current = posixpath.dirname(current)
        self._known_dirs.update(posixpath.join(remote, name) for name, kind in entries if kind == "dir")

    def _makedirs(self, remote: str) -> None:
        """Make ``remote`` and its parents, spending round trips only on directories not known to exist.

        With more than one unknown (none known absent), MKD the deepest first: most backups find all but
        the last there.
        """
        missing = self._unknown_part(remote)
        if not missing:
            return
        if len(missing) > 1 and self._absent_dirs.isdisjoint(missing):
            try:
                self._client().mkd(remote)
                self._know_dir(remote)
                return
            except ftplib.error_perm:
                if self._is_dir(remote):
                    self._know_dir(remote)
                    return
        for current in missing:
            self._make_one(current)

    def _know_dir(self, remote: str) -> None:
        self._known_dirs.add(remote)
        self._absent_dirs.discard(remote)

    def _unknown_part(self, remote: str) -> list[str]:
        """``remote`` and its ancestors below the deepest one known to exist, top first."""
        missing = []
        current = remote
        while current.strip("/") and current not in self._known_dirs:
            missing.append(current)
            current = posixpath.dirname(current)
        return missing[::-1]

    def _make_one(self, remote: str) -> None:
        try:
            self._client().mkd(remote)
        except ftplib.error_perm as exc:
            if not self._is_dir(remote):
                raise PermissionDenied(f"cannot create {remote} on {self.settings.where} "
                                       f"({reply_of(exc)}): check --container and its permissions") from exc
        self._know_dir(remote)

    def _is_dir(self, remote: str) -> bool:
        ftp = self._client()
        try:
            ftp.cwd(remote)
            return True
        except ftplib.error_perm:
            return False
