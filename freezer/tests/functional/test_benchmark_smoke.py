"""The benchmark harness runs end to end on a few MiB (no timing is asserted)."""

import subprocess
import sys

import fixtures
import testtools

from benchmarks import prime, run, stages
from benchmarks.server_cpu import ServerCpu


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
        served = [r for r in rows if r["storage"] in ("ftps", "sftp")]
        self.assertTrue(all(r["server_cpu_s"] >= 0 for r in served))
        agent = [r for r in served if r["what"].startswith("freezer ")]
        self.assertTrue(all("transport_server_cpu_s" in r for r in agent))

    def test_server_cpu_counts_the_processes_below_the_server(self):
        spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
        busy = f"{sys.executable} -c '{spin}'"
        server = subprocess.Popen(["sh", "-c", f"{busy}; true"])
        with ServerCpu(server.pid, interval=0.05) as cpu:
            server.wait()
        self.assertGreater(cpu.seconds(), 0.2)

    def test_priming_writes_and_frees_memory(self):
        prime.prime_memory(8)
        prime.prime_memory(0)  # a stream too small to round to a MiB
        self.assertGreater(prime.free_mib(), 0)

    def test_every_timed_row_has_its_cpu_and_agent_rows_their_floor(self):
        rows = run.measure(4, repeat=1, with_peers=False, storages=("local",))
        self.assertTrue(all(r["cpu_s"] > 0 for r in rows if r["storage"] == "any" or r["what"].startswith("freezer")))
        agent = [r for r in rows if r["what"].startswith("freezer ") and "floor_s" in r and r["floor_s"]]
        self.assertEqual(12, len(agent))  # six configurations, backup and restore
        self.assertTrue(all(r["x_floor"] and r["sha256_cpu_s"] > 0 and r["tar_cpu_s"] > 0 for r in agent))
        self.assertTrue(all(r["codec_cpu_s"] > 0 for r in agent if r["what"] != "freezer none"))
        table = run.table(rows).splitlines()[0]
        self.assertIn("CPU s", table)
        self.assertIn("x floor", table)

    def test_stages_each_report_their_cpu(self):
        work = self.useFixture(fixtures.TempDir()).path
        measured = stages.measure(work, 2, 1)
        self.assertIn("tar --create as the agent runs it", measured)
        self.assertIn("Python: file to pipe (restore's copy)", measured)
        self.assertTrue(all(seconds >= 0 for seconds in measured.values()))
        self.assertGreater(measured["agent start-up (--version)"], 0)

    def test_wan_rows_compare_the_agent_with_the_raw_transport_over_the_same_link(self):
        rows = run.measure(2, repeat=1, with_peers=False, storages=(), wan_links=("10ms,800mbit,4mib",),
                         wan_size_mib=2)
        wan_rows = [r for r in rows if r["storage"] in ("ftp-wan", "sftp-wan")]
        self.assertEqual({"ftplib storbinary (raw)", "ftplib retrbinary (raw)", "OpenSSH sftp put (raw)",
                          "OpenSSH sftp get (raw)", "freezer none", "freezer zstd"}, {r["what"] for r in wan_rows})
        self.assertTrue(all(r["x_raw"] for r in wan_rows if r["what"].startswith("freezer")))
        self.assertIn("link=10ms,800mbit,4mib", run.table(rows))

    def test_wan_ftp_rows_can_use_vsftpd_with_its_own_raw_row(self):
        rows = run.measure(2, repeat=1, with_peers=False, storages=(), wan_links=("10ms,800mbit,4mib",),
                           wan_size_mib=2, wan_storages=("ftp-vsftpd", "ftp"), compressions=("none",))
        ftp_rows = [r for r in rows if r["storage"].endswith("-wan")]
        self.assertEqual(["vsftpd-wan"] * 4 + ["ftp-wan"] * 4, [r["storage"] for r in ftp_rows])
        self.assertEqual(["ftplib storbinary (raw)", "ftplib retrbinary (raw)", "freezer none", "freezer none"],
                         [r["what"] for r in ftp_rows[:4]])
        self.assertTrue(all(r["x_raw"] for r in ftp_rows if r["what"].startswith("freezer")))
