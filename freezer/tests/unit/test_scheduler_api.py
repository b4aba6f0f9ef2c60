"""The API mode's pure logic: upstream's config file and command line, capabilities, freezer-api's nulls."""

import json
import os
import shutil
import tempfile

import testtools

from freezer.errors import FreezerError
from freezer.scheduler import jobdoc, options


def conf_file(text: str) -> str:
    handle, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path


class TestOptions(testtools.TestCase):
    def test_upstream_config_file_read(self):
        path = conf_file("[DEFAULT]\nclient_id = old-name\n[scheduler]\ninterval = 7\n"
                         "[service_auth]\nos_auth_url = http://k/v3\nos_username = u\nauth_url = ignored\n"
                         "[capabilities]\nsupported_storages = ftp,sftp\n")
        self.addCleanup(os.remove, path)
        args = options.parse(["--config-file", path, "start"])
        self.assertEqual(("old-name", 7, False), (args.client_id, args.interval, args.no_api))
        self.assertEqual("http://k/v3", args.service_auth["os_auth_url"])
        self.assertEqual("u", args.service_auth["os_username"])
        self.assertEqual(["ftp", "sftp"], args.capabilities["supported_storages"])
        self.assertEqual(["tar"], args.capabilities["supported_engines"])

    def test_command_line_wins(self):
        path = conf_file("[scheduler]\nclient_id = a\ninterval = 7\njobs_dir = /x\n")
        self.addCleanup(os.remove, path)
        args = options.parse(["--config-file", path, "-c", "b", "-i", "3", "-f", "/y", "--no-daemon", "status"])
        self.assertEqual(("b", 3, "/y", True), (args.client_id, args.interval, args.jobs_dir, args.no_daemon))

    def test_default_storages_are_what_freezer_api_accepts(self):
        args = options.parse(["start"])
        self.assertNotIn("sftp", args.capabilities["supported_storages"])

    def test_unknown_storage_and_missing_file_refused(self):
        path = conf_file("[capabilities]\nsupported_storages = tape\n")
        self.addCleanup(os.remove, path)
        self.assertRaises(FreezerError, options.parse, ["--config-file", path, "start"])
        self.assertRaises(FreezerError, options.parse, ["--config-file", path + ".missing", "start"])


class TestJobs(testtools.TestCase):
    def test_nulls_dropped(self):
        job = {"job_id": "j", "job_actions": [{"max_retries": None, "freezer_action": {
            "action": "backup", "log_file": None, "storage": "ftp"}}]}
        cleaned = jobdoc.prepare(job, "job")
        self.assertEqual([{"freezer_action": {"action": "backup", "storage": "ftp"}}], cleaned["job_actions"])
        self.assertIsNone(job["job_actions"][0]["freezer_action"]["log_file"])  # the original is untouched

    def test_capabilities(self):
        caps = options.parse(["start"]).capabilities
        job = {"job_actions": [{"freezer_action": {"action": "backup", "storage": "ftps", "engine_name": "tar"}}]}
        self.assertIsNone(jobdoc.unsupported(job, caps))
        job["job_actions"].append({"freezer_action": {"action": "exec"}})
        self.assertIn("[capabilities] supported_actions", jobdoc.unsupported(job, caps))


class TestPrivateFiles(testtools.TestCase):
    def test_state_and_copies_are_0600_whatever_the_umask(self):
        from freezer.scheduler import cli, files

        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        files.write_private(os.path.join(directory, "job_1.conf"), "{}")
        cli.write_state(os.path.join(directory, "job.json"), {"status": "completed"})
        for name in ("job_1.conf", "job.json.state"):
            self.assertEqual(0o600, os.stat(os.path.join(directory, name)).st_mode & 0o777, name)
        self.assertEqual(["job.json.state", "job_1.conf"], sorted(os.listdir(directory)))


class FakeApi:
    """freezer-api as the daemon sees it: a list of jobs, and the reports it receives."""

    def __init__(self, docs: list[dict]):
        self.docs = docs
        self.reports: list[dict] = []
        self.reasons: list[str | None] = []

    def register(self, capabilities: dict) -> None:
        pass

    def active_jobs(self) -> list[dict]:
        return [json.loads(json.dumps(doc)) for doc in self.docs]

    def report(self, doc: dict) -> None:
        self.reports.append(json.loads(json.dumps(doc["job_schedule"])))

    def report_action(self, doc: dict, index: int, error: str | None) -> None:
        self.reasons.append(error)

    def record_backup(self, record: dict, job_id: str) -> None:
        pass


def api_job(job_id: str, **schedule_fields) -> dict:
    return {"job_id": job_id, "job_schedule": dict(schedule_fields),
            "job_actions": [{"freezer_action": {"action": "info", "storage": "local", "container": "/nonexistent"}}]}


class TestApiDaemon(testtools.TestCase):
    """The API daemon: one owner for its job table, and schedules that must not kill it."""

    def scheduler(self, docs: list[dict]):
        from freezer.scheduler import daemon

        jobs_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, jobs_dir)
        agent = os.path.join(jobs_dir, "fake-agent")
        with open(agent, "w") as out:
            out.write("#!/bin/sh\necho '{}'\n")
        os.chmod(agent, 0o755)
        caps = options.parse(["start"]).capabilities
        return daemon.ApiScheduler(FakeApi(docs), caps, jobs_dir, agent=agent)

    def test_cron_step_zero_stops_that_job_only(self):
        scheduler = self.scheduler([api_job("bad", schedule_minute="*/0"), api_job("good")])
        scheduler.poll()
        scheduler.start_due()  # raised ValueError from the main loop before
        self.assertEqual("good", scheduler.running.job_id)
        scheduler.running.thread.join()
        scheduler.collect()
        self.assertFalse(scheduler.jobs["bad"].active)
        self.assertIn("job_schedule: bad schedule_minute '*/0'", scheduler.api.reasons[0])

    def test_worker_hands_the_run_back_to_the_main_loop(self):
        scheduler = self.scheduler([api_job("one")])
        scheduler.poll()
        scheduler.start_due()
        run = scheduler.running
        run.remove = True  # freezer-api deleted the job while it ran
        run.thread.join()
        self.assertIn("one", scheduler.jobs)  # the worker changed neither the table nor `running`
        self.assertIs(run, scheduler.running)
        scheduler.collect()
        self.assertNotIn("one", scheduler.jobs)
        self.assertIsNone(scheduler.running)
        self.assertEqual("removed", scheduler.api.reports[-1]["status"])
