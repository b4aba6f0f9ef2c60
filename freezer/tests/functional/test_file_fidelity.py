"""Everything a file is comes back: xattrs of every namespace, ACLs, holes, and the longest names.

Each test names a guarantee of doc/source/user-guide.rst ("What a restore gives back").
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import shutil
import struct
import subprocess

from freezer.tests.functional.base import write
from freezer.tests.functional.test_local import LocalAgentTest
from freezer.tests.functional.test_sftp import SshdAgentTest

NAMESPACES = ("user", "trusted", "security")
GIB, MIB = 1 << 30, 1 << 20
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
NOBODY = 65534


def acl(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX ACL as the kernel takes it in system.posix_acl_* (version 2, then tag/perm/id)."""
    undefined = 0xFFFFFFFF
    body = b"".join(struct.pack("<HHI", tag, perm, undefined if qualifier is None else qualifier)
                    for tag, perm, qualifier in entries)
    return struct.pack("<I", 2) + body


ACCESS_ACL = acl((ACL_USER_OBJ, 6, None), (ACL_USER, 4, NOBODY), (ACL_GROUP_OBJ, 4, None),
                 (ACL_MASK, 4, None), (ACL_OTHER, 0, None))
DEFAULT_ACL = acl((ACL_USER_OBJ, 7, None), (ACL_USER, 5, NOBODY), (ACL_GROUP_OBJ, 5, None),
                  (ACL_MASK, 5, None), (ACL_OTHER, 5, None))


def attributes(root: str) -> dict[str, dict[str, bytes]]:
    """Every extended attribute (ACLs are system.posix_acl_*) of every path below ``root``."""
    found = {}
    for parent, dirs, files in os.walk(root):
        for name in [".", *dirs, *files] if parent == root else [*dirs, *files]:
            path = os.path.normpath(os.path.join(parent, name))
            names = os.listxattr(path, follow_symlinks=False)
            found[os.path.relpath(path, root)] = {key: os.getxattr(path, key, follow_symlinks=False)
                                                  for key in sorted(names)}
    return found


def settable_here(directory: str) -> str | None:
    """Why every xattr namespace and an ACL cannot be set in ``directory``, or None when they can."""
    probe = os.path.join(directory, ".xattr-probe")
    write(probe, "")
    try:
        for namespace in NAMESPACES:
            os.setxattr(probe, f"{namespace}.freezer-probe", b"1")
        os.setxattr(probe, "system.posix_acl_access", ACCESS_ACL)
    except OSError as exc:
        return f"{directory}: {exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)})"
    finally:
        os.unlink(probe)
    return None


def deep_file(root: str, length: int, data: bytes = b"deep\n") -> str:
    """Create a file whose name below ``root`` is ``length`` bytes; return that name.

    Made with directory descriptors: the path from / is longer than the kernel takes in one call.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    parts, used, index = [], 0, 0
    while length - used > 255:
        name = f"level{index:02d}-" + "d" * 120
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, used, index = child, used + len(name) + 1, index + 1
        parts.append(name)
    leaf = "f" * (length - used)
    out = os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, data)
    os.close(out)
    os.close(fd)
    return "/".join([*parts, leaf])


def read_deep(root: str, name: str) -> bytes:
    """The content of ``root/name``, opened one directory at a time."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    *dirs, leaf = name.split("/")
    for part in dirs:
        child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    handle = os.open(leaf, os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    try:
        return os.read(handle, 1 << 16)
    finally:
        os.close(handle)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


class XattrCases:
    """Extended attributes of every namespace and POSIX ACLs, through level 0 and level 1."""

    def attribute_tree(self) -> None:
        """Give every xattr namespace and ACLs their own place on the file system under test."""
        if os.geteuid() != 0:
            self.skipTest("security.* and trusted.* can be set (and restored) only by root")
        reason = settable_here(self.tmp)
        if reason:
            self.tmp = self.ext4_scratch(reason)
            self.source = os.path.join(self.tmp, "source")
            os.makedirs(self.source)
        write(f"{self.source}/file.txt", "attributes\n")
        write(f"{self.source}/dir/inner.txt", "inner\n")
        os.symlink("file.txt", f"{self.source}/link")
        for namespace in NAMESPACES:
            os.setxattr(f"{self.source}/file.txt", f"{namespace}.freezer-test", f"{namespace} value".encode())
            os.setxattr(f"{self.source}/dir", f"{namespace}.dir-note", b"\x00binary\xff")
        os.setxattr(f"{self.source}/file.txt", "system.posix_acl_access", ACCESS_ACL)
        os.setxattr(f"{self.source}/dir", "system.posix_acl_default", DEFAULT_ACL)
        os.setxattr(f"{self.source}/dir/inner.txt", "system.posix_acl_access", ACCESS_ACL)

    def ext4_scratch(self, reason: str) -> str:
        """A loop-mounted ext4 (which takes every namespace and ACLs) when the test's own one does not."""
        if not shutil.which("mkfs.ext4"):
            self.skipTest(f"xattrs or ACLs not supported here ({reason}) and no mkfs.ext4 for a scratch ext4")
        image, mount_point = os.path.join(self.tmp, "ext4.img"), os.path.join(self.tmp, "ext4")
        os.makedirs(mount_point)
        with open(image, "wb") as handle:
            handle.truncate(64 * MIB)
        subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
        mounted = subprocess.run(["mount", "-o", "loop", image, mount_point], capture_output=True, text=True)
        if mounted.returncode != 0:
            self.skipTest(f"xattrs or ACLs not supported here ({reason}) and no loop mount: {mounted.stderr}")
        self.addCleanup(subprocess.run, ["umount", "-l", mount_point], check=False)
        return mount_point

    def test_every_xattr_namespace_and_acl_restored(self):
        """user.*, trusted.*, security.* and access and default ACLs, at level 0 and after a change."""
        self.attribute_tree()
        self.assertEqual(0, self.backup()["level"])
        os.setxattr(f"{self.source}/dir/inner.txt", "trusted.freezer-test", b"changed at level 1")
        os.removexattr(f"{self.source}/file.txt", "user.freezer-test")
        self.assertEqual(1, self.backup()["level"])
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertEqual(attributes(self.source), attributes(target))
        self.assertIn("security.freezer-test", attributes(target)["file.txt"])


class TestXattrsLocal(XattrCases, LocalAgentTest):
    """Extended attributes and ACLs on local storage."""


class TestXattrsSftp(XattrCases, SshdAgentTest):
    """Extended attributes and ACLs through SFTP to OpenSSH."""


class TestSparseFiles(LocalAgentTest):
    def test_sparse_file_stored_compactly_and_restored_sparse(self):
        """A 1 GiB file with 1 MiB of data: about 1 MiB stored, about 1 MiB of blocks restored."""
        path = f"{self.source}/disk.img"
        with open(path, "wb") as handle:
            handle.truncate(GIB)
            handle.seek(GIB // 2)
            handle.write(os.urandom(MIB))
        if os.stat(path).st_blocks * 512 > 4 * MIB:
            self.skipTest(f"{self.tmp}: this file system does not keep holes")
        result = self.backup("--compression", "none")
        self.assertLess(result["size"], 4 * MIB)
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        restored = os.stat(f"{target}/disk.img")
        self.assertEqual(GIB, restored.st_size)
        self.assertLess(restored.st_blocks * 512, 4 * MIB)
        self.assertEqual(sha256_of(path), sha256_of(f"{target}/disk.img"))

    def test_upstream_plain_tar_extracts_the_sparse_file(self):
        """Upstream freezer's restore runs plain GNU tar: the file it extracts is whole and sparse."""
        path = f"{self.source}/sparse.bin"
        with open(path, "wb") as handle:
            handle.truncate(64 * MIB)
            handle.write(b"start")
            handle.seek(32 * MIB)
            handle.write(b"middle")
        self.backup("--compression", "gzip")
        data, = glob.glob(f"{self.container}/data/tar/*/*/0_*/data")
        target = os.path.join(self.tmp, "plain")
        os.makedirs(target)
        subprocess.run(["tar", "--incremental", "--extract", "--gzip", "--ignore-zeros", "--warning=none",
                        "--overwrite", f"--directory={target}", f"--file={data}"], check=True)
        self.assertEqual(sha256_of(path), sha256_of(f"{target}/sparse.bin"))
        self.assertLess(os.stat(f"{target}/sparse.bin").st_blocks * 512, MIB)


class TestLongPaths(LocalAgentTest):
    def test_longest_name_restores_below_the_staging_directory(self):
        """A name of 4095 bytes (tar's longest) restores, though target and staging make it longer."""
        name = deep_file(self.source, 4095 - len("./"))
        self.backup()
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertGreater(len(os.path.join(target, ".freezer-restore-123456789012", name)), 4096)
        self.assertEqual(b"deep\n", read_deep(target, name))
        self.assertEqual([], glob.glob(f"{target}/.freezer-restore-*"))

    def test_name_tar_stores_but_cannot_extract_fails_the_backup(self):
        """4096 to about 4200 bytes: tar writes the member but no tar can open it to restore."""
        name = "./" + deep_file(self.source, 4150)
        self.assert_backup_refused(name, name[-80:])

    def test_name_tar_cannot_stat_fails_the_backup(self):
        """Longer: tar's incremental mode skips the path with a warning; the backup fails instead."""
        first_too_long = ("./" + deep_file(self.source, 6000))[:4096]  # a directory, or a part of its name
        self.assert_backup_refused(first_too_long, "./level00-")

    def test_excluded_long_path_is_no_failure(self):
        """Leaving the long path out with --exclude makes a good backup of the rest."""
        deep_file(self.source, 6000)
        write(f"{self.source}/kept.txt", "kept\n")
        self.backup("--exclude", "level00-*")
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertEqual(["kept.txt"], os.listdir(target))

    def assert_backup_refused(self, name: str, shown: str) -> None:
        """The backup fails with one error line showing ``shown``, ``name`` in full above it, and no backup."""
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "longer than GNU tar can back up and restore", "--exclude", shown)
        self.assertIn(name, proc.stderr)
        self.assertEqual([], glob.glob(f"{self.container}/metadata/tar/*/*/*/metadata"))
