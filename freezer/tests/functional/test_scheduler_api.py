"""freezer-scheduler against a real Keystone and freezer-api 19.0.0 (patched for sftp) on 127.0.0.1.

Jobs go in with the ``freezer`` CLI (python-freezerclient) as an operator would; the scheduler runs
them with our freezer-agent against real FTP, FTPS and SFTP servers and reports back.
Keystone and freezer-api start once for the whole module (Keystone alone takes ~15 s).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import AgentTestCase, write
from freezer.tests.functional.test_scheduler import as_strings, spec_job
from freezer.tests.openstack import OpenStack

SCHEDULER = os.path.join(os.path.dirname(sys.executable), "freezer-scheduler")
ALL_STORAGES = "local,swift,ssh,s3,ftp,ftps,sftp"


class NoServer:
    """Settings of an FTP server that is not there (the test sets the port)."""

    username, password, port = "u", "p", 21


class ApiTestCase(AgentTestCase):
    """One Keystone + freezer-api for the module; each test starts its own scheduler (own client id)."""

    stack: OpenStack | None = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if ApiTestCase.stack is None:  # once per test process, stopped when the process exits
            workdir = tempfile.mkdtemp(prefix="freezer-openstack-")
            ApiTestCase.stack = OpenStack(workdir)
            atexit.register(shutil.rmtree, workdir, True)
            atexit.register(ApiTestCase.stack.cleanUp)
            ApiTestCase.stack.setUp()

    def setUp(self):
        super().setUp()
        self.stack = ApiTestCase.stack
        write(f"{self.source}/etc/hosts", "127.0.0.1 localhost\n")
        self.client_id = f"test-{self.id().rsplit('.', 1)[-1]}-{os.getpid()}"
        self.jobs_dir = os.path.join(self.tmp, "jobs")
        self.log = os.path.join(self.tmp, "scheduler.log")
        self.conf = os.path.join(self.tmp, "scheduler.conf")
        self.pid_file = os.path.join(self.tmp, "pid")
        self.api_url: str | None = None  # None: the freezer-api of Keystone's catalog (patched for sftp)
        self.scheduler = None

    def write_conf(self, storages: str, capabilities: str = "") -> None:
        """Upstream's scheduler.conf, old [DEFAULT] name included."""
        auth = dict(self.stack.service_auth(), **({"os_backup_url": self.api_url} if self.api_url else {}))
        lines = "\n".join(f"{key} = {value}" for key, value in auth.items())
        write(self.conf, f"[DEFAULT]\nclient_id = {self.client_id}\n[scheduler]\ninterval = 1\n"
                         f"jobs_dir = {self.jobs_dir}\n[capabilities]\nsupported_storages = {storages}\n"
                         f"{capabilities}[service_auth]\n{lines}\n", mode=0o600)

    def scheduler_command(self, command: str, *extra: str) -> list[str]:
        return [SCHEDULER, "--config-file", self.conf, "--pid-file", self.pid_file, "--log-file", self.log,
                "--debug", *extra, command]

    def start_scheduler(self, storages: str = ALL_STORAGES, *extra: str, capabilities: str = "") -> None:
        """The scheduler in the foreground with upstream's config file; waits until it has registered."""
        self.write_conf(storages, capabilities)
        proc = subprocess.Popen(self.scheduler_command("start", "--no-daemon", *extra), env=_without_os_variables(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(_terminate, proc)
        self.scheduler = proc
        self.wait_registered()

    def wait_registered(self) -> None:
        self.wait_for(lambda: self.stack.get(f"clients/{self.client_id}", api_url=self.api_url),
                      "the client to register")

    def create_job(self, job: dict) -> str:
        """``freezer job-create --file --client`` as an operator does; the new job's id."""
        path = os.path.join(self.tmp, f"job-{time.monotonic_ns()}.json")
        write(path, json.dumps(job), mode=0o600)
        out = self.stack.freezer("job-create", "--file", path, "--client", self.client_id, "-f", "json",
                                 api_url=self.api_url)
        return json.loads(out)["Job ID"]

    def job(self, job_id: str) -> dict:
        return self.stack.get(f"jobs/{job_id}", api_url=self.api_url)

    def wait_for(self, condition, what: str, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.scheduler is not None and self.scheduler.poll() is not None:
                self.fail(f"the scheduler exited ({self.scheduler.returncode}) while waiting for {what}: "
                          f"{self.scheduler.stderr.read().decode(errors='replace')[-2000:]}")
            self.assertLess(time.monotonic(), deadline, f"timed out waiting for {what}: {self.scheduler_log()}")
            time.sleep(0.3)

    def wait_result(self, job_id: str, timeout: float = 120) -> dict:
        """The job once it has a final result of its latest run."""
        def finished():
            doc = self.job(job_id)
            sched = doc["job_schedule"]
            return doc if sched.get("result") and sched.get("status") != "running" else None
        return self.wait_for(finished, f"job {job_id} to finish", timeout)

    def last_errors(self, job_id: str) -> list[str | None]:
        """Each action's failure reason as freezer-api keeps it (``job-show`` prints it among the actions)."""
        return [a["freezer_action"].get("last_error") for a in self.job(job_id)["job_actions"]]

    def backups(self, job_id: str) -> list[dict]:
        return [b for b in self.stack.get("backups?limit=100", api_url=self.api_url)["backups"]
                if b.get("backup_metadata", {}).get("job_id") == job_id]

    def scheduler_log(self, whole: bool = False) -> str:
        try:
            with open(self.log, encoding="utf-8") as handle:
                text = handle.read()
                return text if whole else text[-3000:]
        except OSError:
            return "(no log)"


class TestSpecJobsThroughApi(ApiTestCase):
    def test_the_three_spec_jobs_run_to_success(self):
        ftps = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "s1"), True))
        ftp = self.useFixture(servers.Vsftpd(os.path.join(self.tmp, "s2")))
        sftp = self.useFixture(Sshd(os.path.join(self.tmp, "s3")))
        log = os.path.join(self.tmp, "job.log")
        self.start_scheduler()
        def create(job: dict) -> str:  # every freezer_action value a string, as forms send them
            return self.create_job(as_strings(job, job_action_fields=False))  # freezer-api types the rest
        jobs = {
            "ftps": create(spec_job("test0001_backup", "ftps", ftps, self.source, log, ftp_cacert=ftps.ca.ca_file)),
            "ftp": create(spec_job("test0002_backup", "ftp", ftp, self.source, log)),
            "sftp": create(spec_job("test0003_backup", "sftp", sftp, self.source, log,
                                    container=sftp.container(), ssh_known_hosts=sftp.known_hosts)),
        }
        self.assertEqual("21" if ftps.port == 21 else str(ftps.port),
                         self.job(jobs["ftps"])["job_actions"][0]["freezer_action"]["ftp_port"])
        for storage, job_id in jobs.items():
            sched = self.wait_result(job_id)["job_schedule"]
            self.assertEqual("success", sched["result"], f"{storage}: {self.scheduler_log()}")
            self.assertEqual("scheduled", sched["status"])  # "5 minutes": due again later, as upstream
            self.assertGreater(sched["time_ended"], 0)
            self.assertGreater(sched["current_pid"], 0)
            [record] = self.backups(job_id)
            metadata = record["backup_metadata"]
            self.assertEqual((0, storage, self.source), (metadata["curr_backup_level"], metadata["storage"],
                                                        metadata["path_to_backup"]))
        listing = self.stack.freezer("backup-list")
        for name in ("test0001_backup", "test0002_backup", "test0003_backup"):
            self.assertTrue(any(self.source in line and line.rstrip(" |").endswith("0")
                                for line in listing.splitlines()), listing)
            self.assertTrue(any(name in b["backup_metadata"]["backup_name"]
                                for b in self.stack.get("backups?limit=100")["backups"]))


class TestEvents(ApiTestCase):
    def test_failing_action_is_retried_max_retries_times_then_fail(self):
        self.start_scheduler()
        job = spec_job("b", "ftp", NoServer, self.source, self.tmp + "/log")
        job["job_schedule"] = {}  # run once
        job["job_actions"][0].update(max_retries=2, max_retries_interval=0)
        job["job_actions"][0]["freezer_action"].update(ftp_port=servers.free_port(), ftp_password="x")
        doc = self.wait_result(self.create_job(job))
        self.assertEqual(("fail", "completed"), (doc["job_schedule"]["result"], doc["job_schedule"]["status"]))
        self.assertIn("attempt 3 of 3 failed", self.scheduler_log())
        self.assertNotIn("attempt 4", self.scheduler_log())
        self.assertEqual([], self.backups(doc["job_id"]))
        [reason] = self.last_errors(doc["job_id"])
        self.assertIn("freezer-agent: error:", reason)
        self.assertNotIn('"x"', reason)
        self.assertIn("last_error", self.stack.freezer("job-show", doc["job_id"]))
        self.wait_for(lambda: "freezer-api lists it no more" in self.scheduler_log(), "the completed job to go")
        self.assertNotIn("dropped", self.scheduler_log(whole=True))

    def test_stopping_the_scheduler_ends_the_retries(self):
        self.start_scheduler()
        job = spec_job("b", "ftp", NoServer, self.source, self.tmp + "/log")
        job["job_schedule"] = {}
        job["job_actions"][0].update(max_retries=5, max_retries_interval=3600)
        job["job_actions"][0]["freezer_action"]["ftp_port"] = servers.free_port()
        job_id = self.create_job(job)
        self.wait_for(lambda: "attempt 1 of 6 failed" in self.scheduler_log(), "the first attempt to fail")
        self.scheduler.send_signal(signal.SIGTERM)
        self.assertEqual(0, self.scheduler.wait(timeout=120))
        sched = self.job(job_id)["job_schedule"]
        self.assertEqual(("aborted", "completed"), (sched["result"], sched["status"]))
        self.assertNotIn("attempt 2", self.scheduler_log())

    def test_abort_kills_the_running_backup(self):
        silent = self.useFixture(servers.Blackhole())
        self.start_scheduler()
        job = spec_job("b", "ftp", NoServer, self.source, self.tmp + "/log")
        job["job_actions"][0]["freezer_action"]["ftp_port"] = silent.port
        job_id = self.create_job(job)
        pid = self.wait_for(lambda: self.job(job_id)["job_schedule"].get("current_pid"), "the agent to start")
        self.assertEqual("running", self.job(job_id)["job_schedule"]["status"])
        self.stack.freezer("job-abort", job_id)
        doc = self.wait_result(job_id, timeout=60)
        self.assertEqual(("aborted", "completed"), (doc["job_schedule"]["result"], doc["job_schedule"]["status"]))
        self.assertFalse(_alive(pid))
        self.assertEqual("", doc["job_schedule"]["event"])

    def test_stop_holds_the_job_and_start_runs_it_again(self):
        self.start_scheduler()
        local = {"storage": "local", "container": self.tmp + "/store", "backup_name": "b"}
        job_id = self.create_job({"job_schedule": {"schedule_interval": "1 days"}, "job_actions": [
            {"freezer_action": {"action": "backup", "path_to_backup": self.source, **local}}]})
        first = self.wait_result(job_id)["job_schedule"]
        self.stack.freezer("job-stop", job_id)
        self.wait_for(lambda: self.job(job_id)["job_schedule"]["status"] == "stop", "the job to stop")
        self.assertEqual("", self.job(job_id)["job_schedule"]["event"])
        self.stack.freezer("job-start", job_id)
        self.wait_for(lambda: self.job(job_id)["job_schedule"].get("time_started", 0) > first["time_started"]
                      and self.job(job_id)["job_schedule"].get("result") == "success", "a second run")
        self.assertEqual([0, 1], sorted(b["backup_metadata"]["curr_backup_level"] for b in self.backups(job_id)))

    def test_remove_drops_the_job_and_only_backups_are_recorded(self):
        self.start_scheduler()
        local = {"storage": "local", "container": self.tmp + "/store", "backup_name": "b"}
        job = {"description": "backup then restore", "job_schedule": {"schedule_interval": "1 days"},
               "job_actions": [
                   {"freezer_action": {"action": "backup", "path_to_backup": self.source, **local}},
                   {"freezer_action": {"action": "restore", "restore_abs_path": self.tmp + "/out", **local}},
                   {"freezer_action": {"action": "info", **local}}]}
        job_id = self.create_job(job)
        self.assertEqual("success", self.wait_result(job_id)["job_schedule"]["result"], self.scheduler_log())
        [record] = self.backups(job_id)
        self.assertEqual("backup", record["backup_metadata"]["action"])
        copy = os.path.join(self.jobs_dir, f"job_{job_id}.conf")
        self.assertEqual(0o600, stat.S_IMODE(os.stat(copy).st_mode))
        self.stack.freezer("job-delete", job_id)
        self.wait_for(lambda: not os.path.exists(copy), "the job copy to go")
        self.assertIn(f"job {job_id} was deleted in freezer-api: dropped", self.scheduler_log())
        _terminate(self.scheduler)  # a restart registers the client again: no error
        self.start_scheduler()
        self.wait_for(lambda: self.scheduler_log(whole=True).count(f"client {self.client_id}") >= 2,
                      "the client's second registration")
        self.assertNotIn("cannot register", self.scheduler_log(whole=True))


class TestRefusedJobs(ApiTestCase):
    """A job the scheduler will not run stops with result fail and says why in freezer-api."""

    def exec_job(self, marker: str, **spelling) -> dict:
        return {"job_schedule": {"schedule_interval": "1 days"},
                "job_actions": [{"freezer_action": {"command": f"touch {marker}", **spelling}}]}

    def test_disable_exec_holds_for_jobs_from_freezer_api(self):
        self.start_scheduler(ALL_STORAGES, "--disable-exec",
                             capabilities="supported_actions = backup,restore,info,admin,exec\n")
        markers = [os.path.join(self.tmp, f"ran-{n}") for n in range(2)]
        spellings = ({"action": "exec"}, {"action": "info", "ACTION": "exec"})  # what freezer-api 19 lets through
        job_ids = [self.create_job(self.exec_job(marker, **spelling))
                   for marker, spelling in zip(markers, spellings, strict=True)]
        for job_id in job_ids:
            sched = self.wait_result(job_id)["job_schedule"]
            self.assertEqual(("fail", "stop"), (sched["result"], sched["status"]), self.scheduler_log())
        self.assertIn("exec is disabled on this host (--disable-exec)", self.last_errors(job_ids[0])[0])
        self.assertIn("option action is given twice", self.last_errors(job_ids[1])[0])
        self.assertEqual([False, False], [os.path.exists(marker) for marker in markers])

    def test_every_spelling_of_exec_is_stopped_by_freezer_api_or_the_scheduler(self):
        self.start_scheduler(ALL_STORAGES, "--disable-exec",
                             capabilities="supported_actions = backup,restore,info,admin,exec\n")
        spellings = ({"ACTION": "exec"}, {" action": "exec"}, {"Action": "exec"}, {"action": " exec"},
                     {"action": "exec "}, {"action": "EXEC"}, {"action": "backup", " action ": "exec"})
        for n, spelling in enumerate(spellings):
            marker = os.path.join(self.tmp, f"ran-{n}")
            job = dict(self.exec_job(marker, **spelling), client_id=self.client_id)
            reply = self.stack.post("jobs", job)
            if reply.status_code >= 400:
                continue  # freezer-api 19 refuses it itself (by its schema, or no action at all)
            job_id = reply.json()["job_id"]
            self.assertEqual("fail", self.wait_result(job_id)["job_schedule"]["result"], spelling)
            self.assertFalse(os.path.exists(marker), spelling)

    def test_freezer_api_itself_refuses_exec_for_a_client_without_it(self):
        self.start_scheduler()  # default capabilities: no exec
        job = dict(self.exec_job(os.path.join(self.tmp, "ran"), action="exec"), client_id=self.client_id)
        refused = self.stack.post("jobs", job)
        self.assertEqual(422, refused.status_code)
        self.assertIn("does not support action: exec", refused.text)

    def test_bad_value_is_reported_and_the_fixed_job_runs_on_start(self):
        self.start_scheduler()
        local = {"action": "backup", "storage": "local", "container": self.tmp + "/store", "backup_name": "b",
                 "path_to_backup": self.source, "max_level": "none of them"}
        job_id = self.create_job({"job_schedule": {"schedule_interval": "1 days"},
                                  "job_actions": [{"freezer_action": local}]})
        self.assertEqual("fail", self.wait_result(job_id)["job_schedule"]["result"])
        self.assertIn("freezer_action.max_level (--max-level): invalid value 'none of them': expected a whole number",
                      self.last_errors(job_id)[0])
        action = self.job(job_id)["job_actions"][0]
        fixed = os.path.join(self.tmp, "fixed.json")
        write(fixed, json.dumps({"freezer_action": dict(action["freezer_action"], max_level="7"),
                                 "max_retries": 0, "max_retries_interval": 0}))
        self.stack.freezer("action-update", action["action_id"], fixed)
        self.stack.freezer("job-start", job_id)
        self.wait_for(lambda: self.job(job_id)["job_schedule"].get("result") == "success", "the fixed job to run")
        self.assertEqual([None], self.last_errors(job_id))  # the old reason is cleared


class TestOneRunPerStart(ApiTestCase):
    def test_created_then_started_runs_once(self):
        self.start_scheduler()
        local = {"storage": "local", "container": self.tmp + "/store", "backup_name": "b"}
        job_id = self.create_job({"job_schedule": {"schedule_interval": "1 days"}, "job_actions": [
            {"freezer_action": {"action": "backup", "path_to_backup": self.source, **local}}]})
        self.stack.freezer("job-start", job_id)
        self.assertEqual("success", self.wait_result(job_id)["job_schedule"]["result"], self.scheduler_log())
        polls = self.scheduler_log(whole=True).count("polled")
        self.wait_for(lambda: self.scheduler_log(whole=True).count("polled") >= polls + 3, "three more polls")
        self.assertEqual(1, len(self.backups(job_id)), self.scheduler_log())
        self.assertEqual("scheduled", self.job(job_id)["job_schedule"]["status"])


class TestSessions(ApiTestCase):
    def test_a_job_in_a_session_starts_and_ends_it(self):
        self.start_scheduler()
        local = {"storage": "local", "container": self.tmp + "/store", "backup_name": "b"}
        job = {"job_schedule": {"status": "stop"},  # held until it is in the session
               "job_actions": [{"freezer_action": {"action": "backup", "path_to_backup": self.source, **local}}]}
        job_id = self.create_job(job)
        session_file = os.path.join(self.tmp, "session.json")
        write(session_file, json.dumps({"description": "one job", "schedule": {}}))
        session_id = json.loads(self.stack.freezer("session-create", "--file", session_file, "-f", "json"))[
            "Session ID"]
        self.stack.freezer("session-add-job", "--session-id", session_id, "--job-id", job_id)
        self.stack.freezer("job-start", job_id)
        doc = self.wait_result(job_id)
        self.assertEqual("success", doc["job_schedule"]["result"], self.scheduler_log())
        session = self.stack.get(f"sessions/{session_id}")
        self.assertEqual(("completed", "success"), (session["status"], session["result"]), session)
        self.assertEqual(1, doc["session_tag"])


class TestSecrets(ApiTestCase):
    def test_password_files_keep_passwords_out_of_freezer_api(self):
        ftp = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "s1")))
        sshd = self.useFixture(Sshd(os.path.join(self.tmp, "s2")))
        ftp_file, ssh_file = os.path.join(self.tmp, "ftp.pw"), os.path.join(self.tmp, "ssh.pw")
        write(ftp_file, ftp.password + "\n", mode=0o600)
        write(ssh_file, sshd.password + "\n", mode=0o600)
        self.api_url = self.stack.unpatched_api()  # freezer-api 19.0.0 as released: no sftp
        self.start_scheduler(storages="local,swift,ssh,s3,ftp,ftps")  # the default list; sftp would get 400
        ftp_job = spec_job("f", "ftp", ftp, self.source, self.tmp + "/log", ftp_password_file=ftp_file)
        del ftp_job["job_actions"][0]["freezer_action"]["ftp_password"]
        ssh_action = {"action": "backup", "storage": "ssh", "backup_name": "s", "path_to_backup": self.source,
                      "ssh_host": "127.0.0.1", "ssh_port": sshd.port, "ssh_username": sshd.username,
                      "ssh_password_file": ssh_file, "ssh_known_hosts": sshd.known_hosts,
                      "container": sshd.container()}
        ssh_job = {"description": "sftp server, storage ssh", "job_actions": [{"freezer_action": ssh_action}]}
        sftp_job = dict(ssh_job, client_id=self.client_id, job_actions=[
            {"freezer_action": dict(ssh_action, storage="sftp")}])
        refused = self.stack.post("jobs", sftp_job, api_url=self.api_url)
        self.assertEqual(422, refused.status_code)
        self.assertIn("does not support storage: sftp", refused.text)
        sftp_client = {"client_id": "c-sftp", "hostname": "h", "supported_storages": ["sftp"]}
        self.assertEqual(400, self.stack.post("clients", sftp_client, api_url=self.api_url).status_code)
        for job in (ftp_job, ssh_job):
            doc = self.wait_result(self.create_job(job))
            self.assertEqual("success", doc["job_schedule"]["result"], self.scheduler_log())
            self.assertNotIn(ftp.password, json.dumps(doc))
        for name in os.listdir(self.jobs_dir):
            self.assertEqual(0o600, stat.S_IMODE(os.stat(os.path.join(self.jobs_dir, name)).st_mode), name)


class TestBackgroundScheduler(ApiTestCase):
    def test_start_status_stop_and_a_restart_does_not_rerun_a_scheduled_job(self):
        self.write_conf(ALL_STORAGES)

        def run(command: str) -> subprocess.CompletedProcess:
            return subprocess.run(self.scheduler_command(command), env=_without_os_variables(), capture_output=True,
                                  text=True, timeout=120)

        self.assertEqual(0, run("start").returncode)
        self.addCleanup(run, "stop")
        self.wait_registered()
        self.assertIn("running, pid", run("status").stdout)
        local = {"storage": "local", "container": self.tmp + "/store", "backup_name": "b"}
        job = {"job_schedule": {"schedule_interval": "1 days"},
               "job_actions": [{"freezer_action": {"action": "backup", "path_to_backup": self.source, **local}}]}
        job_id = self.create_job(job)
        first = self.wait_result(job_id)["job_schedule"]
        self.assertEqual(("success", "scheduled"), (first["result"], first["status"]), self.scheduler_log())
        self.assertEqual(0, run("stop").returncode)
        self.assertEqual(1, run("status").returncode)
        self.assertEqual(0, run("start").returncode)
        pid = int(open(self.pid_file).read())
        self.assertEqual(0, run("restart").returncode)  # upstream's command: stop, then start
        self.assertNotEqual(pid, int(open(self.pid_file).read()))
        self.assertFalse(_alive(pid))
        polls = self.scheduler_log(whole=True).count("polled")
        self.wait_for(lambda: self.scheduler_log(whole=True).count("polled") >= polls + 2, "two polls")
        self.assertEqual(first["time_started"], self.job(job_id)["job_schedule"]["time_started"])
        self.assertEqual(1, len(self.backups(job_id)))


def _without_os_variables() -> dict:
    """The test's environment without $OS_*: the scheduler must read [service_auth]."""
    return {key: value for key, value in os.environ.items() if not key.startswith("OS_")}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
