"""The pure logic of FTP over several connections: options, ranges, segment names, ordered results."""

import socket
import threading
import time

import testtools

from freezer.common.settings import ftp_connections as connections_option
from freezer.errors import StorageError
from freezer.storage import ftp_parallel, ftp_segments
from freezer.storage.ftp_parallel import InOrder, connections_for
from freezer.storage.growth import Growth

S = ftp_segments.RANGE_SIZE


class TestConnectionsOption(testtools.TestCase):
    def test_auto_is_zero_and_numbers_are_capped(self):
        self.assertEqual(0, connections_option("auto"))
        self.assertEqual(0, connections_option(None))
        self.assertEqual(3, connections_option("3"))
        self.assertEqual(ftp_parallel.MAX_CONNECTIONS, connections_for(99, 0.1))

    def test_nonsense_names_the_option(self):
        for value in ("0", "-2", "many"):
            self.assertIn("--ftp-connections", str(self.assertRaises(StorageError, connections_option, value)))

    def test_auto_is_one_on_a_lan_and_several_on_a_long_link(self):
        self.assertEqual(1, connections_for(0, 0.0004))
        self.assertEqual(ftp_parallel.WAN_CONNECTIONS, connections_for(0, 0.1))
        self.assertEqual(2, connections_for(2, 0.0004))


class TestRanges(testtools.TestCase):
    def test_a_file_is_cut_in_segments_the_last_read_to_the_end(self):
        self.assertEqual([("/f", 10, S), ("/f", 10 + S, S), ("/f", 10 + 2 * S, None)],
                         ftp_segments.file_ranges("/f", 10 + 2 * S + 5, 10))

    def test_segments_before_the_offset_are_skipped_and_the_first_read_from_inside(self):
        names = [f"{n * 100:016d}" for n in range(3)]
        self.assertEqual([("/d/0000000000000100", 50, None), ("/d/0000000000000200", 0, None)],
                         ftp_segments.segment_ranges("/d", names, 150))
        self.assertEqual(3, len(ftp_segments.segment_ranges("/d", list(reversed(names)), 0)))

    def test_only_offset_names_starting_at_zero_are_a_segment_listing(self):
        self.assertTrue(ftp_segments.is_segment_listing(["0" * 16, "0000000033554432"]))
        self.assertFalse(ftp_segments.is_segment_listing([]))
        self.assertFalse(ftp_segments.is_segment_listing(["0000000033554432"]))
        self.assertFalse(ftp_segments.is_segment_listing(["0" * 16, "metadata"]))

    def test_parts_are_placed_at_their_offsets(self):
        parts = [[b"ab", b"c"], [b"defg"], []]
        self.assertEqual([(0, [b"ab", b"c"], 3), (3, [b"defg"], 4), (7, [], 0)], list(ftp_segments.placed(parts)))

    def test_a_segment_written_in_place_needs_the_file_to_reach_its_end(self):
        ftp_segments._check_size("213 300", "f", 250, False)  # later segments already landed beyond it
        error = self.assertRaises(StorageError, ftp_segments._check_size, "213 200", "f", 250, False)
        self.assertIn("stored 200 of the 250", str(error))
        self.assertRaises(StorageError, ftp_segments._check_size, "213 300", "f", 250, True)

    def test_the_head_is_let_go_once_handed_out(self):
        head = [b"a", b"b"]
        out = ftp_segments.handed_over(head, iter([b"c"]))
        self.assertEqual(b"a", next(out))
        self.assertEqual([b"b"], head)
        self.assertEqual([b"b", b"c"], list(out))


class TestReceive(testtools.TestCase):
    """A range of a parallel download: blocks of READ_SIZE, each a mapping of its own, paced."""

    def received(self, sends: list[bytes], length: int | None) -> tuple[list[bytes], int, list[int]]:
        self.patch(ftp_segments, "READ_SIZE", 4)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        with theirs:
            for data in sends:
                theirs.sendall(data)
        paced: list[int] = []
        blocks: list[bytes] = []
        got = ftp_segments._receive(ours, length, paced.append, lambda b: blocks.append(bytes(b)))
        return blocks, got, paced

    def test_a_range_stops_at_its_length_in_whole_blocks(self):
        blocks, got, paced = self.received([b"abcdefghij"], 9)
        self.assertEqual(([b"abcd", b"efgh", b"i"], 9), (blocks, got))
        self.assertEqual((0, 9), (paced[0], sum(paced)))

    def test_to_the_end_the_last_block_is_shorter(self):
        blocks, got, paced = self.received([b"ab", b"cdefg"], None)
        self.assertEqual(([b"abcd", b"efg"], 7), (blocks, got))
        self.assertEqual(7, sum(paced))

    def test_a_range_cut_short_delivers_only_whole_blocks(self):
        self.assertEqual(([b"abcd"], 4), self.received([b"abcdef"], 12)[:2])


class FakeWorker:
    cancelled = False


class Gauge:
    """How many jobs are in a state at once, and the most ever, counted from several threads."""

    def __init__(self):
        self.now = self.most = 0
        self.lock = threading.Lock()

    def up(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def down(self) -> None:
        with self.lock:
            self.now -= 1


class TestInOrder(testtools.TestCase):
    def test_results_come_back_in_job_order_whatever_finishes_first(self):
        def run(worker, job):
            time.sleep(0.01 * (5 - job % 5))
            return job * 2

        self.assertEqual([n * 2 for n in range(20)], list(InOrder(iter(range(20)), [FakeWorker()] * 4, run, 4)))

    def test_no_more_than_ahead_jobs_are_held(self):
        held = Gauge()

        def run(worker, job):
            held.up()
            time.sleep(0.005)
            return job

        for _ in InOrder(iter(range(30)), [FakeWorker()] * 6, run, 3):
            held.down()
        self.assertLessEqual(held.most, 3)

    def test_held_until_done_a_slow_job_does_not_stop_the_others(self):
        later_done = threading.Event()

        def run(worker, job):
            if job == 0:
                self.assertTrue(later_done.wait(5), "job 0 waited for jobs that were never taken")
            if job == 5:
                later_done.set()
            return job

        jobs = InOrder(iter(range(8)), [FakeWorker()] * 2, run, 2, held_until_done=True)
        self.assertEqual(list(range(8)), list(jobs))

    def test_held_until_done_still_bounds_the_jobs_in_flight(self):
        running = Gauge()

        def run(worker, job):
            running.up()
            time.sleep(0.005)
            running.down()
            return job

        self.assertEqual(list(range(30)), list(InOrder(iter(range(30)), [FakeWorker()] * 6, run, 3,
                                                        held_until_done=True)))
        self.assertLessEqual(running.most, 3)

    def test_a_failure_is_raised_to_the_consumer(self):
        def run(worker, job):
            if job == 3:
                raise StorageError("segment 3 broke")
            return job

        error = self.assertRaises(StorageError, list, InOrder(iter(range(10)), [FakeWorker()] * 2, run, 2))
        self.assertIn("segment 3", str(error))

    def test_a_failing_producer_is_raised_to_the_consumer(self):
        def jobs():
            yield 1
            raise ValueError("tar broke")

        self.assertRaises(ValueError, list, InOrder(jobs(), [FakeWorker()] * 2, lambda w, j: j, 2))


class Clock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


MIB = 1 << 20


def rounds(growth: Growth, size: int, ends: int, took: float = 1.0) -> list[int]:
    """What ``growth`` wants after each of ``ends`` segment ends (each took ``took`` s), on ``size`` connections."""
    return [growth.wanted(size, took) for _ in range(ends)]


def growth(cap: int = 16, step: float = 1.0, round_trip: float = 0.1) -> tuple[Growth, Clock]:
    """A Growth of 32 MiB segments over a ``round_trip`` link, on a clock moving ``step`` s a read."""
    clock = Clock(step)
    return Growth(lambda n: [], round_trip, 32 * MIB, cap=cap, clock=clock), clock


class TestGrowth(testtools.TestCase):
    def test_connections_that_keep_a_window_in_flight_double_at_the_first_end(self):
        grow, _ = growth()
        # 32 MiB in 1 s at 100 ms: 3.2 MiB in flight each; the connections started together
        self.assertEqual([8], rounds(grow, 4, 1))

    def test_connections_sharing_a_full_line_do_not(self):
        grow, _ = growth(round_trip=0.04)
        # 32 MiB in 2 s at 40 ms: 0.64 MiB in flight each, the line is what limits
        self.assertEqual([4] * 5, rounds(grow, 4, 5, took=2.0))
        self.assertTrue(grow.settled)

    def test_a_doubling_that_did_not_pay_is_the_last(self):
        grow, clock = growth()
        rounds(grow, 4, 1)  # 4 connections, 1 s a segment: 4 segments/s
        grow.joined(8)
        clock.step = 0.25  # then 8 ends in 2 s: 4 segments/s, no faster
        self.assertEqual([8] * 9, rounds(grow, 8, 9))
        self.assertTrue(grow.settled)
        self.assertEqual([8] * 20, rounds(grow, 8, 20))

    def test_it_doubles_again_while_that_pays(self):
        grow, clock = growth()
        rounds(grow, 4, 1)
        grow.joined(8)
        clock.step = 0.125  # 8 ends in 1 s: twice the rate
        self.assertEqual([8] * 8 + [16], rounds(grow, 8, 9))

    def test_later_doublings_are_timed_over_a_round(self):
        grow, clock = growth()
        rounds(grow, 4, 1)
        grow.joined(8)
        clock.step = 0.125
        self.assertEqual([8] * 5, rounds(grow, 8, 5))  # fewer ends than connections: not yet
        self.assertFalse(grow.settled)

    def test_a_faster_round_of_connections_sharing_the_line_does_not_double_again(self):
        grow, clock = growth(round_trip=0.04)
        self.assertEqual([2], rounds(grow, 1, 1, took=0.3))  # one connection, 4.3 MiB in flight
        grow.joined(4)
        clock.step = 0.1  # 4 ends in 0.4 s: faster, but 32 MiB in 2 s is 0.64 MiB in flight each
        self.assertEqual([4] * 5, rounds(grow, 4, 5, took=2.0))
        self.assertTrue(grow.settled)

    def test_never_beyond_the_cap_and_settled_there(self):
        grow, _ = growth(cap=8)
        self.assertEqual([8] * 10, rounds(grow, 8, 10))
        grow, _ = growth(cap=6)
        self.assertEqual([6], rounds(grow, 4, 1))
        grow.joined(6)
        self.assertTrue(grow.settled)


class Eager(Growth):
    """Doubles after every end, whatever the rate: InOrder's side of growing, without timing."""

    def wanted(self, size: int, took: float) -> int:
        return size if self.settled else min(self.cap, 2 * size)


class TestInOrderGrowing(testtools.TestCase):
    def test_workers_join_midway_and_results_stay_in_order(self):
        crew = [FakeWorker() for _ in range(8)]
        asked = []

        def more(wanted):
            asked.append(wanted)
            return crew[:wanted]

        used = set()
        held = Gauge()

        workers = crew[:2]

        def run(worker, job):
            used.add(id(worker))
            held.up()
            deadline = time.monotonic() + 5
            while job >= 10 and len(workers) < 8 and time.monotonic() < deadline:  # a loaded machine
                time.sleep(0.001)
            time.sleep(0.002)
            return job

        jobs = InOrder(iter(range(60)), workers, run, 2, growth=Eager(more, 0.1, MIB, cap=8))
        for _ in jobs:
            held.down()
        self.assertEqual([4, 8], asked[:2])
        self.assertEqual(8, len(workers))  # grown in place, for the caller to see
        self.assertGreater(len(used), 2)
        self.assertLessEqual(held.most, 8)

    def test_a_server_that_takes_no_more_settles_the_growth(self):
        crew = [FakeWorker() for _ in range(2)]
        asked = threading.Event()

        def more(wanted):
            asked.set()
            return crew

        def run(worker, job):
            if job == 1:
                self.assertTrue(asked.wait(5), "no growth asked for")
            return job

        growth = Eager(more, 0.1, MIB, cap=8)
        self.assertEqual(list(range(40)), list(InOrder(iter(range(40)), list(crew), run, 2, growth=growth)))
        for _ in range(500):  # the growth thread ends on its own, after the transfer maybe
            if growth.settled:
                break
            time.sleep(0.01)
        self.assertTrue(growth.settled)


class TestInOrderLateWorkers(testtools.TestCase):
    """Workers busy with a transfer's opening join it when free; their opening segment counts for growth."""

    def test_late_workers_join_when_free_and_results_stay_in_order(self):
        early, late = FakeWorker(), FakeWorker()
        gate = threading.Event()
        used = []

        def run(worker, job):
            used.append((worker, job))
            if job == 5:
                gate.set()  # the late worker's opening segment ends now
                deadline = time.monotonic() + 5
                while late not in [w for w, _ in used] and time.monotonic() < deadline:
                    time.sleep(0.001)  # the early worker waits for the late one to take a job
            return job

        def when_free():
            self.assertTrue(gate.wait(5))
            return 1.0

        jobs = InOrder(iter(range(20)), [early], run, 1, late=[(late, when_free)])
        self.assertEqual(list(range(20)), list(jobs))
        first_late = next(job for worker, job in used if worker is late)
        self.assertGreater(first_late, 5)  # nothing before it was free
        self.assertEqual([early, late], jobs.workers)

    def test_an_opening_that_failed_fails_the_transfer(self):
        def failed():
            raise StorageError("the lead failed")

        jobs = InOrder(iter(range(5)), [], lambda worker, job: job, 0, late=[(FakeWorker(), failed)])
        error = self.assertRaises(StorageError, list, jobs)
        self.assertEqual("the lead failed", str(error))

    def test_an_opening_segment_counts_as_an_end_for_growth(self):
        asked = threading.Event()

        def more(wanted):
            asked.set()
            return []

        growth = Growth(more, 0.1, 32 * MIB, cap=8)  # 32 MiB in 1 s at 100 ms: 3.2 MiB in flight
        late = FakeWorker()

        def run(worker, job):
            if job == 0:
                self.assertTrue(asked.wait(5), "no growth asked for on the opening's end")
            return job

        self.assertEqual(list(range(3)), list(InOrder(iter(range(3)), [FakeWorker()], run, 1, growth=growth,
                                                      late=[(late, lambda: 1.0)])))
