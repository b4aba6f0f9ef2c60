"""The agent end to end on local storage, and the errors every user meets first."""

import json
import os
import shutil
import tarfile

from freezer.tests.functional import roundtrip
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree, write


class LocalAgentTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.container = os.path.join(self.tmp, "container")

    def storage_args(self):
        return ["--storage", "local", "--container", self.container]

    def storage_root(self):
        return self.container


class TestLocalRoundTrip(roundtrip.RoundTripTests, roundtrip.LeftoverTests, LocalAgentTest):
    """The shared round trips on local storage."""


class TestLocalErrors(LocalAgentTest):
    def test_unknown_storage(self):
        proc = self.agent("--storage", "tape", expect=None)
        self.assertOneLineError(proc, "tape", "--storage")

    def test_missing_container(self):
        proc = self.agent("--container", "", "--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "--container")

    def test_missing_path_to_backup(self):
        self.assertOneLineError(self.agent(expect=None), "--path-to-backup")

    def test_path_that_does_not_exist(self):
        proc = self.agent("--path-to-backup", f"{self.tmp}/nope", expect=None)
        self.assertOneLineError(proc, "does not exist")

    def test_bad_restore_date(self):
        proc = self.agent("--action", "restore", "--restore-abs-path", self.tmp + "/r",
                          "--restore-from-date", "yesterday", expect=None)
        self.assertOneLineError(proc, "--restore-from-date")

    def test_dry_run_writes_nothing(self):
        write(f"{self.source}/f", "x")
        result = self.backup("--dry-run")
        self.assertTrue(result["dry_run"])
        self.assertFalse(os.path.exists(self.container))

    def test_config_file_and_command_line(self):
        ini = os.path.join(self.tmp, "agent.ini")
        write(ini, f"[default]\npath_to_backup = {self.source}\ncompression = none\nbackup_name = from-ini\n")
        write(f"{self.source}/f", "x")
        out = os.path.join(self.tmp, "out.json")
        self.agent("--config", ini, "--metadata-out", out)
        with open(out) as handle:
            self.assertEqual("test-backup", json.load(handle)["backup_name"])

    def test_restore_never_writes_outside_target(self):
        ref = "1000/0_1000"
        data_dir = f"{self.container}/data/tar/{self._prefix()}/{ref}"
        os.makedirs(data_dir)
        archive = os.path.join(data_dir, "data")
        evil = os.path.join(self.tmp, "evil.txt")
        write(evil + ".src", "escaped")
        with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(evil + ".src", arcname="../evil.txt")
            tar.add(evil + ".src", arcname=evil)
            link = tarfile.TarInfo("escape")
            link.type, link.linkname = tarfile.SYMTYPE, self.tmp
            tar.addfile(link)
            tar.add(evil + ".src", arcname="escape/through-link.txt")
        write(f"{data_dir}/engine_metadata", "")
        meta = {"engine_name": "tar", "compression": "none", "encryption": False}
        write(f"{self.container}/metadata/tar/{self._prefix()}/{ref}/metadata", json.dumps(meta))
        target = os.path.join(self.tmp, "target")
        self.agent("--action", "restore", "--restore-abs-path", target, expect=None)
        self.assertFalse(os.path.exists(evil))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "through-link.txt")))
        self.assertEqual(["escaped"], [open(evil + ".src").read()])

    def test_secrets_never_printed(self):
        write(f"{self.source}/f", "x")
        log = os.path.join(self.tmp, "agent.log")
        proc = self.agent("--path-to-backup", self.source, "--ftp-password", "hunter2-secret",
                          "--log-file", log, "--metadata-out", "-", "--debug")
        with open(log) as handle:
            self.assertNotIn("hunter2-secret", handle.read() + proc.stdout + proc.stderr)

    def _prefix(self):
        import socket

        return f"{socket.gethostname()}_{self.backup_name}"


class TestUnreadableFiles(LocalAgentTest):
    """Root without CAP_DAC_OVERRIDE meets permissions like any user: a file it cannot read."""

    agent_prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--") if os.geteuid() == 0 else ()

    def test_unreadable_file_is_a_warning_and_the_rest_is_backed_up(self):
        write(f"{self.source}/readable.txt", "kept")
        write(f"{self.source}/locked.txt", "cannot be read", mode=0o000)
        result = self.result_of("--action", "backup", "--path-to-backup", self.source, expect=1)  # done, warnings
        self.assertEqual(1, len(result["warnings"]), result)
        self.assertIn("locked.txt", result["warnings"][0])
        self.assertIn("Permission denied", result["warnings"][0])
        target = os.path.join(self.tmp, "restored")
        self.agent_prefix = ()
        self.restore(target)
        self.assertEqual(["readable.txt"], sorted(os.listdir(target)))


class TestChildProcessesGetNoSecrets(LocalAgentTest):
    """tar and the compressor run without the secrets the agent was given in its environment."""

    SECRETS = {"FREEZER_FTP_PASSWORD": "ftp-Secret-1", "FREEZER_SSH_PASSWORD": "ssh-Secret-2",
               "SECRET_KEY": "s3-Secret-3", "OS_PASSWORD": "os-Secret-4", "AWS_SECRET_ACCESS_KEY": "aws-Secret-5",
               "AWS_SESSION_TOKEN": "aws-Token-6"}

    def spy_on(self, *tools: str) -> tuple[str, str]:
        """A directory of scripts that record their environment, then run the real tool: (bin, dumps)."""
        bin_dir, dumps = os.path.join(self.tmp, "spy-bin"), os.path.join(self.tmp, "dumps")
        os.makedirs(dumps)
        for tool in tools:
            real = shutil.which(tool)
            if real is None:
                continue
            write(os.path.join(bin_dir, tool), f'#!/bin/sh\nenv > "{dumps}/{tool}.$$"\nexec {real} "$@"\n',
                  mode=0o755)
        return bin_dir, dumps

    def test_backup_and_restore_without_secrets_in_children(self):
        bin_dir, dumps = self.spy_on("tar", "gzip", "pigz", "openssl")
        env = dict(self.SECRETS, PATH=f"{bin_dir}:{os.environ['PATH']}")
        make_tree(self.source)
        pass_file = os.path.join(self.tmp, "pass")
        write(pass_file, "enc-Phrase-7\n", mode=0o600)
        self.agent("--action", "backup", "--path-to-backup", self.source, "--encrypt-pass-file", pass_file, env=env)
        target = os.path.join(self.tmp, "restored")
        self.agent("--action", "restore", "--restore-abs-path", target, "--encrypt-pass-file", pass_file, env=env)
        self.assertSameTree(describe_tree(self.source), target)
        spied = {name.split(".")[0] for name in os.listdir(dumps)}
        self.assertIn("tar", spied)
        self.assertNotIn("openssl", spied)  # encryption runs in the agent: no child sees the pass file
        self.assertTrue(spied & {"gzip", "pigz"}, spied)
        for name in os.listdir(dumps):
            with open(os.path.join(dumps, name)) as dump:
                seen = dump.read()
            for variable, value in self.SECRETS.items():
                self.assertNotIn(variable, seen, name)
                self.assertNotIn(value, seen, name)
