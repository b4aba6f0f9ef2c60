"""``--action verify``: a chain checked end to end without restoring, every problem reported."""

import glob
import json
import os

from freezer.tests.functional.base import make_tree, write
from freezer.tests.functional.test_local import LocalAgentTest
from freezer.tests.functional.test_scheduler import SchedulerTest


class VerifyTest(LocalAgentTest):
    def setUp(self):
        super().setUp()
        make_tree(self.source)
        self.backup()
        write(f"{self.source}/later.txt", "later\n")
        self.backup()

    def level_file(self, level, name):
        [path] = glob.glob(f"{self.container}/data/tar/*/*/{level}_*/{name}")
        return path

    def verify(self, *args, expect=0):
        return self.agent("--action", "verify", *args, expect=expect)

    def test_sound_chain_lists_every_level(self):
        result = self.result_of("--action", "verify")
        self.assertEqual([0, 1], [row["level"] for row in result["levels"]])
        self.assertEqual([[], []], [row["problems"] for row in result["levels"]])
        self.assertGreater(result["levels"][0]["members"], result["levels"][1]["members"])

    def test_newest_scope_checks_one_level(self):
        result = self.result_of("--action", "verify", "--verify-scope", "newest")
        self.assertEqual([1], [row["level"] for row in result["levels"]])

    def test_every_problem_is_reported(self):
        data = self.level_file(0, "data")
        with open(data, "r+b") as handle:
            handle.seek(200)
            byte = handle.read(1)
            handle.seek(200)
            handle.write(bytes([byte[0] ^ 0xFF]))
        os.remove(self.level_file(1, "engine_metadata"))
        proc = self.verify(expect=None)
        self.assertOneLineError(proc, "verify found 3 problem(s)")
        self.assertIn("fails its sha256 check", proc.stderr)
        self.assertIn("the stream does not decode", proc.stderr)
        self.assertIn("engine metadata", proc.stderr)

    def test_truncated_data_is_a_size_problem(self):
        data = self.level_file(1, "data")
        os.truncate(data, os.path.getsize(data) // 2)
        proc = self.verify(expect=None)
        self.assertOneLineError(proc, "level 1", "bytes, the metadata says")

    def test_wrong_passphrase_is_caught(self):
        good, bad = os.path.join(self.tmp, "good"), os.path.join(self.tmp, "bad")
        write(good, "right horse battery\n")
        write(bad, "wrong horse battery\n")
        self.backup_name = "encrypted"
        self.backup("--encrypt-pass-file", good)
        self.verify("--encrypt-pass-file", good)
        proc = self.verify("--encrypt-pass-file", bad, expect=None)
        self.assertOneLineError(proc, "MAC does not match", "--encrypt-pass-file")
        self.assertOneLineError(self.verify(expect=None), "--encrypt-pass-file")

    def test_encrypted_data_is_decrypted_in_the_agent(self):
        pass_file = os.path.join(self.tmp, "pass")
        write(pass_file, "right horse battery\n")
        self.backup_name = "encrypted"
        self.backup("--encrypt-pass-file", pass_file)
        # An openssl that always fails: verify must not need it (nor show it the pass file).
        bin_dir = os.path.join(self.tmp, "no-openssl")
        write(os.path.join(bin_dir, "openssl"), "#!/bin/sh\nexit 1\n", mode=0o755)
        out = os.path.join(self.tmp, "verified.json")
        self.agent("--action", "verify", "--encrypt-pass-file", pass_file, "--metadata-out", out,
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        with open(out, encoding="utf-8") as handle:
            result = json.load(handle)
        self.assertEqual([[]], [row["problems"] for row in result["levels"]])
        self.assertGreater(result["levels"][0]["members"], 0)


class VerifyJobTest(SchedulerTest):
    """The scheduler runs exec and verify as job actions, in order, after the backup."""

    def test_backup_then_verify_then_exec(self):
        marker = os.path.join(self.tmp, "done")
        common = {"storage": "local", "container": os.path.join(self.tmp, "c"), "backup_name": "nightly"}
        job = {"job_actions": [
            {"freezer_action": {**common, "action": "backup", "path_to_backup": self.source}},
            {"freezer_action": {**common, "action": "verify"}},
            {"freezer_action": {"action": "exec", "command": f"echo ok > {marker}"}},
        ]}
        path = self.add_job("job.json", job)
        self.run_once()
        actions = self.state(path)["actions"]
        self.assertEqual(["completed"] * 3, [action["status"] for action in actions])
        self.assertEqual([], actions[1]["result"]["problems"])
        self.assertEqual(0, actions[2]["result"]["exit_code"])
        with open(marker, encoding="utf-8") as handle:
            self.assertEqual("ok", handle.read().strip())

    def test_failing_exec_fails_the_action(self):
        job = {"job_actions": [{"freezer_action": {"action": "exec", "command": "exit 4"}}]}
        path = self.add_job("job.json", job)
        self.run_once(expect=1)
        self.assertIn("exited with status 4", self.state(path)["actions"][0]["error"])
        self.assertNotIn("Traceback", json.dumps(self.state(path)))
