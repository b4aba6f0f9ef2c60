"""The command line as a user meets it: one-line errors and a grouped --help."""

import re
import subprocess
import sys

import testtools
from oslo_config import cfg

from freezer.common import cli, config


def error_of(*argv: str) -> cli.UsageError:
    try:
        config.build(list(argv))
    except cli.UsageError as exc:
        return exc
    raise AssertionError(f"{argv} was accepted")


class TestCommandLineErrors(testtools.TestCase):
    def assertOneLine(self, error: cli.UsageError, *words: str) -> None:
        self.assertEqual(2, error.exit_code)
        self.assertNotIn("\n", str(error))
        self.assertNotIn("usage:", str(error))
        for word in words:
            self.assertIn(word, str(error))

    def test_bad_type_names_the_option_with_dashes(self):
        error = error_of("--ftp-port", "abc")
        self.assertOneLine(error, "--ftp-port", "'abc'", "port number")
        self.assertNotIn("ftp_port", str(error))

    def test_bad_number(self):
        self.assertOneLine(error_of("--remove-older-than", "soon"), "--remove-older-than", "'soon'", "a number")
        self.assertOneLine(error_of("--max-level", "two"), "--max-level", "whole number")

    def test_negative_number(self):
        self.assertOneLine(error_of("--max-level", "-1"), "--max-level", "'-1'", "greater than or equal to 1")
        self.assertOneLine(error_of("--remove-older-than", "-5"), "--remove-older-than", "'-5'")

    def test_bad_choice(self):
        self.assertOneLine(error_of("--compression", "rar"), "--compression", "'rar'", "zstd")

    def test_unknown_flag_with_did_you_mean(self):
        self.assertOneLine(error_of("--ftp-hots", "example.com"), "unknown option --ftp-hots",
                           "did you mean --ftp-host?")
        self.assertOneLine(error_of("--path_to_backup=/etc"), "unknown option --path_to_backup",
                           "did you mean --path-to-backup?")

    def test_unknown_flag_without_a_close_one(self):
        self.assertOneLine(error_of("--zzzzzz"), "unknown option --zzzzzz", "--help")

    def test_missing_value(self):
        self.assertOneLine(error_of("--backup-name"), "--backup-name needs a value")

    def test_stray_argument(self):
        self.assertOneLine(error_of("backup"), "unexpected argument 'backup'")

    def test_good_command_line_passes(self):
        conf = config.build(["--ftp-port", "2121", "--max-level", "3", "--noincremental", "-q"])
        self.assertEqual((2121, 3, False, True), (conf.ftp_port, conf.max_level, conf.incremental, conf.quiet))


class TestHelp(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.text = config.help_text()

    def section(self, title: str) -> str:
        return self.text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]

    def test_groups_in_order(self):
        titles = ["actions", "source", "storage", "storage: ftp, ftps and sftp", "storage: ssh", "storage: s3",
                  "storage: swift", "levels and retention", "compression and encryption", "output"]
        positions = [self.text.index(f"\n{title}:\n") for title in titles]
        self.assertEqual(sorted(positions), positions)

    def test_options_in_their_group(self):
        self.assertIn("--ftp-port PORT", self.section("storage: ftp, ftps and sftp"))
        self.assertIn("--secret-key-file FILE", self.section("storage: s3"))
        self.assertIn("--encrypt-pass-file FILE", self.section("compression and encryption"))
        self.assertIn("--remove-older-than N", self.section("levels and retention"))
        self.assertIn("--metadata-out FILE", self.section("output"))

    def test_every_option_once_with_dashes_and_no_negations(self):
        entries = re.findall(r"^  (?:-\w, )?--([a-z0-9-]+)", self.text, re.M)
        self.assertEqual(sorted([opt.name for opt in config.all_opts()] + ["help", "version"]), sorted(entries))
        self.assertNotIn("--noincremental", self.text)
        self.assertNotIn("--nodebug", self.text)
        self.assertIsNone(re.search(r"--[a-z0-9-]*_", self.text))

    def test_required_options_exit_codes_and_examples(self):
        self.assertIn("backup    --path-to-backup PATH --backup-name NAME", self.text)
        for line in ("0    done", "1    done with warnings", "2    failed", "130", "143"):
            self.assertIn(line, self.text)
        self.assertIn("examples:\n  freezer-agent --action backup", self.text)

    def test_every_action_is_offered_and_has_its_requirements(self):
        self.assertIn("--action {" + ",".join(config.ACTIONS) + "}", self.section("actions"))
        required = self.text.split("required, by action:\n", 1)[1].split("\n\n", 1)[0]
        listed = re.findall(r"^  ([a-z]+) ", required, re.M)
        self.assertEqual(list(config.ACTIONS), listed)
        self.assertEqual(set(config.ACTIONS), set(cli.REQUIRED))
        self.assertIn("exec      --command CMD", required)

    def test_every_storage_is_offered(self):
        self.assertIn("--storage {" + ",".join(config.STORAGES) + "}", self.section("storage"))

    def test_agent_help_offers_exec_and_verify(self):
        proc = subprocess.run([sys.executable, "-m", "freezer.main", "--help"], capture_output=True, text=True,
                              check=True)
        self.assertIn("--action {backup,restore,info,admin,exec,verify}", proc.stdout)

    def test_an_option_missing_from_the_table_still_shows(self):
        extra = cfg.IntOpt("upload-limit", help="Bytes per second at most.")
        text = cli.help_text([*config.all_opts(), extra], {})
        self.assertIn("--upload-limit N", text.split("\nother options:\n", 1)[1])

    def test_wants_help(self):
        self.assertTrue(cli.wants_help(["--action", "info", "-h"]))
        self.assertFalse(cli.wants_help(["--", "--help"]))
        self.assertFalse(cli.wants_help(["--backup-name", "x"]))
