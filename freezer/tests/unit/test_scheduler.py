"""Job documents, schedules and action ini files (pure logic)."""

import datetime
import os
import shutil
import tempfile

import testtools

from freezer.errors import FreezerError
from freezer.scheduler import jobdoc, runner, schedule

GOOD = '{"job_actions": [{"freezer_action": {"action": "backup", "storage": "ftp"}}]}'


class TestJobDocuments(testtools.TestCase):
    def test_trailing_comma_named_with_line_and_column(self):
        text = '{\n  "job_actions": [{"freezer_action": {\n    "remove_older_than": 10,\n  }}]\n}'
        error = self.assertRaises(FreezerError, jobdoc.parse, text, "job.json")
        self.assertIn("job.json: line 3 column 28: trailing comma", str(error))

    def test_other_syntax_error(self):
        error = self.assertRaises(FreezerError, jobdoc.parse, '{"a" 1}', "j.json")
        self.assertIn("j.json: line 1 column 6", str(error))

    def test_bad_field_is_named(self):
        text = '{"job_actions": [{"freezer_action": {"storage": "tape"}}]}'
        error = self.assertRaises(FreezerError, jobdoc.parse, text, "j.json")
        self.assertIn("job_actions.0.freezer_action.storage", str(error))

    def test_port_as_a_string_is_a_port(self):
        text = '{"job_actions": [{"freezer_action": {"ftp_port": "21"}}]}'
        self.assertEqual(21, jobdoc.parse(text, "j.json")["job_actions"][0]["freezer_action"]["ftp_port"])

    def test_bad_port_named_with_the_command_line_words(self):
        text = '{"job_id": "j7", "job_actions": [{"freezer_action": {"ftp_port": "twenty-one"}}]}'
        error = self.assertRaises(FreezerError, jobdoc.parse, text, "j.json")
        self.assertEqual("j.json (job j7): job_actions.0.freezer_action.ftp_port (--ftp-port): invalid value "
                         "'twenty-one': expected a port number (0-65535)", str(error))

    def test_extra_keys_allowed(self):
        self.assertEqual("ftp", jobdoc.parse(GOOD, "j")["job_actions"][0]["freezer_action"]["storage"])


class TestSchedule(testtools.TestCase):
    def test_intervals(self):
        self.assertEqual(300, schedule.interval_seconds("5 minutes"))
        self.assertEqual(7200, schedule.interval_seconds("2 hours"))
        self.assertEqual(0, schedule.interval_seconds("continuous"))
        self.assertRaises(FreezerError, schedule.interval_seconds, "often")

    def test_interval_runs_now_then_every_step(self):
        job = {"schedule_interval": "5 minutes"}
        self.assertEqual(1000, schedule.next_run(job, None, 1000))
        self.assertEqual(1300, schedule.next_run(job, 1000, 1100))

    def test_end_date_finishes_job(self):
        job = {"schedule_interval": "1 days", "schedule_end_date": "2000-01-01T00:00:00"}
        self.assertIsNone(schedule.next_run(job, 0, 1e9))

    def test_one_shot_date(self):
        when = schedule.parse_date("2030-01-01T10:00:00", "x")
        self.assertEqual(when, schedule.next_run({"schedule_date": "2030-01-01T10:00:00"}, None, 0))
        self.assertIsNone(schedule.next_run({"schedule_date": "2030-01-01T10:00:00"}, when, when))

    def test_cron_fields(self):
        after = datetime.datetime(2026, 11, 25, 10, 7).timestamp()  # a Wednesday
        due = schedule.next_run({"schedule_hour": "3", "schedule_minute": "30"}, None, after)
        self.assertEqual(datetime.datetime(2026, 11, 26, 3, 30), datetime.datetime.fromtimestamp(due))
        due = schedule.next_run({"schedule_day_of_week": "sat", "schedule_hour": 0, "schedule_minute": "*/15"},
                                None, after)
        self.assertEqual(datetime.datetime(2026, 11, 28, 0, 0), datetime.datetime.fromtimestamp(due))

    def test_no_schedule_runs_once(self):
        self.assertEqual(5, schedule.next_run({}, None, 5))
        self.assertIsNone(schedule.next_run({}, 5, 6))


class TestActionIni(testtools.TestCase):
    def test_values(self):
        text = runner.ini_text({"storage": "ftp", "no_incremental": True, "ftp_port": 21, "snapshot": None})
        self.assertEqual("[action]\nstorage = ftp\nno_incremental = true\nftp_port = 21\n", text)

    def test_multiline_refused(self):
        self.assertRaises(FreezerError, runner.ini_text, {"container": "a\nb"})


class TestDisableExec(testtools.TestCase):
    def test_exec_action_fails_without_running(self):
        job = {"job_actions": [{"freezer_action": {"action": "exec", "command": "touch /tmp/never"}}]}
        results = runner.run_job(job, agent="/nonexistent/freezer-agent", allow_exec=False)
        self.assertEqual(["failed"], [r.status for r in results])
        self.assertIn("--disable-exec", results[0].error)
        self.assertEqual(0, results[0].attempts)


class TestHostileSchedules(testtools.TestCase):
    """Schedules that used to kill the daemon are refused with one line naming the field."""

    def test_cron_step_zero_refused(self):
        error = self.assertRaises(FreezerError, schedule.next_run, {"schedule_minute": "*/0"}, None, 0)
        self.assertIn("schedule_minute '*/0': a step must be 1 or more", str(error))

    def test_zero_interval_refused(self):
        for text in ("0 minutes", "0 seconds", "00 weeks"):
            error = self.assertRaises(FreezerError, schedule.interval_seconds, text)
            self.assertIn("1 second to 10 years", str(error))
        self.assertEqual(0, schedule.interval_seconds("continuous"))

    def test_out_of_range_and_huge_ranges_refused(self):
        for spec in ("0-99999999999", "61", "5-2", "\u00b2", "\u0663"):
            error = self.assertRaises(FreezerError, schedule.next_run, {"schedule_minute": spec}, None, 0)
            self.assertIn("schedule_minute", str(error))

    def test_job_with_bad_schedule_refused_naming_file_and_job(self):
        text = ('{"job_id": "j9", "job_schedule": {"schedule_hour": "*/0"}, '
                '"job_actions": [{"freezer_action": {"action": "backup"}}]}')
        error = self.assertRaises(FreezerError, jobdoc.parse, text, "x.json")
        self.assertEqual("x.json (job j9): job_schedule: bad schedule_hour '*/0': a step must be 1 or more",
                         str(error))

    def test_deeply_nested_json_refused_naming_file(self):
        for depth in (100, 100000):
            text = '{"job_actions": [{"freezer_action": {}}], "x": ' + "[" * depth + "]" * depth + "}"
            error = self.assertRaises(FreezerError, jobdoc.parse, text, "deep.json")
            self.assertIn("deep.json: JSON nested more than 32 levels deep", str(error))

    def test_deep_document_from_freezer_api_refused(self):
        document = {"job_id": "j1", "job_actions": [{"freezer_action": {}}]}
        inner = document
        for _ in range(5000):
            inner["x"] = {}
            inner = inner["x"]
        error = self.assertRaises(FreezerError, jobdoc.prepare, document, "job j1")
        self.assertIn("job j1: JSON nested more than 32 levels", str(error))

    def test_fifo_and_huge_files_refused_without_blocking(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        fifo = os.path.join(directory, "fifo.json")
        os.mkfifo(fifo)
        self.assertIn("not a regular file", str(self.assertRaises(FreezerError, jobdoc.load, fifo)))
        huge = os.path.join(directory, "huge.json")
        with open(huge, "w") as out:
            out.write(" " * (jobdoc.MAX_FILE_BYTES + 1))
        self.assertIn("larger than 1024 KiB", str(self.assertRaises(FreezerError, jobdoc.load, huge)))
