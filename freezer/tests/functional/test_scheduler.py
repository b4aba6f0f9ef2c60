"""freezer-scheduler run-once with the spec's job documents against real servers."""

import json
import os
import subprocess
import sys
import time

from freezer.tests import servers
from freezer.tests.functional.base import AgentTestCase, write
from freezer.tests.sshd import Sshd

SCHEDULER = os.path.join(os.path.dirname(sys.executable), "freezer-scheduler")

# The spec's first example as written, trailing comma included.
SPEC_FTPS_JOB = """{
    "description": "Test-0001",
    "job_schedule": {
        "schedule_interval": "5 minutes",
        "status": "scheduled",
        "event": "start"
    },
    "job_actions": [
        {
            "max_retries": 5,
            "max_retries_interval": 6,
            "freezer_action": {
                "backup_name": "test0001_backup",
                "storage": "ftps",
                "ftp_host": "192.177.10.44",
                "ftp_username": "ftpstest",
                "ftp_password": "pass_test",
                "ftp_port": 21,
                "container": "/home/ftpstest",
                "no_incremental": true,
                "path_to_backup": "/etc/",
                "log_file": "/home/ftp_data/job0001.log",
                "snapshot": true,
                "action": "backup",
                "remove_older_than": 10,
            }
        }
    ]
}"""


def spec_job(name: str, storage: str, server, source: str, log_file: str, **extra) -> dict:
    """One of the spec's three jobs (trailing comma gone), pointed at a test server."""
    action = {"backup_name": name, "storage": storage, "ftp_host": "127.0.0.1", "ftp_username": server.username,
              "ftp_password": server.password, "ftp_port": server.port, "container": "backups",
              "no_incremental": True, "path_to_backup": source, "log_file": log_file, "snapshot": False,
              "action": "backup", "remove_older_than": 10}
    action.update(extra)
    return {"description": "Test-0001",
            "job_schedule": {"schedule_interval": "5 minutes", "status": "scheduled", "event": "start"},
            "job_actions": [{"max_retries": 5, "max_retries_interval": 6, "freezer_action": action}]}


class SchedulerTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.jobs = os.path.join(self.tmp, "jobs")
        os.makedirs(self.jobs)
        write(f"{self.source}/etc/hosts", "127.0.0.1 localhost\n")

    def add_job(self, name: str, job) -> str:
        path = os.path.join(self.jobs, name)
        write(path, job if isinstance(job, str) else json.dumps(job, indent=2))
        return path

    def run_once(self, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([SCHEDULER, "--no-api", "--jobs-dir", self.jobs, "run-once"],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(expect, proc.returncode, proc.stderr)
        return proc

    def state(self, path: str) -> dict:
        with open(path + ".state") as handle:
            return json.load(handle)


class TestSpecJobs(SchedulerTest):
    def test_the_three_spec_jobs_run_against_ftp_ftps_and_sftp(self):
        ftps = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "s1"), True))
        ftp = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "s2")))
        sftp = self.useFixture(Sshd(os.path.join(self.tmp, "s3")))
        log = os.path.join(self.tmp, "job.log")
        paths = [
            self.add_job("1-ftps.json", spec_job("test0001_backup", "ftps", ftps, self.source, log,
                                                 ftp_cacert=ftps.ca.ca_file)),
            self.add_job("2-ftp.json", spec_job("test0002_backup", "ftp", ftp, self.source, log)),
            self.add_job("3-sftp.json", spec_job("test0003_backup", "sftp", sftp, self.source, log,
                                                 container=sftp.container(), ssh_known_hosts=sftp.known_hosts)),
        ]
        self.run_once()
        for path in paths:
            state = self.state(path)
            self.assertEqual("completed", state["status"])
            self.assertEqual(0, state["actions"][0]["result"]["level"])
            self.assertNotIn("pw-freezer", json.dumps(state))
        for root in (ftps.root + "/backups", ftp.root + "/backups", sftp.container()):
            self.assertTrue(any("metadata" in files for _, _, files in os.walk(os.path.join(root, "metadata"))))
        self.assertTrue(os.path.exists(log))

    def test_snapshot_true_fails_clearly(self):
        server = self.useFixture(servers.PyFtpd(self.tmp))
        path = self.add_job("job.json", spec_job("b", "ftp", server, self.source, self.tmp + "/log",
                                                 snapshot=True))
        job = json.load(open(path))
        job["job_actions"][0]["max_retries"] = 0
        self.add_job("job.json", job)
        self.run_once(expect=1)
        self.assertIn("--snapshot", self.state(path)["actions"][0]["error"])


class TestRetriesAndFailures(SchedulerTest):
    def test_retries_until_server_accepts(self):
        # 421 is transient: the agent itself tries 3 connections, then the scheduler runs it again.
        server = self.useFixture(servers.PyFtpd(self.tmp, False, "--refuse-first", "3"))
        job = spec_job("b", "ftp", server, self.source, self.tmp + "/log")
        job["job_actions"][0].update(max_retries=3, max_retries_interval=0.2)
        path = self.add_job("job.json", job)
        self.run_once()
        self.assertEqual(2, self.state(path)["actions"][0]["attempts"])

    def test_failure_skips_unless_mandatory(self):
        server = self.useFixture(servers.PyFtpd(self.tmp))
        bad = spec_job("b", "ftp", server, self.source, self.tmp + "/log", ftp_password="wrong-pw-77")
        local = {"action": "backup", "storage": "local", "container": self.tmp + "/local",
                 "backup_name": "c", "path_to_backup": self.source}
        bad["job_actions"][0].update(max_retries=1, max_retries_interval=0)
        bad["job_actions"] += [{"freezer_action": local}, {"freezer_action": local, "mandatory": True}]
        path = self.add_job("job.json", bad)
        self.run_once(expect=1)
        actions = self.state(path)["actions"]
        self.assertEqual(["failed", "skipped", "completed"], [a["status"] for a in actions])
        self.assertEqual(2, actions[0]["attempts"])
        self.assertIn("--ftp-password", actions[0]["error"])
        self.assertNotIn("wrong-pw-77", json.dumps(actions))


class _NoServer:
    username, password, port = "u", "p", 21


class TestMalformedJobs(SchedulerTest):
    def test_spec_example_as_written_is_refused_before_anything_runs(self):
        self.add_job("a-good.json", spec_job("b", "ftp", _NoServer, self.source, "x"))
        path = self.add_job("b-spec.json", SPEC_FTPS_JOB)
        proc = self.run_once(expect=2)
        self.assertIn(f"{path}: line 25 column 40: trailing comma", proc.stderr)
        self.assertNotIn("a-good.json", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.jobs, "a-good.json.state")))

    def test_bad_field_named(self):
        job = spec_job("b", "ftp", _NoServer, self.source, "x")
        job["job_actions"][0]["freezer_action"]["storage"] = "tape"
        self.add_job("job.json", job)
        proc = self.run_once(expect=2)
        self.assertIn("job_actions.0.freezer_action.storage", proc.stderr)


class TestDaemon(SchedulerTest):
    """``start`` runs jobs in the background until ``stop``; ``status`` reports them."""

    def scheduler(self, command: str, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run([SCHEDULER, "--no-api", "--jobs-dir", self.jobs, "--poll", "0.2",
                               "--pid-file", self.pid_file, command], capture_output=True, text=True, timeout=120)
        self.assertEqual(expect, proc.returncode, proc.stdout + proc.stderr)
        return proc

    def setUp(self):
        super().setUp()
        self.pid_file = os.path.join(self.tmp, "scheduler.pid")
        self.addCleanup(self._kill_leftover)

    def _kill_leftover(self):
        if os.path.exists(self.pid_file):
            subprocess.run([SCHEDULER, "--no-api", "--jobs-dir", self.jobs, "--pid-file", self.pid_file, "stop"],
                           capture_output=True, timeout=120)

    def wait_for_state(self, path: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path + ".state"):
            self.assertLess(time.monotonic(), deadline, "the daemon never ran the job")
            time.sleep(0.1)
        return self.state(path)

    def test_start_runs_due_jobs_then_stop_ends_it(self):
        server = self.useFixture(servers.PyFtpd(self.tmp))
        path = self.add_job("job.json", spec_job("b", "ftp", server, self.source, self.tmp + "/log"))
        started = self.scheduler("start")
        pid = int(open(self.pid_file).read())
        self.assertIn(f"pid {pid}", started.stdout)
        self.assertEqual("completed", self.wait_for_state(path)["status"])
        self.assertIn("job.json: last completed, next ", self.scheduler("status").stdout)
        self.scheduler("stop")
        self.assertFalse(os.path.exists(f"/proc/{pid}") and _alive(pid))
        self.assertFalse(os.path.exists(self.pid_file))
        self.assertEqual(1, self.state(path)["runs"])

    def test_second_start_is_refused(self):
        self.add_job("job.json", spec_job("b", "ftp", _NoServer(), self.source, self.tmp + "/log",
                                          action="info"))
        self.scheduler("start")
        proc = self.scheduler("start", expect=2)
        self.assertIn("already running", proc.stderr)
        self.scheduler("stop")

    def test_stop_without_scheduler(self):
        proc = self.scheduler("stop", expect=2)
        self.assertIn("--pid-file", proc.stderr)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class TestDoneWithWarnings(SchedulerTest):
    """An agent that exits 1 did its work with warnings: the state says so, the job is no failure."""

    def test_unreadable_file_gives_completed_with_warnings(self):
        write(f"{self.source}/locked.txt", "cannot be read", mode=0o000)
        local = {"action": "backup", "storage": "local", "container": self.tmp + "/local",
                 "backup_name": "c", "path_to_backup": self.source}
        path = self.add_job("job.json", {"job_actions": [{"freezer_action": local},
                                                          {"freezer_action": dict(local, action="info")}]})
        # without CAP_DAC_OVERRIDE root meets file permissions like any user; the agents inherit it
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
        proc = subprocess.run([*prefix, SCHEDULER, "--no-api", "--jobs-dir", self.jobs, "run-once"],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(0, proc.returncode, proc.stderr)
        state = self.state(path)
        self.assertEqual("completed_with_warnings", state["status"])
        self.assertEqual(["completed_with_warnings", "completed"], [a["status"] for a in state["actions"]])
        self.assertIn("locked.txt", state["actions"][0]["result"]["warnings"][0])
        self.assertIn("freezer-scheduler: WARNING: job job.json completed_with_warnings", proc.stderr)


class TestSchedulerCommandLine(SchedulerTest):
    def test_version(self):
        proc = subprocess.run([SCHEDULER, "--version"], capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertRegex(proc.stdout, r"^freezer-scheduler \d+\.\d+")

    def test_messages_carry_its_own_name(self):
        job = spec_job("b", "ftp", _NoServer, self.source, self.tmp + "/log")
        job["job_actions"][0].update(max_retries=0)
        job["job_actions"][0]["freezer_action"]["ftp_port"] = 9
        self.add_job("job.json", job)
        proc = self.run_once(expect=1)
        lines = [line for line in proc.stderr.splitlines() if "WARNING" in line]
        self.assertTrue(lines, proc.stderr)
        for line in lines:
            self.assertTrue(line.startswith("freezer-scheduler: WARNING: "), line)
