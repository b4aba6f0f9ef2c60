"""Round trips every storage must pass: a mixin for AgentTestCase subclasses.

A subclass gives ``storage_args()`` and either ``storage_root()``, the local directory where a
file server keeps ``--container``, or ``server_view()``, a Storage that reads the container
directly (object stores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

from freezer.storage import registry
from freezer.storage.base import Storage
from freezer.storage.local import LocalStorage
from freezer.tests.functional.base import AGENT, describe_tree, local_date, make_tree, write


class RoundTripTests:
    """Backup, restore, info and admin through the real agent.

    The subclass also defines ``storage_root()``, or ``server_view()`` for object stores.
    """

    def server_view(self) -> Storage:
        """The container as the server keeps it, read without the agent."""
        return registry.wrap(LocalStorage(self.storage_root()))

    def walk(self, path: str = "") -> list[tuple[str, bool]]:
        """Every (path, is_leaf) below ``path`` in the container, hidden uploads included; not the
        timestamp claims (``.timestamps``), which outlive their backups until admin prunes them."""
        view = self.server_view()
        try:
            return [(p, leaf) for p, leaf in _walk(view, path) if "/.timestamps" not in p]
        finally:
            view.close()

    def stored(self, pattern: str) -> list[str]:
        """Container paths (files and directories) matching a glob where ``**/`` spans directories."""
        regex = re.compile(_glob_regex(pattern))
        return sorted(path for path, _ in self.walk() if regex.fullmatch(path))

    def stored_files(self) -> list[str]:
        """Every file under ``data/``, hidden temporary uploads included."""
        return [path for path, leaf in self.walk("data") if leaf]

    #: slows the interrupted backup so the signal lands mid-upload
    slow_compression = "xz"

    def upload_in_progress(self, files_before: int) -> bool:
        """True once a backup's upload has begun; object stores override it (parts are not keys)."""
        return len(self.stored_files()) > files_before

    def read_stored(self, path: str) -> bytes:
        view = self.server_view()
        try:
            return view.get_bytes(path)
        finally:
            view.close()

    def replace_stored(self, path: str, data: bytes) -> None:
        view = self.server_view()
        try:
            view.put_bytes(path, data)
        finally:
            view.close()

    def test_incremental_chain_restores_every_date(self):
        make_tree(self.source)
        states, results = [], []
        for change in (_no_change, _change_one, _change_two):
            change(self.source)
            results.append(self.backup("--compression", "zstd"))
            states.append(describe_tree(self.source))
        self.assertEqual([0, 1, 2], [r["level"] for r in results])
        for index, result in enumerate(results):
            target = os.path.join(self.tmp, f"restore-{index}")
            restored = self.restore(target, "--restore-from-date", local_date(result["time_stamp"]))
            self.assertEqual(index, restored["level"])
            self.assertSameTree(states[index], target)
        latest = os.path.join(self.tmp, "restore-latest")
        self.restore(latest)
        self.assertSameTree(states[-1], latest)

    def test_encrypted_backup_needs_its_pass_file(self):
        make_tree(self.source)
        pass_file = os.path.join(self.tmp, "pass")
        write(pass_file, "s3cret phrase\n", mode=0o600)
        self.backup("--encrypt-pass-file", pass_file, "--compression", "gzip")
        data = self.stored("data/**/data")[-1]
        self.assertEqual(b"Salted__", self.read_stored(data)[:8])
        missing = self.agent("--action", "restore", "--restore-abs-path", f"{self.tmp}/r1", expect=None)
        self.assertOneLineError(missing, "--encrypt-pass-file")
        wrong = os.path.join(self.tmp, "wrong")
        write(wrong, "not it\n")
        bad = self.agent("--action", "restore", "--restore-abs-path", f"{self.tmp}/r2",
                         "--encrypt-pass-file", wrong, expect=None)
        self.assertOneLineError(bad, "--encrypt-pass-file")
        self.restore(f"{self.tmp}/r3", "--encrypt-pass-file", pass_file)
        self.assertSameTree(describe_tree(self.source), f"{self.tmp}/r3")

    def test_every_compression(self):
        write(f"{self.source}/text.txt", "compressible " * 10000)
        for name in ("gzip", "bzip2", "xz", "zstd", "none"):
            self.backup("--compression", name, "--no-incremental")
            target = os.path.join(self.tmp, f"restore-{name}")
            self.restore(target)
            self.assertSameTree(describe_tree(self.source), target)

    def test_info_lists_and_admin_keeps_newest_chain(self):
        write(f"{self.source}/f", "x")
        for _ in range(3):
            self.backup("--no-incremental")
        info = self.result_of("--action", "info")
        self.assertEqual([0, 0, 0], [row["level"] for row in info["backups"]])
        cutoff = local_date(info["backups"][-1]["time_stamp"])
        removed = self.result_of("--action", "admin", "--remove-from-date", cutoff)
        self.assertEqual(2, len(removed["removed"]))
        after = self.result_of("--action", "info")
        self.assertEqual([info["backups"][-1]["time_stamp"]], [r["time_stamp"] for r in after["backups"]])
        self.assertEqual(1, len(self.stored("data/tar/*/*")))
        table = self.agent("--action", "info").stdout
        self.assertIn("level", table)

    def test_corrupted_data_is_refused(self):
        make_tree(self.source)
        self.backup("--compression", "none")
        data = self.stored("data/**/data")[-1]
        content = self.read_stored(data)
        self.replace_stored(data, content[:1000] + b"CORRUPT" + content[1007:])
        proc = self.agent("--action", "restore", "--restore-abs-path", f"{self.tmp}/r", expect=None)
        self.assertOneLineError(proc, "sha256")

    def test_interrupted_backup_leaves_earlier_backups_intact(self):
        write(f"{self.source}/small", "first")
        self.backup()
        write(f"{self.source}/big.bin", os.urandom(40 << 20))
        argv = [AGENT, *self.storage_args(), "--backup-name", self.backup_name,
                "--path-to-backup", self.source, "--compression", self.slow_compression]
        # Counted before the agent starts: counted after, it could already hold the new level's claim.
        files_before = len(self.stored_files())
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: self.upload_in_progress(files_before), proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        self.assertEqual(130, proc.returncode, stderr)
        self.assertNotIn("Traceback", stderr)
        self.assertEqual(1, len(self.stored("metadata/**/metadata")))
        self.assertEqual(files_before, len(self.stored_files()), "a partial upload was left behind")
        target = os.path.join(self.tmp, "restore-after-interrupt")
        self.restore(target)
        self.assertEqual(["small"], os.listdir(target))
        os.remove(f"{self.source}/big.bin")
        self.assertEqual(1, self.backup()["level"])

    def test_restore_refuses_non_empty_target(self):
        write(f"{self.source}/f", "x")
        self.backup()
        target = os.path.join(self.tmp, "busy")
        write(f"{target}/keep", "mine")
        proc = self.agent("--action", "restore", "--restore-abs-path", target, expect=None)
        self.assertOneLineError(proc, "--overwrite")
        self.restore(target, "--overwrite")
        self.assertSameTree(describe_tree(self.source), target)

    def test_restore_without_backup(self):
        proc = self.agent("--action", "restore", "--restore-abs-path", f"{self.tmp}/r", expect=None)
        self.assertOneLineError(proc, "no backup")


    def test_simultaneous_backups_are_all_kept(self):
        """Agents started together on one --backup-name and --hostname each get their own timestamp."""
        outputs, procs, trees = [], [], []
        for index in range(4):
            source = os.path.join(self.tmp, f"source-{index}")
            write(f"{source}/who", f"writer {index}\n")
            write(f"{source}/blob.bin", os.urandom(200_000))
            trees.append(describe_tree(source))
            outputs.append(os.path.join(self.tmp, f"result-{index}.json"))
            procs.append(subprocess.Popen(
                [AGENT, *self.storage_args(), "--backup-name", self.backup_name, "--hostname", "racer",
                 "--path-to-backup", source, "--no-incremental", "--metadata-out", outputs[-1]],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        stamps = []
        for proc, output in zip(procs, outputs, strict=True):
            _, stderr = proc.communicate(timeout=300)
            self.assertEqual(0, proc.returncode, stderr)
            with open(output, encoding="utf-8") as handle:
                stamps.append(json.load(handle)["time_stamp"])
        self.assertEqual(4, len(set(stamps)), stamps)
        info = self.result_of("--action", "info", "--hostname", "racer")
        self.assertEqual(sorted(stamps), [row["time_stamp"] for row in info["backups"]])
        self.assertEqual([], info["incomplete"])
        for index, stamp in enumerate(stamps):
            target = os.path.join(self.tmp, f"restore-{index}")
            self.restore(target, "--hostname", "racer", "--restore-from-date", local_date(stamp))
            self.assertSameTree(trees[index], target)


class LeftoverTests:
    """A SIGKILLed backup leaves a level without metadata: info shows it, admin collects it.

    For file servers, where uploads go to ``.name.partial-*`` files; mixed into a RoundTripTests class.
    """

    def test_killed_backup_is_shown_and_collected(self):
        write(f"{self.source}/small", "first")
        self.backup("--compression", "none")  # the same settings: the killed backup is its level 1
        block = os.urandom(1 << 20)
        write(f"{self.source}/big.bin", block * 200)
        argv = [AGENT, *self.storage_args(), "--backup-name", self.backup_name,
                "--path-to-backup", self.source, "--compression", "none"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: self.stored("data/**/.data.partial-*"), proc, pause=0.01)
        proc.kill()
        proc.wait()
        partials = self.stored("**/.*.partial-*")
        info = self.result_of("--action", "info")
        self.assertEqual([1], [row["level"] for row in info["incomplete"]])
        self.assertIn("incomplete", self.agent("--action", "info").stdout)

        kept = self.result_of("--action", "admin", "--remove-older-than", "1000")
        self.assertEqual([], kept["removed_incomplete"])
        dry = self.result_of("--action", "admin", "--remove-older-than", "1000", "--remove-incomplete-after", "0",
                             "--dry-run")
        self.assertEqual(info["incomplete"][0]["time_stamp"], dry["removed_incomplete"][0]["time_stamp"])
        self.assertEqual(partials, self.stored("**/.*.partial-*"))

        gone = self.result_of("--action", "admin", "--remove-older-than", "1000", "--remove-incomplete-after", "0")
        self.assertEqual([{key: info["incomplete"][0][key] for key in ("l0_time_stamp", "level", "time_stamp")}],
                         gone["removed_incomplete"])
        self.assertEqual([], self.stored("**/.*.partial-*"))
        self.assertEqual(1, len(self.stored("data/tar/*/*/*")))
        after = self.result_of("--action", "info")
        self.assertEqual(([0], []), ([row["level"] for row in after["backups"]], after["incomplete"]))
        target = os.path.join(self.tmp, "restore-after-kill")
        self.restore(target)
        self.assertEqual(["small"], os.listdir(target))


def _no_change(root: str) -> None:
    return None


def _change_one(root: str) -> None:
    write(f"{root}/plain.txt", "changed\n", mtime=1_700_000_000)
    write(f"{root}/new dir/new.txt", "new\n")
    os.remove(f"{root}/random.bin")


def _change_two(root: str) -> None:
    shutil.rmtree(f"{root}/deep")
    os.remove(f"{root}/link-to-plain")
    write(f"{root}/empty/dir/now-full", "full\n")


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 60, pause: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"backup ended or stalled before the test could interrupt it: {proc.returncode}")
        time.sleep(pause)


def _walk(view: Storage, path: str):
    for name in view.listdir(path):
        child = f"{path}/{name}" if path else name
        below = list(_walk(view, child))
        yield child, _is_file(view, child, below)
        yield from below


def _is_file(view: Storage, path: str, below: list) -> bool:
    """On a file system an empty directory is no file; in an object store a key without children is."""
    bare = registry.unwrap(view)
    if isinstance(bare, LocalStorage):
        return not os.path.isdir(os.path.join(bare.root, path))
    return not below


def _glob_regex(pattern: str) -> str:
    """``**/`` is any number of directories, ``*`` anything within one name."""
    parts = re.split(r"(\*\*/|\*)", pattern)
    table = {"**/": "(?:[^/]+/)*", "*": "[^/]*"}
    return "".join(table.get(part, re.escape(part)) for part in parts)
