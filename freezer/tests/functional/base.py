"""Helpers for functional tests: source trees, tree comparison, running the agent."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import fixtures
import testtools

_BESIDE_PYTHON = os.path.join(os.path.dirname(sys.executable), "freezer-agent")
AGENT = _BESIDE_PYTHON if os.path.exists(_BESIDE_PYTHON) else shutil.which("freezer-agent")


def write(path: str, data: bytes | str, mode: int = 0o644, mtime: int | None = None) -> None:
    """Create a file (and its parents) with content, mode and mtime."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def make_tree(root: str) -> None:
    """A small tree with the cases that break backup tools."""
    write(f"{root}/plain.txt", "hello\n" * 100, mtime=1_600_000_000)
    write(f"{root}/random.bin", os.urandom(300_000), mode=0o600)
    write(f"{root}/dir with spaces/naïve ünïcode ☃.txt", "snow\n", mode=0o640)
    write(f"{root}/deep/a/b/c/d.txt", "deep\n", mode=0o755)
    os.makedirs(f"{root}/empty/dir")
    os.symlink("plain.txt", f"{root}/link-to-plain")
    os.symlink("/nonexistent/target", f"{root}/dangling")
    os.utime(f"{root}/deep/a", (1_500_000_000, 1_500_000_000))


def describe_tree(root: str) -> dict:
    """Everything a restore must give back: type, mode, mtime, content or link target."""
    state = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            if os.path.islink(path):
                state[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                state[rel] = ("dir", oct(info.st_mode), info.st_mtime_ns)
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                state[rel] = ("file", oct(info.st_mode), info.st_mtime_ns, digest)
    return state


def mount_small_disk(test: testtools.TestCase, path: str, owner_uid: int, *options: str) -> str:
    """Mount a 2 MiB tmpfs at ``path`` owned by ``owner_uid`` (``ro`` among ``options``: read-only)."""
    os.makedirs(path, exist_ok=True)
    settings = ",".join(("size=2m", f"uid={owner_uid}", "mode=0755", *options))
    subprocess.run(["mount", "-t", "tmpfs", "-o", settings, "freezer-test-disk", path], check=True)
    test.addCleanup(subprocess.run, ["umount", "-l", path], check=False)
    return path


def local_date(timestamp: int) -> str:
    """``YYYY-MM-DDThh:mm:ss`` as ``--restore-from-date`` takes it."""
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%dT%H:%M:%S")


class AgentTestCase(testtools.TestCase):
    """Runs the installed freezer-agent; subclasses say which storage."""

    agent_prefix: tuple[str, ...] = ()  # a command that runs the agent, e.g. with fewer privileges

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.source = os.path.join(self.tmp, "source")
        os.makedirs(self.source)
        self.backup_name = "test-backup"

    def storage_args(self) -> list[str]:
        """The options that select and reach the storage under test."""
        raise NotImplementedError

    def agent(self, *args: str, expect: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run freezer-agent with the storage options; check its exit code."""
        argv = [*self.agent_prefix, AGENT, *self.storage_args(), "--backup-name", self.backup_name, *args]
        run_env = dict(os.environ, **(env or {}))
        proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, timeout=300)
        if expect is not None and proc.returncode != expect:
            self.fail(f"exit {proc.returncode}, expected {expect}\nargv: {argv}\n"
                      f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def result_of(self, *args: str, expect: int = 0) -> dict:
        """Run the agent with ``--metadata-out`` and return its JSON result."""
        out = os.path.join(self.tmp, "result.json")
        self.agent(*args, "--metadata-out", out, expect=expect)
        with open(out, encoding="utf-8") as handle:
            return json.load(handle)

    def backup(self, *args: str) -> dict:
        return self.result_of("--action", "backup", "--path-to-backup", self.source, *args)

    def restore(self, target: str, *args: str) -> dict:
        return self.result_of("--action", "restore", "--restore-abs-path", target, *args)

    def assertSameTree(self, expected: dict, root: str) -> None:
        self.assertEqual(expected, describe_tree(root))

    def assertOneLineError(self, proc: subprocess.CompletedProcess, *words: str) -> None:
        """Non-zero exit, one error line containing ``words``, no traceback."""
        self.assertNotEqual(0, proc.returncode)
        errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
        self.assertEqual(1, len(errors), proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        for word in words:
            self.assertIn(word, errors[0])

    def assertFailsAtOnce(self, proc: subprocess.CompletedProcess, *words: str) -> None:
        """A permanent failure: one error line containing ``words``, and no retry before it."""
        self.assertOneLineError(proc, *words)
        self.assertNotIn("retrying", proc.stderr)
        self.assertNotIn("resuming", proc.stderr)


def soon(condition, seconds: float = 10.0) -> bool:
    """Whether ``condition()`` holds within ``seconds`` (a growth's logins finish in a thread of their own)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
