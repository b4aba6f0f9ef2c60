"""What the agent's children see of its environment: tools an allow-list, exec commands all but its secrets."""

import os
import shutil

from freezer.tests.functional.base import describe_tree, make_tree, write
from freezer.tests.functional.test_local import LocalAgentTest

#: the agent's own secrets, as an operator passes them in the environment
AGENT_SECRETS = {"FREEZER_FTP_PASSWORD": "ftp-Secret-1", "FREEZER_SSH_PASSWORD": "ssh-Secret-2",
                 "SECRET_KEY": "s3-Secret-3", "OS_PASSWORD": "os-Secret-4"}
#: the operator's variables: secrets the deny-list never knew by name, and plain settings
OPERATOR = {"DB_PASSWD": "db-Passwd-5", "GITHUB_PAT": "ghp_Pat6", "PGPASSWORD": "pg-Pass-7",
            "BACKUP_TARGET": "nightly", "TAR_OPTIONS": "--verbose", "LC_TIME": "C", "TZ": "UTC"}
PASSPHRASE = "enc-Phrase-8"
#: what a tool may see: the agent's allow-list, and what sh sets itself (PWD, SHLVL, _)
ALLOWED = {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR", "LVM_SYSTEM_DIR", "PWD", "SHLVL",
           "_"}


def read_dumps(dumps: str) -> dict[str, dict[str, str]]:
    """Each recorded environment (``env`` output) by file name."""
    seen = {}
    for name in os.listdir(dumps):
        with open(os.path.join(dumps, name)) as dump:
            seen[name] = dict(line.split("=", 1) for line in dump.read().splitlines() if "=" in line)
    return seen


class TestChildEnvironments(LocalAgentTest):
    def spy_on(self, *tools: str) -> tuple[str, str]:
        """Scripts that record their environment, then run the real tool: (their directory, the dumps)."""
        bin_dir, dumps = os.path.join(self.tmp, "spy-bin"), os.path.join(self.tmp, "dumps")
        os.makedirs(dumps)
        for tool in tools:
            real = shutil.which(tool)
            if real is not None:
                write(os.path.join(bin_dir, tool), f'#!/bin/sh\nenv > "{dumps}/{tool}.$$"\nexec {real} "$@"\n',
                      mode=0o755)
        return bin_dir, dumps

    def test_tar_and_compressors_get_only_the_allow_list(self):
        bin_dir, dumps = self.spy_on("tar", "gzip", "pigz", "xz")
        env = dict(AGENT_SECRETS, **OPERATOR, PATH=f"{bin_dir}:{os.environ['PATH']}")
        make_tree(self.source)
        pass_file = os.path.join(self.tmp, "pass")
        write(pass_file, PASSPHRASE + "\n", mode=0o600)
        self.agent("--action", "backup", "--path-to-backup", self.source, "--encrypt-pass-file", pass_file, env=env)
        target = os.path.join(self.tmp, "restored")
        self.agent("--action", "restore", "--restore-abs-path", target, "--encrypt-pass-file", pass_file, env=env)
        self.assertSameTree(describe_tree(self.source), target)
        seen = read_dumps(dumps)
        self.assertIn("tar", {name.split(".")[0] for name in seen})
        for name, variables in seen.items():
            self.assertEqual(set(), {v for v in variables if v not in ALLOWED and not v.startswith("LC_")}, name)
            self.assertEqual(("C", "UTC"), (variables["LC_TIME"], variables["TZ"]), name)
            self.assertNotIn(PASSPHRASE, str(variables), name)

    def test_exec_keeps_the_operators_environment_without_the_agents_secrets(self):
        dump = os.path.join(self.tmp, "exec", "env")
        os.makedirs(os.path.dirname(dump))
        pass_file = os.path.join(self.tmp, "pass")
        write(pass_file, PASSPHRASE + "\n", mode=0o600)
        env = dict(AGENT_SECRETS, **OPERATOR, COPY_OF_PASSPHRASE=PASSPHRASE,
                   FTP_URL="ftp://agent:ftp-Secret-1@backup.example.com/")
        self.agent("--action", "exec", "--command", f"env > {dump}", "--encrypt-pass-file", pass_file, env=env)
        variables = read_dumps(os.path.dirname(dump))["env"]
        for name, value in OPERATOR.items():
            self.assertEqual(value, variables.get(name), name)
        for name in [*AGENT_SECRETS, "COPY_OF_PASSPHRASE", "FTP_URL"]:
            self.assertNotIn(name, variables)
        text = str(variables)
        for value in [*AGENT_SECRETS.values(), PASSPHRASE]:
            self.assertNotIn(value, text)
