"""Retrying: what is repeated after a transient failure, and what is reported at once instead."""

import functools
import logging

import fixtures
import testtools

from freezer.errors import (
    AuthError,
    ConnectError,
    HostKeyError,
    NotFound,
    PermissionDenied,
    ServerBusy,
    StorageError,
    TLSError,
    Unreachable,
)
from freezer.storage.retry import Retrying


class FlakyUploads:
    """A storage stand-in whose uploads fail with ConnectError, before or after reading data."""

    kind = "test"

    def __init__(self, failures: int, after_reading: bool):
        self.failures = failures
        self.after_reading = after_reading
        self.calls = 0
        self.resets = 0

    def put_stream(self, path: str, chunks) -> int:
        self.calls += 1
        if self.failures and not self.after_reading:
            self.failures -= 1
            raise ConnectError(f"refused, attempt {self.calls}")
        data = b"".join(chunks)
        if self.failures:
            self.failures -= 1
            raise ConnectError(f"server cut the transfer, attempt {self.calls}")
        return len(data)

    def reset(self) -> None:
        self.resets += 1


class TestRetryingUploads(testtools.TestCase):
    def test_failure_before_data_is_retried(self):
        inner = FlakyUploads(failures=2, after_reading=False)
        self.assertEqual(3, Retrying(inner, backoff=0).put_stream("p", iter([b"abc"])))
        self.assertEqual(3, inner.calls)

    def test_failure_after_data_reports_the_first_error_without_retrying(self):
        inner = FlakyUploads(failures=1, after_reading=True)
        error = self.assertRaises(ConnectError, Retrying(inner, backoff=0).put_stream, "p", iter([b"abc"]))
        self.assertIn("server cut the transfer, attempt 1", str(error))
        self.assertEqual(1, inner.calls)

    def test_list_of_chunks_is_replayed(self):
        inner = FlakyUploads(failures=1, after_reading=True)
        self.assertEqual(3, Retrying(inner, backoff=0).put_stream("p", [b"a", b"bc"]))
        self.assertEqual(2, inner.calls)


class FlakyParts:
    """An object-store stand-in: each chunk is one request, sent through ``upload_retry``; the first
    ``failures`` requests drop the connection."""

    kind = "test"

    def __init__(self, failures: int):
        self.failures = failures
        self.requests = 0
        self.stored: list[bytes] = []
        self.resets = 0

    def upload_retry(self, action, request):  # Retrying replaces it with its own loop
        return request()

    def put_stream(self, path: str, chunks) -> int:
        return sum(self.upload_retry(f"upload {path}", functools.partial(self._send, chunk)) for chunk in chunks)

    def put_bytes(self, path: str, data: bytes) -> int:
        return self.put_stream(path, [data])

    def _send(self, chunk: bytes) -> int:
        self.requests += 1
        if self.failures:
            self.failures -= 1
            raise ConnectError(f"dropped, request {self.requests}")
        self.stored.append(chunk)
        return len(chunk)

    def reset(self) -> None:
        self.resets += 1


class TestRetryingEachRequest(testtools.TestCase):
    def test_the_failed_part_of_a_stream_is_sent_again(self):
        inner = FlakyParts(failures=1)
        self.assertEqual(6, Retrying(inner, backoff=0).put_stream("p", iter([b"ab", b"cd", b"ef"])))
        self.assertEqual([b"ab", b"cd", b"ef"], inner.stored)
        self.assertEqual((4, 1), (inner.requests, inner.resets))

    def test_a_failing_request_is_tried_attempts_times_not_more(self):
        inner = FlakyParts(failures=100)
        self.assertRaises(ConnectError, Retrying(inner, backoff=0).put_bytes, "p", b"abc")
        self.assertEqual(3, inner.requests)
        self.assertRaises(ConnectError, Retrying(inner, backoff=0).put_stream, "p", [b"a", b"b"])
        self.assertEqual(6, inner.requests)


class Failing:
    """A storage stand-in whose listing and downloads fail with the given errors, in turn."""

    kind = "test"

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0
        self.offsets = []

    def _next(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def listdir(self, path):
        self._next()
        return ["ok"]

    def listdirs(self, paths):
        self._next()
        return [["ok", path] for path in paths]

    def get_stream(self, path, offset=0):
        self.offsets.append(offset)
        yield b"ab"
        self._next()
        yield b"cd"

    def reset(self):
        pass


class TestWhatIsRetried(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))

    def test_permanent_errors_fail_at_once_without_a_warning(self):
        for error in (Unreachable("refused"), AuthError("530"), HostKeyError("changed"), TLSError("cert"),
                      StorageError("550"), NotFound("gone")):
            inner = Failing(error)
            raised = self.assertRaises(type(error), Retrying(inner, backoff=60).listdir, "")
            self.assertIs(error, raised)
            self.assertEqual(1, inner.calls)
        self.assertEqual("", self.logs.output)

    def test_transient_errors_are_retried(self):
        inner = Failing(ConnectError("timed out"), ServerBusy("421 busy"))
        self.assertEqual(["ok"], Retrying(inner, backoff=0).listdir(""))
        self.assertEqual(3, inner.calls)
        self.assertEqual(2, self.logs.output.count("retrying in"))

    def test_listing_several_directories_is_retried_whole(self):
        inner = Failing(ConnectError("timed out"))
        self.assertEqual([["ok", "a"], ["ok", "b"]], Retrying(inner, backoff=0).listdirs(["a", "b"]))
        self.assertEqual(2, inner.calls)

    def test_download_resumes_after_a_transient_error_only(self):
        inner = Failing(ServerBusy("426 bytes transmitted"))
        self.assertEqual(b"abab" + b"cd", b"".join(Retrying(inner, backoff=0).get_stream("p")))
        self.assertEqual([0, 2], inner.offsets)
        inner = Failing(PermissionDenied("550"))
        self.assertRaises(PermissionDenied, lambda: b"".join(Retrying(inner, backoff=0).get_stream("p")))
        self.assertEqual([0], inner.offsets)


class LostClaimReply:
    """A storage stand-in whose first claim creates the path, then loses the reply."""

    kind = "test"

    def __init__(self):
        self.taken: set[str] = set()
        self.calls = 0

    def claim(self, path: str) -> bool:
        self.calls += 1
        created = path not in self.taken
        self.taken.add(path)
        if self.calls == 1:
            raise ConnectError("reply lost")
        return created

    def reset(self) -> None:
        return None


class TestRetryingClaims(testtools.TestCase):
    def test_claim_is_retried_and_a_lost_reply_reads_as_taken(self):
        inner = LostClaimReply()
        storage = Retrying(inner, backoff=0)
        self.assertFalse(storage.claim("slot"))  # the caller moves on; admin collects the empty slot
        self.assertEqual(2, inner.calls)
        self.assertTrue(storage.claim("next"))
