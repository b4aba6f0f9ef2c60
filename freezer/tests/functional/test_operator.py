"""What an operator sees: progress on a terminal, summaries, dry-run plans, exit codes, the info listing."""

import errno
import json
import os
import pty
import signal
import subprocess
import time

from freezer.actions.progress import size
from freezer.tests.functional.base import AGENT, write
from freezer.tests.functional.test_local import LocalAgentTest

CLEAR = "\r\x1b[K"


def in_terminal(argv: list[str], on_output=None, timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; return its exit code and all it wrote.

    ``on_output(text_so_far, proc)`` is called after each read, e.g. to send a signal.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            output += data
            if on_output:
                on_output(output.decode("utf-8", "replace"), proc)
    finally:
        os.close(master)
    return proc.wait(timeout=60), output.decode("utf-8", "replace")


class OperatorTest(LocalAgentTest):
    def argv(self, *args: str) -> list[str]:
        return [AGENT, *self.storage_args(), "--backup-name", self.backup_name, *args]

    def big_source(self) -> None:
        """Enough incompressible data that a bzip2 backup runs for more than a few redraws."""
        write(f"{self.source}/big.bin", os.urandom(8 << 20))
        write(f"{self.source}/small.txt", "small\n")


class TestProgressAndSummary(OperatorTest):
    def test_progress_line_and_summary_on_a_terminal(self):
        self.big_source()
        code, out = in_terminal(self.argv("--path-to-backup", self.source, "--compression", "bzip2"))
        self.assertEqual(0, code, out)
        self.assertIn(f"{CLEAR}backup level 0: ", out)
        self.assertRegex(out, r"backup level 0: \d+ files, [0-9.]+ [KMG]?i?B read, [0-9.]+ [KMG]?i?B stored, ")
        # the line is cleared before the summary, which is the last thing written
        last_line = out.rindex("backup level 0: ")
        self.assertIn(CLEAR, out[last_line:])
        summary = out[out.rindex(CLEAR) + len(CLEAR):]
        self.assertTrue(summary.startswith("backup done: "), summary)
        self.assertIn("_test-backup level 0 (new chain) in local:", summary)
        self.assertRegex(summary, r"\n  3 files, 8\.0 MiB read, 8\.\d MiB stored, 0:\d\d, ")

        target = os.path.join(self.tmp, "restored")
        code, out = in_terminal(self.argv("--action", "restore", "--restore-abs-path", target))
        self.assertEqual(0, code, out)
        self.assertIn(f"{CLEAR}restore level 1 of 1 (level 0): ", out)
        self.assertRegex(out, r"restore level 1 of 1 \(level 0\): [0-9.]+ [KMG]?i?B of 8\.\d MiB")
        summary = out[out.rindex(CLEAR) + len(CLEAR):]
        self.assertTrue(summary.startswith("restore done: "), summary)
        self.assertIn(f"into {target}", summary)
        self.assertIn("1 level(s), 3 files, 8.", summary)

    def test_quiet_terminal_shows_neither(self):
        self.big_source()
        code, out = in_terminal(self.argv("--path-to-backup", self.source, "--compression", "bzip2", "--quiet"))
        self.assertEqual(0, code, out)
        self.assertEqual("", out)

    def test_no_terminal_no_progress_but_a_summary(self):
        self.big_source()
        proc = self.agent("--path-to-backup", self.source, "--compression", "bzip2")
        self.assertNotIn("backup level 0: ", proc.stderr)
        self.assertNotIn("\x1b", proc.stderr)
        self.assertTrue(proc.stderr.startswith("backup done: "), proc.stderr)
        self.assertEqual("", proc.stdout)

    def test_admin_summary(self):
        write(f"{self.source}/a", "a")
        self.backup()
        proc = self.agent("--action", "admin", "--remove-older-than", "30")
        self.assertIn("admin done: removed 0 chain(s), 0 incomplete level(s), 0 partial upload(s)", proc.stderr)

    def test_log_file_has_summary_warnings_and_the_error_line(self):
        log = os.path.join(self.tmp, "agent.log")
        write(f"{self.source}/a", "a")
        self.backup("--log-file", log)
        self.backup("--log-file", log, "--compression", "zstd")  # warns: a new chain
        self.agent("--action", "restore", "--restore-abs-path", self.source, "--log-file", log, expect=2)
        with open(log, encoding="utf-8") as handle:
            text = handle.read()
        self.assertIn("INFO freezer: backup done: ", text)
        self.assertIn("WARNING freezer.actions.backup: compression changed from gzip to zstd", text)
        self.assertIn("ERROR freezer: error: --restore-abs-path", text)
        self.assertIn("is not empty", text.splitlines()[-1])


class TestDryRun(OperatorTest):
    def test_plans(self):
        write(f"{self.source}/a", "a")
        proc = self.agent("--path-to-backup", self.source, "--dry-run")
        self.assertIn("dry run: would back up", proc.stderr)
        self.assertIn("level 0, a new chain; nothing was written", proc.stderr)
        first = self.backup()
        proc = self.agent("--path-to-backup", self.source, "--dry-run")
        self.assertIn("level 1 of the chain of", proc.stderr)
        self.assertIn("on level 0 of", proc.stderr)
        proc = self.agent("--action", "restore", "--restore-abs-path", f"{self.tmp}/r", "--dry-run")
        self.assertIn(f"dry run: would restore {first['hostname']}_test-backup into {self.tmp}/r", proc.stderr)
        self.assertIn(f"1 level(s), {size(first['size'])}: level 0 of ", proc.stderr)
        self.assertFalse(os.path.exists(f"{self.tmp}/r"))
        proc = self.agent("--action", "admin", "--remove-older-than", "0", "--dry-run")
        self.assertIn("dry run: would remove 0 chain(s)", proc.stderr)


class TestExitCodes(OperatorTest):
    def test_done_is_0(self):
        write(f"{self.source}/a", "a")
        self.agent("--path-to-backup", self.source, expect=0)

    def test_failed_is_2(self):
        proc = self.agent("--path-to-backup", f"{self.tmp}/missing", expect=2)
        self.assertOneLineError(proc, "--path-to-backup", "does not exist")

    def test_command_line_errors_are_2_and_one_line(self):
        for args, words in ((["--ftp-port", "abc"], ["--ftp-port", "'abc'"]),
                            (["--max-level", "-1"], ["--max-level", "'-1'"]),
                            (["--backup-nmae", "x"], ["did you mean --backup-name?"]),
                            (["--ftp-hots", "h"], ["unknown option --ftp-hots: did you mean --ftp-host?"])):
            proc = subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=60)
            self.assertEqual(2, proc.returncode, proc.stderr)
            self.assertEqual(1, len(proc.stderr.splitlines()), proc.stderr)
            self.assertTrue(proc.stderr.startswith("freezer-agent: error: "), proc.stderr)
            for word in words:
                self.assertIn(word, proc.stderr)

    def test_help_is_0(self):
        proc = subprocess.run([AGENT, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode)
        self.assertIn("exit codes:", proc.stdout)

    def interrupt(self, signum: int) -> tuple[int, str]:
        self.big_source()
        sent = []

        def once_running(text: str, proc: subprocess.Popen) -> None:
            if "backup level 0: " in text and not sent:
                proc.send_signal(signum)
                sent.append(True)

        code, out = in_terminal(self.argv("--path-to-backup", self.source, "--compression", "xz"), once_running)
        self.assertTrue(sent, out)
        return code, out

    def test_sigint_is_130(self):
        code, out = self.interrupt(signal.SIGINT)
        self.assertEqual(130, code, out)
        self.assertIn("freezer-agent: error: interrupted: nothing was recorded", out)

    def test_sigterm_is_143(self):
        code, out = self.interrupt(signal.SIGTERM)
        self.assertEqual(143, code, out)
        self.assertIn("freezer-agent: error: stopped by SIGTERM: nothing was recorded", out)
        self.assertEqual([], self.agent("--action", "info", "--metadata-out", "-", expect=2).stdout.split())


class TestInfoListing(OperatorTest):
    def test_lists_every_backup_in_the_container(self):
        write(f"{self.source}/a", "a" * 1000)
        first = self.backup()
        self.backup()
        self.backup("--backup-name", "etc", "--hostname", "other-host")
        proc = subprocess.run([AGENT, *self.storage_args(), "--action", "info"], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        rows = [line.split() for line in proc.stdout.splitlines()[2:]]
        self.assertEqual([["other-host", "etc", "1", "1"], [first["hostname"], "test-backup", "1", "2"]],
                         [row[:4] for row in rows])
        out = os.path.join(self.tmp, "names.json")
        subprocess.run([AGENT, *self.storage_args(), "--action", "info", "--metadata-out", out], check=True,
                       capture_output=True, timeout=60)
        with open(out, encoding="utf-8") as handle:
            names = json.load(handle)["names"]
        mine = names[1]
        self.assertEqual(("test-backup", 1, 2), (mine["backup_name"], mine["chains"], mine["levels"]))
        self.assertGreater(mine["size"], first["size"])
        self.assertIsNotNone(mine["newest"])

    def test_empty_container(self):
        os.makedirs(self.container)
        proc = subprocess.run([AGENT, *self.storage_args(), "--action", "info"], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertIn("(no backups in this container)", proc.stdout)

    def test_unknown_name_says_so_and_exits_2(self):
        write(f"{self.source}/a", "a")
        self.backup()
        proc = self.agent("--action", "info", "--backup-name", "nope", expect=2)
        self.assertOneLineError(proc, "no backup named 'nope'", "without --backup-name lists")
