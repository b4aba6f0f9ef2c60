"""The parts of a parallel download handed out in order as they arrive, within a byte budget."""

import threading

import testtools

from freezer.errors import StorageError
from freezer.storage.read_ahead import ReadAhead

WAIT = 0.2  # seconds a part that must wait is given to prove it does


def started(pace, count: int) -> tuple[threading.Thread, threading.Event]:
    """``pace(count)`` in a thread of its own, and an event set once it returned."""
    back = threading.Event()
    thread = threading.Thread(target=lambda: (pace(count), back.set()), daemon=True)
    thread.start()
    return thread, back


def block(data: bytes) -> memoryview:
    return memoryview(data)


class TestBudget(testtools.TestCase):
    def test_the_part_next_in_line_never_waits_even_over_the_cap(self):
        ahead = ReadAhead(10, 10)
        thread, back = started(ahead.pacer(0), 25)
        self.assertTrue(back.wait(5))
        thread.join()

    def test_a_later_part_waits_until_the_blocks_before_it_are_taken(self):
        ahead = ReadAhead(10, 100)
        ahead.pacer(0)(6)
        ahead.deliver(0, block(b"x" * 6))
        pace = ahead.pacer(1)
        pace(3)  # 9 held up to part 1: room left
        thread, back = started(pace, 1)  # 10 held: part 1 waits
        self.assertFalse(back.wait(WAIT))
        self.assertEqual(b"x" * 6, bytes(next(ahead.taken(0))))  # taken: part 0 holds nothing
        self.assertTrue(back.wait(5))
        thread.join()

    def test_an_earlier_part_is_not_held_up_by_later_ones(self):
        ahead = ReadAhead(10, 100)
        ahead.pacer(3)(9)
        thread, back = started(ahead.pacer(2), 5)  # parts up to 2 hold 5: no wait, whatever part 3 holds
        self.assertTrue(back.wait(5))
        thread.join()

    def test_parts_that_got_ahead_of_earlier_ones_cap_the_total(self):
        ahead = ReadAhead(10, 12)
        ahead.pacer(3)(9)
        thread, back = started(ahead.pacer(2), 5)  # parts up to 2 hold 5, but all of them 14
        self.assertFalse(back.wait(WAIT))
        ahead.end(0)
        ahead.end(1)
        self.assertEqual([], list(ahead.taken(0)) + list(ahead.taken(1)))
        next_in_line = ahead.taken(2)  # part 2 is next: it never waits
        ahead.end(2)
        self.assertEqual([], list(next_in_line))
        self.assertTrue(back.wait(5))
        thread.join()

    def test_a_new_attempt_lets_go_of_the_block_the_last_was_filling(self):
        ahead = ReadAhead(10, 100)
        ahead.pacer(0)(1)
        thread, back = started(ahead.pacer(1), 9)  # 10 held up to part 1: it waits
        self.assertFalse(back.wait(WAIT))
        ahead.pacer(0)  # part 0 starts again: its byte is gone, 9 held up to part 1
        self.assertTrue(back.wait(5))
        thread.join()

    def test_stopping_ends_every_waiting_part(self):
        ahead = ReadAhead(1, 1)
        ahead.pacer(0)(1)
        ended = []
        waiting = [threading.Thread(target=lambda n=n: ended.append(self.paced_over(ahead, n))) for n in (1, 2)]
        for thread in waiting:
            thread.start()
        for thread in waiting:
            thread.join(WAIT)
        self.assertEqual([], ended)
        ahead.stop()
        for thread in waiting:
            thread.join(5)
        self.assertEqual(["abandoned", "abandoned"], ended)

    def test_once_over_blocks_are_dropped(self):
        ahead = ReadAhead(10, 10)
        ahead.stop()
        ahead.deliver(0, block(b"ab"))
        self.assertEqual(0, ahead.delivered(0))

    @staticmethod
    def paced_over(ahead: ReadAhead, part: int) -> str:
        """Pace ``part`` once; "abandoned" if that raised because the download is over."""
        try:
            ahead.pacer(part)(1)
        except StorageError as exc:
            return "abandoned" if "abandoned" in str(exc) else str(exc)
        return "went on"


class TestHandingOut(testtools.TestCase):
    def test_blocks_come_out_as_they_arrive_and_the_part_ends(self):
        ahead = ReadAhead(10, 10)
        out = ahead.taken(0)
        ahead.deliver(0, block(b"ab"))
        self.assertEqual(b"ab", bytes(next(out)))
        ahead.deliver(0, block(b"cd"))
        ahead.end(0)
        self.assertEqual([b"cd"], [bytes(b) for b in out])

    def test_a_retry_goes_on_from_the_bytes_delivered(self):
        ahead = ReadAhead(10, 10)
        ahead.deliver(4, block(b"abc"))
        self.assertEqual(3, ahead.delivered(4))
        self.assertEqual(0, ahead.delivered(5))

    def test_a_failure_reaches_the_consumer_waiting_for_a_block(self):
        ahead = ReadAhead(10, 10)
        threading.Timer(WAIT, ahead.fail, args=(OSError("cut"),)).start()
        self.assertRaises(OSError, list, ahead.taken(0))

    def test_a_failure_ends_a_waiting_part(self):
        ahead = ReadAhead(1, 1)
        ahead.pacer(0)(1)
        pace = ahead.pacer(1)
        raised = []
        thread = threading.Thread(target=lambda: raised.append(self.assertRaises(StorageError, pace, 1)))
        thread.start()
        thread.join(WAIT)
        self.assertTrue(thread.is_alive())  # waiting
        ahead.fail(OSError("cut"))
        thread.join(5)
        self.assertEqual(1, len(raised))
