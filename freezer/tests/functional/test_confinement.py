"""A restore stays inside --restore-abs-path, whatever the levels of a chain hold.

Each attack is a real chain made by the agent whose levels are then replaced with GNU tar streams
crafted as an attacker with write access to the storage would make them (``--transform``,
``--no-recursion``, ``--absolute-names``), checked against a directory outside the target.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess

from freezer.tests.functional.base import describe_tree, write
from freezer.tests.functional.test_local import LocalAgentTest


class ChainTestCase(LocalAgentTest):
    """Makes chains on local storage and swaps levels for crafted tar streams."""

    def setUp(self):
        super().setUp()
        self.outside = os.path.join(self.tmp, "outside")
        write(f"{self.outside}/victimdir/precious", "keep me\n")
        write(f"{self.outside}/secret", "secret\n")
        self.outside_before = describe_tree(self.outside)
        self.target = os.path.join(self.tmp, "restored")
        self.craft_dir = os.path.join(self.tmp, "craft")
        os.makedirs(self.craft_dir)

    def backup_levels(self, count: int) -> None:
        """``count`` levels of one chain of an (almost empty) source, uncompressed."""
        write(f"{self.source}/placeholder", "x")
        for _ in range(count):
            self.backup("--compression", "none")
            os.utime(f"{self.source}/placeholder", (1, 1 + len(self.levels())))

    def levels(self) -> list[str]:
        """Data directories of the stored levels, oldest first."""
        dirs = glob.glob(f"{self.container}/data/tar/*/*/*_*")
        return sorted(dirs, key=lambda d: int(os.path.basename(d).split("_")[1]))

    def craft(self, level: int, tree: dict, *tar_args: str, members: tuple[str, ...] = (".",)) -> None:
        """Replace ``level``'s data with GNU tar's incremental stream of ``tree`` (name -> content)."""
        source = os.path.join(self.craft_dir, f"tree{level}")
        for name, content in tree.items():
            path = os.path.join(source, name)
            if content is None:
                os.makedirs(path, exist_ok=True)
            elif isinstance(content, tuple):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(content[1], path) if content[0] == "symlink" else os.link(
                    os.path.join(source, content[1]), path)
            else:
                write(path, content)
        snapshot = os.path.join(self.craft_dir, f"snap{level}")
        data = subprocess.run(["tar", "--create", "--file=-", "--format=posix", f"--directory={source}",
                               f"--listed-incremental={snapshot}", *tar_args, "--", *members],
                              check=True, capture_output=True).stdout
        self.replace_level(level, data)

    def replace_level(self, level: int, data: bytes) -> None:
        """Put ``data`` in place of a level's data and make its metadata agree (as an attacker can)."""
        data_dir = self.levels()[level]
        with open(f"{data_dir}/data", "wb") as out:
            out.write(data)
        meta_path = data_dir.replace("/data/tar/", "/metadata/tar/") + "/metadata"
        with open(meta_path) as handle:
            metadata = json.load(handle)
        metadata.update(data_size=len(data), data_sha256=hashlib.sha256(data).hexdigest())
        with open(meta_path, "w") as out:
            json.dump(metadata, out)

    def restore_refused(self, *words: str, target_before: dict | None = None, overwrite: bool = False):
        """Restore; it must fail naming ``words`` and leave the outside (and target) untouched."""
        args = ["--action", "restore", "--restore-abs-path", self.target] + (["--overwrite"] if overwrite else [])
        proc = self.agent(*args, expect=None)
        self.assertOneLineError(proc, "refused", *words)
        self.assertEqual(self.outside_before, describe_tree(self.outside))
        if target_before is None:
            self.assertFalse(os.path.exists(self.target), "a failed restore left the target behind")
        else:
            self.assertEqual(target_before, describe_tree(self.target))
        return proc


class TestConfinement(ChainTestCase):
    def test_symlink_from_an_earlier_level_is_not_followed(self):
        self.backup_levels(2)
        self.craft(0, {"link": ("symlink", self.outside)})
        self.craft(1, {"evil/owned": "pwned\n", "evil/victimdir": None},
                   "--no-recursion", "--transform=s,^\\./evil,./link,",
                   members=("./evil/owned", "./evil/victimdir"))
        self.restore_refused("./link/", f"symlink link -> {self.outside}")

    def test_symlink_already_in_the_target_is_not_followed(self):
        self.backup_levels(1)
        self.craft(0, {"evil/owned": "pwned\n"}, "--no-recursion", members=("./evil/owned",))
        os.makedirs(self.target)
        os.symlink(self.outside, f"{self.target}/evil")
        before = describe_tree(self.target)
        self.restore_refused("./evil/owned", "symlink evil", target_before=before, overwrite=True)

    def test_dot_dot_member(self):
        self.backup_levels(2)
        self.craft(1, {"up/owned": "pwned\n"}, "--absolute-names", "--transform=s,^\\./up,../outside,",
                   members=("./up/owned",))
        self.restore_refused("../outside/owned", "'..'")

    def test_absolute_member(self):
        self.backup_levels(1)
        self.craft(0, {"abs/owned": "pwned\n"}, "--absolute-names",
                   f"--transform=s,^\\./abs,{self.outside},", members=("./abs/owned",))
        self.restore_refused(f"{self.outside}/owned", "absolute name")

    def test_hard_link_through_an_earlier_symlink(self):
        self.backup_levels(2)
        self.craft(0, {"link": ("symlink", self.outside)})
        self.craft(1, {"f": "x", "h": ("hardlink", "f")}, "--transform=s,^\\./[fh]$,./link/secret,RS")
        self.restore_refused("link/secret", "symlink link")

    def test_absolute_hard_link_target(self):
        self.backup_levels(1)
        self.craft(0, {"f": "x", "h": ("hardlink", "f")}, "--absolute-names",
                   f"--transform=s,^\\./[fh]$,{self.outside}/secret,RS")
        self.restore_refused("hard link")

    def test_symlink_that_becomes_a_directory_restores_exactly(self):
        write(f"{self.source}/data/file", "inside\n")
        os.symlink(self.outside, f"{self.source}/turns")
        self.backup("--compression", "none")
        os.unlink(f"{self.source}/turns")
        write(f"{self.source}/turns/owned-legitimately", "mine\n")
        os.utime(self.source, (2_000_000_000, 2_000_000_000))
        self.backup("--compression", "none")
        self.restore(self.target)
        self.assertEqual(describe_tree(self.source), describe_tree(self.target))
        self.assertEqual(self.outside_before, describe_tree(self.outside))

    def test_symlinks_of_every_level_come_back(self):
        write(f"{self.source}/dir/file", "x\n")
        os.symlink(self.outside, f"{self.source}/dir/absolute")
        os.symlink("file", f"{self.source}/dir/relative")
        self.backup("--compression", "none")
        os.symlink("../dir/file", f"{self.source}/later")
        self.backup("--compression", "none")
        self.restore(self.target)
        self.assertEqual(describe_tree(self.source), describe_tree(self.target))


class TestFailedRestore(ChainTestCase):
    def test_bad_level_leaves_no_target(self):
        self.backup_levels(2)
        with open(f"{self.levels()[1]}/data", "r+b") as handle:
            handle.seek(600)
            handle.write(b"corrupt")
        proc = self.agent("--action", "restore", "--restore-abs-path", f"{self.target}/deeper", expect=None)
        self.assertOneLineError(proc, "level 1", "sha256", "nothing was restored")
        self.assertFalse(os.path.exists(self.target))

    def test_bad_level_leaves_an_empty_target_empty(self):
        self.backup_levels(2)
        self.replace_level(1, b"not a tar stream" * 64)
        os.makedirs(self.target)
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, expect=None)
        self.assertOneLineError(proc, "level 1", "nothing was restored")
        self.assertEqual([], os.listdir(self.target))

    def test_wrong_passphrase_restores_nothing(self):
        write(f"{self.source}/f", "x")
        write(f"{self.tmp}/pass", "right\n")
        write(f"{self.tmp}/wrong", "wrong\n")
        self.backup("--encrypt-pass-file", f"{self.tmp}/pass")
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target,
                          "--encrypt-pass-file", f"{self.tmp}/wrong", expect=None)
        self.assertOneLineError(proc, "--encrypt-pass-file", "nothing was restored")
        self.assertFalse(os.path.exists(self.target))

    def test_in_place_failure_says_how_to_get_a_consistent_state(self):
        self.backup_levels(2)
        self.replace_level(1, b"not a tar stream" * 64)
        write(f"{self.target}/already-there", "x")
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, "--overwrite", expect=None)
        self.assertOneLineError(proc, "level 1", "--restore-from-date")
        self.assertTrue(os.path.exists(f"{self.target}/placeholder"))

    def test_staging_leaves_nothing_behind_on_success(self):
        write(f"{self.source}/f", "x")
        os.chmod(self.source, 0o750)
        self.backup()
        os.makedirs(self.target)
        self.restore(self.target)
        self.assertEqual(describe_tree(self.source), describe_tree(self.target))
        self.assertEqual(os.stat(self.source).st_mode, os.stat(self.target).st_mode)
        self.assertEqual(os.stat(self.source).st_mtime_ns, os.stat(self.target).st_mtime_ns)
        shutil.rmtree(self.target)
