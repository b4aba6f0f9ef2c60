"""``--action exec --command`` and the CPU/IO priority of the agent's children, run for real."""

import os
import shutil

from freezer.tests.functional.test_local import LocalAgentTest

# The nice value (field 19) and I/O class of the shell the agent starts, written to a file.
SHOW_PRIORITY = 'cut -d" " -f19 /proc/self/stat > {out}; ionice -p $$ >> {out}'


class ExecTest(LocalAgentTest):
    def priority_of_child(self, *args):
        out = os.path.join(self.tmp, "priority")
        self.agent("--action", "exec", "--command", SHOW_PRIORITY.format(out=out), *args)
        with open(out, encoding="utf-8") as handle:
            nice, ionice = handle.read().splitlines()
        return int(nice), ionice

    def test_success_reports_exit_code_and_runs_in_a_shell(self):
        marker = os.path.join(self.tmp, "ran")
        result = self.result_of("--action", "exec", "--command", f'echo "$HOME" > {marker}')
        self.assertEqual({"action": "exec", "exit_code": 0}, {k: result[k] for k in ("action", "exit_code")})
        with open(marker, encoding="utf-8") as handle:
            self.assertEqual(os.environ["HOME"], handle.read().strip())

    def test_failure_is_one_line_with_status_and_last_message(self):
        proc = self.agent("--action", "exec", "--command", "echo step one >&2; echo disk gone >&2; exit 3",
                          expect=None)
        self.assertOneLineError(proc, "--command exited with status 3", "disk gone")
        self.assertIn("step one", proc.stderr)

    def test_killed_command_names_the_signal(self):
        proc = self.agent("--action", "exec", "--command", "kill -KILL $$", expect=None)
        self.assertOneLineError(proc, "signal SIGKILL")

    def test_missing_command(self):
        self.assertOneLineError(self.agent("--action", "exec", expect=None), "--command is required")

    def test_command_from_a_job_ini_keeps_shell_variables(self):
        marker = os.path.join(self.tmp, "ran")
        ini = os.path.join(self.tmp, "job.ini")
        with open(ini, "w", encoding="utf-8") as handle:
            handle.write(f"[action]\naction = exec\ncommand = echo $((6 * 7)) > {marker}\n")
        self.agent("--config", ini)
        with open(marker, encoding="utf-8") as handle:
            self.assertEqual("42", handle.read().strip())

    def test_children_inherit_low_priority(self):
        nice, ionice = self.priority_of_child("--low-priority")
        self.assertEqual(19, nice)
        self.assertEqual("idle", ionice)

    def test_children_inherit_max_priority(self):
        nice, ionice = self.priority_of_child("--max-priority", "true")
        self.assertEqual(-19, nice)
        self.assertTrue(ionice.startswith("realtime"), ionice)

    def test_default_priority_is_untouched(self):
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, 0), self.priority_of_child()[0])

    def test_both_priorities_refused(self):
        proc = self.agent("--action", "exec", "--command", "true", "--low-priority", "--max-priority", "yes",
                          expect=None)
        self.assertOneLineError(proc, "--max-priority and --low-priority")

    def test_backup_tar_runs_at_low_priority(self):
        """tar is the child that loads the host: a wrapper records its nice value, then runs it."""
        bin_dir, seen = os.path.join(self.tmp, "bin"), os.path.join(self.tmp, "tar-nice")
        os.makedirs(bin_dir)
        with open(os.path.join(bin_dir, "tar"), "w", encoding="utf-8") as script:
            script.write(f'#!/bin/sh\ncut -d" " -f19 /proc/$$/stat > {seen}\nexec {shutil.which("tar")} "$@"\n')
        os.chmod(os.path.join(bin_dir, "tar"), 0o755)
        with open(os.path.join(self.source, "f"), "w", encoding="utf-8") as handle:
            handle.write("x")
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        self.agent("--action", "backup", "--path-to-backup", self.source, "--low-priority", env=env)
        with open(seen, encoding="utf-8") as handle:
            self.assertEqual("19", handle.read().strip())
