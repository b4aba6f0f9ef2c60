"""freezer-scheduler run-once with the spec's job documents against real servers."""

import json
import os
import subprocess
import sys
import time

from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import AgentTestCase, write

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


def as_strings(job: dict, job_action_fields: bool = True) -> dict:
    """The job with every number and boolean written as a string, as forms and people write them."""
    def loose(value):
        if isinstance(value, bool):
            return "yes" if value else "False"
        return str(value) if isinstance(value, (int, float)) else value
    actions = []
    for action in job["job_actions"]:
        fields = {k: (loose(v) if job_action_fields else v) for k, v in action.items() if k != "freezer_action"}
        actions.append({**fields, "freezer_action": {k: loose(v) for k, v in action["freezer_action"].items()}})
    return {**job, "job_actions": actions}


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

    def run_once(self, expect: int = 0, *extra: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([SCHEDULER, "--no-api", "--jobs-dir", self.jobs, *extra, "run-once"],
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

    def test_the_three_spec_jobs_with_every_value_a_string(self):
        ftps = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "s1"), True))
        ftp = self.useFixture(servers.Vsftpd(os.path.join(self.tmp, "s2")))
        sftp = self.useFixture(Sshd(os.path.join(self.tmp, "s3")))
        log = os.path.join(self.tmp, "job.log")
        jobs = [spec_job("test0001_backup", "ftps", ftps, self.source, log, ftp_cacert=ftps.ca.ca_file),
                spec_job("test0002_backup", "ftp", ftp, self.source, log),
                spec_job("test0003_backup", "sftp", sftp, self.source, log, container=sftp.container(),
                         ssh_known_hosts=sftp.known_hosts)]
        paths = [self.add_job(f"{n}.json", as_strings(job)) for n, job in enumerate(jobs)]
        self.assertIn('"ftp_port": "', open(paths[0]).read())
        self.run_once()
        for path in paths:
            self.assertEqual("completed", self.state(path)["status"], path)

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
        job = spec_job("b", "ftp", server, self.source, self.tmp + "/log", storage_retry_time=0)
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
    def local_job(self, name: str) -> dict:
        return {"job_actions": [{"freezer_action": {"action": "backup", "storage": "local", "backup_name": name,
                                                    "container": self.tmp + "/local", "path_to_backup": self.source}}]}

    def test_one_bad_file_is_skipped_and_reported_the_others_run(self):
        good = self.add_job("a-good.json", self.local_job("a"))
        path = self.add_job("b-spec.json", SPEC_FTPS_JOB)
        later = self.add_job("c-good.json", self.local_job("c"))
        proc = self.run_once(1)
        self.assertIn(f"{path}: line 25 column 40: trailing comma", proc.stderr)
        self.assertEqual(["completed", "completed"], [self.state(p)["status"] for p in (good, later)])
        self.assertEqual("invalid", self.state(path)["status"])
        self.assertIn("trailing comma", self.state(path)["error"])

    def test_bad_field_named_with_file_and_job_id(self):
        job = spec_job("b", "ftp", _NoServer, self.source, "x")
        job["job_id"] = "nightly-7"
        job["job_actions"][0]["freezer_action"]["storage"] = "tape"
        path = self.add_job("job.json", job)
        proc = self.run_once(1)
        self.assertIn(f"{path} (job nightly-7): bad field job_actions.0.freezer_action.storage", proc.stderr)
        self.assertIn("job skipped", proc.stderr)

    def test_bad_value_gets_the_command_lines_words(self):
        job = as_strings(spec_job("b", "ftp", _NoServer, self.source, "x"))
        job["job_actions"][0]["freezer_action"]["ftp_port"] = "ftp"
        self.add_job("job.json", job)
        proc = self.run_once(1)
        self.assertIn("freezer_action.ftp_port (--ftp-port): invalid value 'ftp': expected a port number", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)


class TestDisableExec(SchedulerTest):
    """No entry point of the local mode runs an exec action when exec is disabled, however it is spelt."""

    SPELLINGS = ({"action": "exec"}, {"ACTION": "exec"}, {" action": "exec"}, {"Action": "exec"},
                 {"action": " exec"}, {"action": "exec\n"})

    def add_exec_jobs(self) -> list[str]:
        paths = []
        for n, spelling in enumerate(self.SPELLINGS):
            marker = os.path.join(self.tmp, f"ran-{n}")
            action = {**spelling, "command": f"touch {marker}"}
            job = {"job_id": f"exec-{n}", "job_actions": [{"freezer_action": action}]}
            paths.append(self.add_job(f"exec-{n}.json", job))
        return paths

    def assert_none_ran(self, paths: list[str], why: str) -> None:
        self.assertEqual([], [name for name in os.listdir(self.tmp) if name.startswith("ran-")])
        for path in paths:
            state = self.state(path)
            self.assertEqual("invalid", state["status"], path)
            self.assertIn(why, state["error"])

    def test_run_once_with_disable_exec(self):
        paths = self.add_exec_jobs()
        proc = self.run_once(1, "--disable-exec")
        self.assert_none_ran(paths, "exec is disabled on this host (--disable-exec)")
        self.assertIn("(job exec-1)", proc.stderr)

    def test_run_once_with_capabilities_without_exec(self):
        paths = self.add_exec_jobs()
        conf = os.path.join(self.tmp, "scheduler.conf")
        write(conf, "[capabilities]\nsupported_actions = backup,restore,info,admin\n")
        self.run_once(1, "--config-file", conf)
        self.assert_none_ran(paths, "[capabilities] supported_actions")

    def test_disable_exec_from_the_config_file(self):
        paths = self.add_exec_jobs()
        conf = os.path.join(self.tmp, "scheduler.conf")
        write(conf, "[scheduler]\ndisable_exec = true\n")
        self.run_once(1, "--config-file", conf)
        self.assert_none_ran(paths, "--disable-exec")

    def test_start_with_disable_exec(self):
        paths = self.add_exec_jobs()
        pid_file = os.path.join(self.tmp, "pid")
        command = [SCHEDULER, "--no-api", "--jobs-dir", self.jobs, "--poll", "0.2", "--pid-file", pid_file,
                   "--disable-exec"]
        proc = subprocess.run([*command, "start"], capture_output=True, text=True, timeout=120)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.addCleanup(subprocess.run, [*command, "stop"], capture_output=True, timeout=120)
        deadline = time.monotonic() + 60
        while not all(os.path.exists(p + ".state") for p in paths):
            self.assertLess(time.monotonic(), deadline, "the daemon never looked at the jobs")
            time.sleep(0.1)
        time.sleep(1)  # a few more looks: still nothing runs
        self.assert_none_ran(paths, "--disable-exec")

    def test_exec_runs_when_allowed(self):
        marker = os.path.join(self.tmp, "ran-allowed")
        path = self.add_job("exec.json", {"job_actions": [{"freezer_action": {
            " Action ": " exec ", "command": f"touch {marker}"}}]})
        self.run_once()
        self.assertTrue(os.path.exists(marker))
        self.assertEqual("completed", self.state(path)["status"])


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

    def test_hostile_job_files_appearing_while_it_runs_are_refused_the_others_run(self):
        log = os.path.join(self.tmp, "scheduler.log")
        local = {"action": "info", "storage": "local", "container": self.tmp + "/local"}
        first = self.add_job("a.json", {"job_actions": [{"freezer_action": local}]})
        proc = subprocess.Popen([SCHEDULER, "--no-api", "--jobs-dir", self.jobs, "--poll", "0.2", "--pid-file",
                                 self.pid_file, "--log-file", log, "--no-daemon", "start"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait, 60)
        self.addCleanup(proc.terminate)
        self.assertEqual("completed", self.wait_for_state(first)["status"])
        zero = self.add_job("b-zero.json", {"job_id": "z1", "job_schedule": {"schedule_minute": "*/0"},
                                            "job_actions": [{"freezer_action": local}]})
        interval = self.add_job("c-interval.json", {"job_schedule": {"schedule_interval": "0 minutes"},
                                                    "job_actions": [{"freezer_action": local}]})
        deep = self.add_job("d-deep.json", '{"job_actions": ' + "[" * 50000 + "]" * 50000 + "}")
        last = self.add_job("e.json", {"job_actions": [{"freezer_action": local}]})
        self.assertEqual("completed", self.wait_for_state(last)["status"])
        self.assertIsNone(proc.poll(), "the daemon died")
        for path, words in ((zero, "(job z1): job_schedule: bad schedule_minute '*/0'"),
                            (interval, "job_schedule: bad schedule_interval '0 minutes'"),
                            (deep, "JSON nested more than 32 levels deep")):
            state = self.wait_for_state(path)
            self.assertEqual("invalid", state["status"])
            self.assertTrue(state["error"].startswith(path), state["error"])
            self.assertIn(words, state["error"])
        with open(log) as handle:
            text = handle.read()
        self.assertNotIn("Traceback", text)
        self.assertIn(f"{zero} (job z1): job_schedule", text)


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
