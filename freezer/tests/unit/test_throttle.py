"""The token bucket behind --upload-limit / --download-limit, on a simulated clock."""

import testtools

from freezer.storage.throttle import TokenBucket, paced


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class TestTokenBucket(testtools.TestCase):
    def test_paced_stream_takes_size_over_rate(self):
        clock = FakeClock()
        bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
        out = b"".join(paced([b"x" * 3000, b"y" * 2000], bucket))
        self.assertEqual(5000, len(out))
        self.assertAlmostEqual(5.0, clock.now - 100.0, places=6)

    def test_idle_time_buys_only_a_small_burst(self):
        clock = FakeClock()
        bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
        bucket.take(1)
        clock.now += 60  # a minute with nothing to send
        before = clock.now
        bucket.take(1000)
        self.assertAlmostEqual(0.9, clock.now - before, places=6)  # 0.1 s of burst, not 60 s

    def test_pieces_are_small(self):
        bucket = TokenBucket(1 << 30)
        self.assertEqual(64 * 1024, bucket.piece_size())
        self.assertEqual(51, TokenBucket(1024).piece_size())
