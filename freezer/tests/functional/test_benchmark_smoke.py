"""The benchmark harness runs end to end on a few MiB (no timing is asserted)."""

import testtools

from benchmarks import run


class TestBenchmarkSmoke(testtools.TestCase):
    def test_harness_measures_every_storage(self):
        rows = run.measure(4, repeat=1, with_peers=False, rss_check_mib=4, storages=("local", "ftps", "sftp"))
        self.assertEqual({"any", "local", "ftps", "sftp"}, {r["storage"] for r in rows})
        self.assertTrue(all(r["seconds"] > 0 for r in rows))
        self.assertEqual({"backup", "restore"}, {r["op"] for r in rows})
        self.assertIn("freezer zstd-enc", {r["what"] for r in rows})
        self.assertTrue(all(r["peak_rss_mib"] for r in rows if r["what"].startswith("freezer")))
        self.assertIn("x bound", run.table(rows))
        self.assertTrue(any(r["x_bound"] for r in rows if r["what"] == "freezer none"))
