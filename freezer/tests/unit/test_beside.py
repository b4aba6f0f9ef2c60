"""Work beside the caller's on a sibling storage, and its fallback to the caller's thread."""

import threading

import testtools

from freezer.storage.beside import Beside
from freezer.storage.retry import Retrying
from freezer.storage.throttle import Throttled


class FakeStorage:
    """Hands out ``twin`` as its sibling; counts closes."""

    kind = "fake"

    def __init__(self, twin=None):
        self.twin = twin
        self.closed = 0

    def sibling(self):
        return self.twin

    def close(self):
        self.closed += 1


class TestBeside(testtools.TestCase):
    def test_the_work_runs_on_the_sibling_in_another_thread_and_the_sibling_is_closed(self):
        twin = FakeStorage()
        seen, fallbacks = [], []
        beside = Beside(FakeStorage(twin), lambda s: seen.append((s, threading.current_thread().name)),
                        lambda: fallbacks.append(1))
        beside.finish()
        self.assertEqual(([(twin, "beside")], [], 1), (seen, fallbacks, twin.closed))

    def test_without_a_sibling_the_work_is_done_at_finish_in_the_callers_thread(self):
        fallbacks = []
        beside = Beside(FakeStorage(None), lambda s: self.fail("no sibling"), lambda: fallbacks.append(1))
        self.assertEqual([], fallbacks)
        beside.finish()
        self.assertEqual([1], fallbacks)

    def test_a_failure_on_the_sibling_is_done_again_at_finish(self):
        def broken(storage):
            raise OSError("connection lost")

        fallbacks = []
        twin = FakeStorage()
        Beside(FakeStorage(twin), broken, lambda: fallbacks.append(1)).finish()
        self.assertEqual(([1], 1), (fallbacks, twin.closed))

    def test_abandoned_it_is_waited_for_and_never_done_again(self):
        started, release, fallbacks = threading.Event(), threading.Event(), []

        def slow(storage):
            started.set()
            release.wait(5)
            raise OSError("late")

        beside = Beside(FakeStorage(FakeStorage()), slow, lambda: fallbacks.append(1))
        started.wait(5)
        release.set()
        beside.abandon()
        self.assertEqual(([], False), (fallbacks, beside.thread.is_alive()))


class TestWrappersSibling(testtools.TestCase):
    def test_retries_pass_the_bare_drivers_sibling(self):
        twin = FakeStorage()
        self.assertIs(twin, Retrying(FakeStorage(twin)).sibling())

    def test_a_limit_gets_no_sibling(self):
        twin = FakeStorage()
        self.assertIsNone(Throttled(FakeStorage(twin), 1000, None).sibling())
        self.assertIs(twin, Throttled(FakeStorage(twin), None, None).sibling())
