"""Hostile command lines and files (issue 24): exit code 2 and one error line naming the option."""

import os
import subprocess
import sys

import fixtures
import testtools

from freezer.common import config, credentials, inputs, upstream
from freezer.errors import FreezerError

LONG_HOST = "a" * 300
LONG_LABEL = "a" * 70 + ".example.com"


class TestAgentRefuses(testtools.TestCase):
    """The real freezer-agent: exit code 2, one line naming the option, nothing written."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.source = os.path.join(self.tmp, "source")
        os.makedirs(self.source)
        self.container = os.path.join(self.tmp, "container")
        binary = os.path.join(self.tmp, "binary.conf")
        with open(binary, "wb") as out:
            out.write(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00" * 50)
        self.binary_conf = binary

    def agent(self, *argv: str | bytes) -> subprocess.CompletedProcess:
        base = ["--action", "backup", "--storage", "local", "--container", self.container,
                "--path-to-backup", self.source]
        if not any(arg == "--backup-name" for arg in argv):
            base += ["--backup-name", "b"]
        return subprocess.run([sys.executable, "-m", "freezer.main", *base, *argv], capture_output=True,
                              timeout=60, env=dict(os.environ, PYTHONPATH=os.getcwd()))

    def assertRefused(self, words: str, *argv: str | bytes) -> None:
        proc = self.agent(*argv)
        stderr = proc.stderr.decode("utf-8", "replace")
        self.assertEqual(2, proc.returncode, stderr)
        self.assertEqual(1, len(stderr.splitlines()), stderr)
        self.assertIn(words, stderr)
        self.assertNotIn("unexpected", stderr)
        self.assertFalse(os.path.exists(self.container), "the agent wrote to the storage")

    def test_ports_and_levels_that_are_not_numbers(self):
        self.assertRefused("--ftp-port: invalid value 'nan'", "--ftp-port", "nan")
        self.assertRefused("--ftp-port: invalid value '1e308'", "--ftp-port", "1e308")
        self.assertRefused("--max-level: invalid value 'nan'", "--max-level", "nan")

    def test_floats_that_are_not_finite(self):
        self.assertRefused("--ftp-timeout: invalid value 'nan': expected a finite number", "--ftp-timeout", "nan")
        self.assertRefused("--remove-older-than: invalid value 'inf'", "--remove-older-than", "inf")

    def test_negative_rate_other_than_minus_one(self):
        self.assertRefused("--upload-limit: '-5'", "--upload-limit", "-5")
        self.assertRefused("--download-limit: 'nan'", "--download-limit", "nan")

    def test_backup_name_with_newline_or_slash(self):
        self.assertRefused("invalid --backup-name 'a\\nb': control characters", "--backup-name", "a\nb")
        self.assertRefused("invalid --backup-name 'a/b'", "--backup-name", "a/b")

    def test_host_not_utf8_or_too_long(self):
        ftp = ("--storage", "ftp", "--ftp-username", "u", "--ftp-password", "p")
        self.assertRefused("invalid --ftp-host '\\xff\\xfehost': not UTF-8 text", *ftp, "--ftp-host",
                           b"\xff\xfehost")
        self.assertRefused("invalid --ftp-host (300 characters): a host name has at most 253", *ftp,
                           "--ftp-host", LONG_HOST)
        self.assertRefused("label longer than 63", "--storage", "ssh", "--ssh-host", LONG_LABEL)

    def test_binary_config_file(self):
        self.assertRefused(f"--config {self.binary_conf} is not a text file", "--config", self.binary_conf)

    def test_endless_files_are_read_bounded(self):
        self.assertRefused("--config /dev/zero is larger than 1024 KiB", "--config", "/dev/zero")
        self.assertRefused("--encrypt-pass-file /dev/zero holds NUL bytes", "--encrypt-pass-file", "/dev/zero")
        self.assertRefused("--ftp-password-file /dev/zero holds NUL bytes", "--storage", "ftp", "--ftp-host",
                           "localhost", "--ftp-password-file", "/dev/zero")


class TestChecks(testtools.TestCase):
    """The checks themselves, as the ini file and job documents meet them."""

    def test_ini_values_not_finite(self):
        opt = config.option_for("ftp_timeout")
        error = self.assertRaises(FreezerError, config.coerce, opt, "inf")
        self.assertIn("ftp_timeout (--ftp-timeout): invalid value 'inf': expected a finite number", str(error))
        error = self.assertRaises(FreezerError, config.coerce, config.option_for("max_level"), float("inf"))
        self.assertIn("max_level (--max-level)", str(error))

    def test_hosts_accepted(self):
        for host in ("example.com", "127.0.0.1", "::1", "[::1]", "fe80::1%eth0", "bücher.example"):
            inputs.check_host("--ftp-host", host)
        for host, why in (("a..b", "an empty label"), ("a b", "white space"), ("x" * 64, "longer than 63")):
            error = self.assertRaises(FreezerError, inputs.check_host, "--ftp-host", host)
            self.assertIn(why, str(error))

    def test_minus_one_is_the_only_negative_rate(self):
        self.assertIsNone(upstream.byte_rate("-1", "--upload-limit"))
        self.assertRaises(FreezerError, upstream.byte_rate, "-1K", "--upload-limit")
        self.assertRaises(FreezerError, upstream.byte_rate, "-0.5", "--upload-limit")

    def test_secret_line_read_bounded(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "long")
        with open(path, "w") as out:
            out.write("a" * 5000)
        self.assertEqual(b"a" * 1023, credentials.key_line(path, "--auth-key-file"))  # as openssl reads it
        error = self.assertRaises(FreezerError, credentials.key_line, "/dev/null", "--auth-key-file")
        self.assertIn("--auth-key-file /dev/null: the first line is empty", str(error))


class TestCipherPassphrase(testtools.TestCase):
    def test_dev_zero_is_refused_after_a_bounded_read(self):
        from freezer.engine import cipher

        error = self.assertRaises(FreezerError, cipher.read_passphrase, "/dev/zero")
        self.assertIn("--encrypt-pass-file /dev/zero holds NUL bytes", str(error))
