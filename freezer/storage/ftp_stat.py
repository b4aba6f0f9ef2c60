"""Several FTP directories listed in one round trip: ``STAT <dir>`` commands pipelined on the control connection.

``STAT`` with a path (RFC 959) answers with the directory's ``ls -l`` listing in the reply itself, so no
data connection is opened and many can be sent before the first reply is read. pyftpdlib, vsftpd and
ProFTPD answer it; a server that does not, or a listing this module cannot read exactly, makes the
caller list those directories one MLSD at a time instead (``Unusable``).
"""

from __future__ import annotations

import contextlib
import ftplib
import logging
import re
import socket
import threading
from collections.abc import Iterator, Sequence

from freezer.storage import ftp_session
from freezer.storage.base import checked_entries

LOG = logging.getLogger("freezer.storage.ftp")

#: bytes of STAT commands written in the caller's thread: far below the socket buffers on both sides,
#: so the write ends even while the server waits for us to read its replies. The rest go from a thread
#: (not counted by ``freezer.testing.counting``, like every ``ftp_session.send_together``).
BATCH_BYTES = 16 << 10
#: one ``ls -l`` line: type and mode, links, owner, group, size, month, day, time or year, then the name
_LS_LINE = re.compile(r"^([-dl])[-rwxsStTl]{9}[.+@]?\s+\d+\s+\S+\s+\S+\s+\d+\s+[A-Za-z]{3}\s+\d{1,2}\s+"
                      r"(?:\d{1,2}:\d{2}|\d{4})\s(.+)$")
_KINDS = {"d": "dir", "-": "file", "l": None}
#: characters a server may take as a glob or an ``ls`` option in STAT's argument: such paths are not batched
_UNSAFE = re.compile(r"[*?\[\]{}~\s\\]|^-|/-")


class Unusable(Exception):
    """The server's STAT replies cannot be taken for listings: list one directory at a time."""


def batchable(remote: str) -> bool:
    """True when ``remote`` means only itself to a server that globs or parses options in STAT."""
    return remote.startswith("/") and not _UNSAFE.search(remote)


def list_dirs(ftp: ftplib.FTP, remotes: list[str]) -> list[list[tuple[str, str | None]]]:
    """(name, 'dir'|'file'|None) of each directory, every STAT sent before the first reply is read: one round
    trip however many. [] when absent. Unusable when a reply is not a listing: the connection is then out of step.
    """
    writer = send_commands(ftp, [f"STAT {remote}" for remote in remotes])
    try:
        return [_listing(_reply(ftp), remote) for remote in remotes]
    except BaseException:
        if writer is not None:
            with contextlib.suppress(OSError):
                ftp.sock.shutdown(socket.SHUT_RDWR)  # frees a blocked writer; the session is out of step anyway
        raise
    finally:
        if writer is not None:
            writer.join()


def send_commands(ftp: ftplib.FTP, commands: list[str]) -> threading.Thread | None:
    """Send ``commands`` without reading replies: ``BATCH_BYTES`` of them in one write, the rest from a thread
    (returned, to join once the replies are read), so that neither side waits for the other to read."""
    if any("\r" in command or "\n" in command for command in commands):
        raise ValueError("an FTP command may not hold a line break")
    first, rest = _split_at(commands, BATCH_BYTES)
    with _corked(ftp.sock):
        for command in first:
            ftp.putcmd(command)
    if not rest:
        return None
    writer = threading.Thread(target=_write_quietly, args=(ftp, rest), name="ftp-commands", daemon=True)
    writer.start()
    return writer


def _split_at(commands: list[str], size: int) -> tuple[list[str], list[str]]:
    """The first commands that fit in ``size`` bytes (at least one), and the others."""
    total = 0
    for count, command in enumerate(commands):
        total += len(command) + 2
        if total > size and count:
            return commands[:count], commands[count:]
    return commands, []


@contextlib.contextmanager
def _corked(sock: socket.socket) -> Iterator[None]:
    """The commands written in the block leave in one segment, not one then the rest a round trip later
    (Nagle's algorithm holds small writes until the first is acknowledged)."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


def _write_quietly(ftp: ftplib.FTP, commands: list[str]) -> None:
    """A writer thread's work: a failed write shows as the reader's failure to get the replies."""
    try:
        ftp_session.send_together(ftp, commands)
    except OSError:
        LOG.debug("writing FTP commands failed", exc_info=True)


def _reply(ftp: ftplib.FTP) -> str:
    """The next reply whole, its code a 4xx or 5xx one included."""
    try:
        return ftp.getresp()
    except (ftplib.error_temp, ftplib.error_perm) as exc:
        return str(exc.args[0]) if exc.args else ""
    except ftplib.Error as exc:
        raise Unusable(str(exc)) from exc


def _listing(reply: str, remote: str) -> list[tuple[str, str | None]]:
    """The entries of one STAT reply; a missing directory (450/550) lists nothing."""
    code = reply[:3]
    if code in ("450", "550"):
        return []
    lines = reply.split("\n")
    if code not in ("211", "212", "213") or len(lines) < 2:
        raise Unusable(f"STAT {remote} answered {reply[:60]!r}")
    entries = []
    for line in lines[1:-1]:
        match = _LS_LINE.match(line.removeprefix(" "))
        if not match:
            raise Unusable(f"STAT {remote} gave a line that is not an ls -l entry: {line[:60]!r}")
        kind = _KINDS[match.group(1)]
        name = match.group(2).partition(" -> ")[0] if match.group(1) == "l" else match.group(2)
        if name not in (".", ".."):
            entries.append((name, kind))
    return entries


class StatListings:
    """The FTP driver's ``listdirs``: STAT listings sent together, one directory at a time where unusable."""

    def listdirs(self, paths: Sequence[str]) -> list[list[str]]:
        """Several directories in one round trip per ``BATCH_BYTES`` of paths, where the server allows."""
        remotes = [self._abs(path) for path in paths]
        if not remotes or not self._stat_lists or not all(map(batchable, remotes)):
            return super().listdirs(paths)
        try:
            listings = list_dirs(self._client(), remotes)
        except Unusable as exc:
            LOG.info("%s: listing one directory at a time (%s)", self.settings.where, exc)
            self.reset()  # replies may still be on their way: the session is out of step
            self._stat_lists = False
            return super().listdirs(paths)
        except BaseException as exc:
            raise self._translate(exc, "list directories") from exc
        names = []
        for remote, entries in zip(remotes, listings, strict=True):
            entries = sorted(checked_entries(entries, remote, self.settings.where))
            if entries:
                self._learn_dirs(remote, entries)
            names.append([name for name, _ in entries])
        return names
