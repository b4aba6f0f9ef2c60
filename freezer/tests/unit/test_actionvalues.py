"""Job values as forms and people write them: one normal form, then every check (pure logic)."""

import testtools

from freezer.common import cli, config
from freezer.errors import FreezerError
from freezer.scheduler import actionvalues, jobdoc, options, runner

#: the spelling of an exec action that each entry point must see through
EXEC_SPELLINGS = ({"action": "exec"}, {"ACTION": "exec"}, {" action": "exec"}, {"Action": "exec"},
                  {"action": " exec"}, {"action": "exec "}, {" ACTION ": "\texec\n"})


def job_of(freezer_action: dict, **job_action) -> dict:
    return {"job_actions": [{"freezer_action": freezer_action, **job_action}]}


def prepared_action(freezer_action: dict) -> dict:
    return jobdoc.prepare(job_of(freezer_action), "j.json")["job_actions"][0]["freezer_action"]


class TestValuesAsStrings(testtools.TestCase):
    def test_spec_job_with_every_number_and_boolean_a_string(self):
        job = jobdoc.prepare(job_of({
            "backup_name": "test0001_backup", "storage": "ftps", "ftp_host": "192.177.10.44", "ftp_port": "21",
            "no_incremental": "true", "snapshot": "False", "action": "backup", "remove_older_than": "10",
            "max_level": " 3 ", "ftp_timeout": "7.5"}, max_retries="5", max_retries_interval="6",
            mandatory="yes"), "j.json")
        action = job["job_actions"][0]
        self.assertEqual((5, 6.0, True), (action["max_retries"], action["max_retries_interval"], action["mandatory"]))
        fa = action["freezer_action"]
        self.assertEqual((21, True, False, 10.0, 3, 7.5), (fa["ftp_port"], fa["no_incremental"], fa["snapshot"],
                                                         fa["remove_older_than"], fa["max_level"], fa["ftp_timeout"]))

    def test_booleans_as_strutils_reads_them(self):
        for text, value in (("1", True), ("yes", True), ("on", True), ("TRUE", True), ("t", True),
                            ("0", False), ("no", False), ("off", False), ("False", False), (True, True)):
            self.assertIs(value, prepared_action({"overwrite": text})["overwrite"], text)

    def test_bad_values_get_the_command_lines_words(self):
        for key, value in (("ftp_port", "70000"), ("max_level", "0"), ("max_level", "two"),
                           ("remove_older_than", "ten")):
            flag = "--" + config.option_for(key).name
            error = self.assertRaises(FreezerError, prepared_action, {key: value})
            cli_error = self.assertRaises(cli.UsageError, cli.check, [flag, value], config.all_opts())
            self.assertTrue(str(error).endswith(str(cli_error).split(": ", 1)[1]), (str(error), str(cli_error)))
            self.assertIn(f"freezer_action.{key} ({flag})", str(error))

    def test_bad_boolean_named(self):
        error = self.assertRaises(FreezerError, prepared_action, {"snapshot": "maybe"})
        self.assertIn("freezer_action.snapshot (--snapshot): invalid value 'maybe': expected true or false", str(error))

    def test_bad_retry_fields_named(self):
        for field, value in (("max_retries", "-1"), ("max_retries", "x"), ("mandatory", "perhaps"),
                             ("max_retries_interval", True)):
            error = self.assertRaises(FreezerError, jobdoc.prepare, job_of({}, **{field: value}), "j.json")
            self.assertIn(f"j.json: job_actions.0.{field}: invalid value", str(error))

    def test_none_and_null_mean_unset(self):
        self.assertEqual({"storage": "ftp"}, prepared_action({"storage": "ftp", "log_file": None, "ftp_host": "None"}))

    def test_lists_refused(self):
        error = self.assertRaises(FreezerError, prepared_action, {"exclude": ["*.tmp"]})
        self.assertIn("freezer_action.exclude: lists and objects are not supported", str(error))


class TestKeys(testtools.TestCase):
    def test_keys_become_option_names(self):
        action = prepared_action({"Backup-Name": "b", " FTP_PORT ": 21, "engine": "tar", "os-auth-ver": "3"})
        self.assertEqual({"backup_name": "b", "ftp_port": 21, "engine_name": "tar", "os_identity_api_version": "3"},
                         action)

    def test_one_option_twice_refused(self):
        error = self.assertRaises(FreezerError, prepared_action, {"action": "backup", "ACTION": "exec"})
        self.assertIn("option action is given twice (as 'action' and 'ACTION'): keep one", str(error))
        self.assertRaises(FreezerError, prepared_action, {"ftp_port": 21, "ftp-port": 22})

    def test_unknown_key_refused_with_a_hint(self):
        error = self.assertRaises(FreezerError, prepared_action, {"ftp_hots": "h"})
        self.assertIn("unknown option 'ftp_hots': did you mean 'ftp_host'?", str(error))

    def test_keys_that_would_write_other_ini_lines_refused(self):
        for key in ("storage\naction", "x] \n[action", "config"):
            self.assertRaises(FreezerError, prepared_action, {key: "exec"})

    def test_freezer_api_report_fields_are_not_options(self):
        action = prepared_action({"storage": "ftp", "result": "fail", "last_error": "x", "report_date": "d"})
        self.assertEqual({"storage": "ftp"}, action)

    def test_ini_text_refuses_a_key_that_is_no_option_name(self):
        self.assertRaises(FreezerError, runner.ini_text, {"a\nb": "c"})


class TestExecSwitch(testtools.TestCase):
    def test_every_spelling_is_an_exec_action(self):
        for spelling in EXEC_SPELLINGS:
            job = jobdoc.prepare(job_of({**spelling, "command": "true"}), "j")
            self.assertIn("--disable-exec", jobdoc.exec_refused(job), spelling)

    def test_every_spelling_is_outside_capabilities_without_exec(self):
        caps = options.parse(["start"]).capabilities
        self.assertNotIn("exec", caps["supported_actions"])
        for spelling in EXEC_SPELLINGS:
            job = jobdoc.prepare(job_of({**spelling, "command": "true"}), "j")
            self.assertIn("supported_actions", jobdoc.unsupported(job, caps), spelling)

    def test_other_actions_pass(self):
        job = jobdoc.prepare(job_of({"action": "backup"}), "j")
        self.assertIsNone(jobdoc.exec_refused(job))

    def test_local_mode_allows_every_action_unless_configured(self):
        self.assertIn("exec", options.parse(["--no-api", "run-once"]).capabilities["supported_actions"])

    def test_verify_runs_from_local_job_files_not_from_freezer_api(self):
        # freezer-api 19's job schema knows no verify action, so it is no default capability there
        job = jobdoc.prepare(job_of({"action": "verify"}), "j")
        local = options.parse(["--no-api", "run-once"]).capabilities
        self.assertIsNone(jobdoc.unsupported(job, local))
        api = options.parse(["start"]).capabilities
        self.assertIn("supported_actions", jobdoc.unsupported(job, api))

    def test_is_exec_sees_through_case_and_spaces(self):
        self.assertTrue(actionvalues.is_exec({"action": " EXEC "}))
        self.assertFalse(actionvalues.is_exec({"action": "backup"}))
