"""The first large FTP upload of a session under auto: its own first two segments probe the server.

A plain STOR of the temporary file (the *lead*) sends the first segment, all but its last byte.
Once the server has opened the file, a second connection asks for REST at the first segment's end
and STOR of the same file: an offset beyond anything written yet. Its 150 within the patience means
writers work together: the second segment goes there and the rest in place
(``ftp_segments.store_in_place``). A refusal (pyftpdlib) or no 150 in time (a lock, vsftpd's
default) means one writer at a time: the lead goes on with everything, in order, as auto's one
stream. No scratch file, and no round trip is spent on the probe alone.
"""

from __future__ import annotations

import contextlib
import enum
import ftplib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from freezer.errors import StorageError
from freezer.storage import ftp_segments as segments
from freezer.storage.ftp_client import FtpSettings
from freezer.storage.ftp_errors import server_reason, translate
from freezer.storage.ftp_parallel import Worker
from freezer.storage.ftp_session import finish_upload, protected, read_mark, send_upload, start_transfer
from freezer.storage.growth import Growth

LOG = logging.getLogger("freezer.storage.ftp")
STOP_WAIT = 5.0  # seconds a failed upload waits for the opening's threads before the caller cleans up


class OffsetWrites(enum.Enum):
    """What the probe found: how the server takes segments written at their offsets."""

    REFUSED = "refuses writes at an offset"
    IN_TURN = "takes writes at an offset one writer at a time"
    TOGETHER = "takes writes at an offset from several writers at once"


class Background:
    """``work()`` in a thread of its own (``start``); ``result()`` waits for it and raises what it raised."""

    def __init__(self):
        self.work: Callable[[], int] | None = None
        self.value, self.error = 0, None
        self.took = 0.0  # seconds, once done
        self.conn: socket.socket | None = None  # the data connection it sends on, for stop()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, work: Callable[[], int]) -> None:
        self.work = work
        self.thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.value = self.work()
        except BaseException as exc:  # raised in result(), in the caller's thread
            self.error = exc
        finally:
            self.work = None  # what it held (a segment) goes now
            self.took = time.monotonic() - started

    def result(self) -> int:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value

    def segment_took(self) -> float:
        """Once done, the seconds its segment took (growth counts it as a segment end)."""
        self.result()
        return self.took

    def stop(self) -> None:
        """Cut its data connection (a send blocked on it fails) and wait a while for it to end."""
        self.stopping = True
        if (conn := self.conn) is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(STOP_WAIT)


class Lead:
    """The plain STOR that opens the file: the first segment but its last byte, then what the verdict says."""

    def __init__(self, worker: Worker, remote: str, first: list[bytes], after: Iterable[list[bytes]],
                 settings: FtpSettings):
        self.worker, self.remote, self.first, self.after, self.settings = worker, remote, first, after, settings
        self.opened = threading.Event()  # the server answered 150 (or the lead failed: ``started`` says)
        self.started = False
        self.decided = threading.Event()
        self.alone = True  # whether the lead sends everything (set before ``decided``)
        self.run = Background()
        self.run.start(self._attempts)

    def decide(self, alone: bool) -> None:
        """Let the lead send its held byte and then, ``alone``, everything else; else end there."""
        self.alone = alone
        if not alone:
            self.after = ()  # the second segment goes elsewhere: not held here
        self.decided.set()

    def stop(self) -> None:
        """The upload failed elsewhere: end the lead's STOR where it is, and wait a while for it."""
        self.run.stopping = True
        self.decide(alone=False)
        self.run.stop()

    def _attempts(self) -> int:
        try:
            return segments.attempts(self.worker, self.settings, f"upload {self.remote}", self._store,
                                     may_retry=lambda: not self.opened.is_set() and not self.run.stopping)
        finally:
            self.opened.set()

    def _store(self, ftp: ftplib.FTP) -> int:
        conn = self.run.conn = start_transfer(ftp, f"STOR {self.remote}")
        self.started = True
        self.opened.set()
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, segments.SOCKET_BUFFER)
            body = [chunk for chunk in self.first if chunk]
            last = memoryview(body.pop())
            for chunk in body:
                conn.sendall(chunk)
            conn.sendall(last[:-1])  # the file stays short of the second writer's offset until the verdict
            self.decided.wait()
            conn.sendall(last[-1:])
            written = sum(map(len, body)) + len(last)
            del body, last
            self.first = []
            for part in self.after if self.alone else ():
                for chunk in part:
                    if self.run.stopping:
                        raise StorageError(f"upload {self.remote} stopped: another connection failed")
                    conn.sendall(chunk)
                    written += len(chunk)
        except OSError as exc:
            conn.close()  # before waiting for the server's reason: it answers once the data connection ends
            raise server_reason(ftp) or exc
        except BaseException:
            conn.close()
            raise
        finish_upload(ftp, conn)
        return written


def second_writer(worker: Worker, remote: str, offset: int,
                  patience: float) -> tuple[OffsetWrites | None, socket.socket | None]:
    """REST ``offset`` + STOR of ``remote``, which another connection holds open: the verdict, and
    the data connection when writers work together. None: no answer to go by (a transient failure)."""
    try:
        ftp = worker.client()
        conn = start_transfer(ftp, f"STOR {remote}", rest=offset, mark=False)
    except ftplib.error_reply as exc:  # the REST refused (the reply is its own)
        return (OffsetWrites.REFUSED if str(exc)[:1] == "5" else None), None
    except (StorageError, ftplib.Error, OSError, EOFError) as exc:  # StorageError: a login that failed
        LOG.debug("probe: the second writer failed: %s", exc)
        return None, None
    try:
        if not ftp.reply_within(patience):
            conn.close()
            return OffsetWrites.IN_TURN, None
        if not read_mark(ftp):
            conn.close()
            return None, None
        return OffsetWrites.TOGETHER, protected(ftp, conn)
    except ftplib.error_perm:
        conn.close()
        return OffsetWrites.REFUSED, None
    except (ftplib.Error, OSError, EOFError) as exc:
        LOG.debug("probe: the second writer failed: %s", exc)
        conn.close()
        return None, None


def _second_segment(worker: Worker, conn: socket.socket, remote: str, held: list[list[bytes]], offset: int,
                    settings: FtpSettings, run: Background) -> int:
    """The second writer's segment (taken from ``held``), on the connection its 150 opened; sent
    again (REST, STOR) on a fresh connection if cut."""
    part = held.pop()
    run.conn = conn
    try:
        return _send_segment(worker.client(), conn, part)
    except BaseException as exc:
        worker.drop()
        error = translate(exc, f"upload {remote} at {offset}", settings)
        if not isinstance(error, StorageError) or not error.transient or run.stopping:
            raise error from exc
        LOG.warning("upload %s at %d: %s; retrying this segment", remote, offset, error)
        return segments.store_at(worker, remote, part, offset, settings)


def _send_segment(ftp: ftplib.FTP, conn: socket.socket, part: list[bytes]) -> int:
    written = send_upload(ftp, conn, part, segments.SOCKET_BUFFER)
    ftp.voidresp()
    return written


def upload_opening(workers: list[Worker], remote: str, parts: Iterator[list[bytes]], settings: FtpSettings,
                   patience: float, growth: Callable[[], Growth | None]) -> tuple[OffsetWrites | None, int]:
    """Upload ``parts`` (two segments at least) into ``remote``, probing with them; the verdict and bytes written.

    On any failure the opening's threads are stopped and waited for before it is raised, so the
    caller's clean-up does not race a STOR still writing the file.
    """
    first, second = next(parts), next(parts)
    offset = sum(map(len, first))
    for worker in workers:
        worker.unchecked = None
    lead = Lead(workers[0], remote, first, _chain(second, parts), settings)
    helper: list[Background] = []
    del first
    try:
        lead.opened.wait()
        verdict, conn = second_writer(workers[1], remote, offset, patience) if lead.started else (None, None)
        if verdict is not OffsetWrites.TOGETHER:
            workers[1].drop()  # its STOR may still wait for the lead's lock
            del second
            lead.decide(alone=True)
            return verdict, lead.run.result()
        lead.decide(alone=False)
        start = offset + sum(map(len, second))
        helper.append(Background())
        helper[0].start(functools.partial(_second_segment, workers[1], conn, remote, [second], offset, settings,
                                          helper[0]))
        del second
        late = [(workers[0], lead.run.segment_took), (workers[1], helper[0].segment_took)]
        rest = segments.store_in_place(workers[2:], remote, parts, settings, growth(), start=start, late=late)
        return verdict, lead.run.result() + helper[0].result() + rest
    except BaseException:
        lead.stop()
        for run in helper:
            run.stop()
        raise


def _chain(part: list[bytes], rest: Iterable[list[bytes]]) -> Iterator[list[bytes]]:
    """``part``, then ``rest``; ``part`` is let go of once handed out."""
    held = [part]
    del part
    yield held.pop()
    yield from rest
