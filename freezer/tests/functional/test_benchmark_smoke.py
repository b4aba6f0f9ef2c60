"""The benchmark harness runs end to end on a few MiB (no timing is asserted)."""

import testtools

from benchmarks import run


class TestBenchmarkSmoke(testtools.TestCase):
    def test_harness_measures_every_storage(self):
        self.patch(run, "REPEAT", 1)
        rows = run.measure(4)
        self.assertEqual({"local", "ftp", "sftp"}, {r["storage"] for r in rows})
        self.assertTrue(all(r["seconds"] > 0 for r in rows))
