"""Attacks by a writer of the storage on authenticated backups, built as an attacker would: with GNU tar,
openssl's format and the project's own metadata. Each must be refused before anything is restored."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

from freezer.tests.functional.base import describe_tree, write
from freezer.tests.functional.test_local import LocalAgentTest


class Level:
    """One level on local storage: its data file and its metadata file."""

    def __init__(self, metadata_path: str):
        self.metadata_path = metadata_path
        self.data_path = metadata_path.replace("/metadata/tar/", "/data/tar/", 1).rsplit("/", 1)[0] + "/data"

    @property
    def metadata(self) -> dict:
        with open(self.metadata_path, encoding="utf-8") as handle:
            return json.load(handle)

    def write_metadata(self, doc: dict) -> None:
        with open(self.metadata_path, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)

    def replace_data(self, data: bytes, **metadata_changes) -> None:
        """New data, with the sha256 and size in the metadata made to match, as an attacker would."""
        with open(self.data_path, "wb") as handle:
            handle.write(data)
        doc = self.metadata
        doc.update(data_size=len(data), data_sha256=hashlib.sha256(data).hexdigest(), **metadata_changes)
        self.write_metadata(doc)

    def read_data(self) -> bytes:
        with open(self.data_path, "rb") as handle:
            return handle.read()


def evil_tar() -> bytes:
    """A plain tar stream of the attacker's choosing."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        body = b"attacker's content\n"
        info = tarfile.TarInfo("./evil.txt")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return out.getvalue()


class AuthenticityTest(LocalAgentTest):
    def setUp(self):
        super().setUp()
        self.pass_file = os.path.join(self.tmp, "pass")
        write(self.pass_file, "correct horse battery staple\n", mode=0o600)
        self.target = os.path.join(self.tmp, "restored")

    def levels(self) -> list[Level]:
        paths = glob.glob(f"{self.storage_root()}/metadata/tar/*_{self.backup_name}/*/*/metadata")
        return [Level(p) for p in sorted(paths, key=lambda p: int(p.split("/")[-2].split("_")[1]))]

    def encrypted_chain(self, levels: int = 2) -> list[dict]:
        """A chain of ``levels`` encrypted, uncompressed levels (so ciphertext bits map to plaintext bits)."""
        trees = []
        for n in range(levels):
            write(f"{self.source}/file-{n}.txt", f"level {n} content\n" * 50)
            self.backup("--encrypt-pass-file", self.pass_file, "--compression", "none")
            trees.append(describe_tree(self.source))
            time.sleep(1.01)  # one level per second: timestamps are seconds
        return trees

    def refused_restore(self, *words: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target,
                          "--encrypt-pass-file", self.pass_file, *extra, expect=None)
        self.assertOneLineError(proc, *words)
        self.assertFalse(os.path.exists(self.target), "something reached the restore directory")
        return proc

    def refused_verify(self, *words: str) -> None:
        proc = self.agent("--action", "verify", "--encrypt-pass-file", self.pass_file, expect=None)
        self.assertOneLineError(proc, *words)


class TestEncryptedBackupsAreAuthenticated(AuthenticityTest):
    def test_untouched_chain_restores_and_verifies(self):
        trees = self.encrypted_chain()
        auth = self.levels()[1].metadata["auth"]
        self.assertEqual((1, "scrypt"), (auth["format"], auth["kdf"]))
        self.assertEqual(self.levels()[0].metadata["auth"]["mac"], auth["parent"]["mac"])
        self.restore(self.target, "--encrypt-pass-file", self.pass_file)
        self.assertSameTree(trees[-1], self.target)
        self.agent("--action", "verify", "--encrypt-pass-file", self.pass_file)

    def test_downgrade_to_plaintext_is_refused(self):
        self.encrypted_chain()
        self.levels()[1].replace_data(evil_tar(), encryption=False)
        self.refused_restore("level 1", "not encrypted although --encrypt-pass-file was given")
        self.refused_verify("level 1", "not encrypted")

    def test_downgrade_without_auth_field_is_refused(self):
        self.encrypted_chain()
        level = self.levels()[1]
        level.replace_data(evil_tar(), encryption=False)
        doc = level.metadata
        del doc["auth"]
        level.write_metadata(doc)
        self.refused_restore("level 1", "not encrypted", extra=("--allow-unauthenticated",))

    def test_flipped_ciphertext_bits_are_refused(self):
        self.encrypted_chain()
        level = self.levels()[0]
        data = bytearray(level.read_data())
        data[600] ^= 0x20  # inside the first member's content: CFB flips the same plaintext bit
        level.replace_data(bytes(data))
        self.refused_restore("level 0", "MAC does not match")
        self.refused_verify("level 0", "MAC does not match")

    def test_truncation_at_a_member_boundary_is_refused(self):
        self.encrypted_chain()
        level = self.levels()[1]
        level.replace_data(level.read_data()[:16 + 1024])  # the salted header and two 512-byte tar blocks
        self.refused_restore("level 1", "MAC does not match")

    def test_edited_metadata_is_refused(self):
        self.encrypted_chain()
        level = self.levels()[1]
        doc = level.metadata
        doc["compression"] = "gzip"
        level.write_metadata(doc)
        self.refused_restore("level 1", "MAC does not match")

    def test_level_from_another_backup_is_refused(self):
        self.encrypted_chain()
        ours = self.levels()[1]
        self.backup_name = "other"
        self.encrypted_chain()
        theirs = self.levels()[1]
        self.backup_name = "test-backup"
        shutil.copyfile(theirs.data_path, ours.data_path)
        doc = theirs.metadata
        doc.update(level=1, time_stamp=ours.metadata["time_stamp"], l0_time_stamp=ours.metadata["l0_time_stamp"])
        ours.write_metadata(doc)
        self.refused_restore("/1_")  # its parent is not in this chain, or its MAC does not match: refused

    def test_level_from_another_chain_is_refused(self):
        self.encrypted_chain()
        first_l1 = self.levels()[1]
        self.backup("--encrypt-pass-file", self.pass_file, "--compression", "none", "--no-incremental")
        time.sleep(1.01)
        self.backup("--encrypt-pass-file", self.pass_file, "--compression", "none")
        second_l1 = self.levels()[-1]
        # the second chain's level 1 moved into the first chain, in the place of its level 1
        shutil.copyfile(second_l1.data_path, first_l1.data_path)
        first_l1.write_metadata(dict(second_l1.metadata, time_stamp=first_l1.metadata["time_stamp"],
                                     l0_time_stamp=first_l1.metadata["l0_time_stamp"]))
        for level in self.levels()[2:]:  # the second chain gone, so a restore reads the first
            shutil.rmtree(os.path.dirname(os.path.dirname(level.metadata_path)), ignore_errors=True)
            shutil.rmtree(os.path.dirname(os.path.dirname(level.data_path)), ignore_errors=True)
        self.refused_restore("/1_")

    def test_reordered_levels_are_refused(self):
        self.encrypted_chain(3)
        one, two = self.levels()[1], self.levels()[2]
        one_doc, two_doc = one.metadata, two.metadata
        one_data, two_data = one.read_data(), two.read_data()
        one.replace_data(two_data)
        one.write_metadata(dict(two_doc, level=1, time_stamp=one_doc["time_stamp"]))
        two.replace_data(one_data)
        two.write_metadata(dict(one_doc, level=2, time_stamp=two_doc["time_stamp"]))
        self.refused_restore("MAC does not match")

    def test_wrong_passphrase_is_named(self):
        self.encrypted_chain(1)
        write(self.pass_file, "wrong\n", mode=0o600)
        self.refused_restore("level 0", "--encrypt-pass-file")

    def test_hostile_scrypt_parameters_are_refused_without_running_them(self):
        self.encrypted_chain(1)
        level = self.levels()[0]
        doc = level.metadata
        doc["auth"]["n"] = 2**40
        level.write_metadata(doc)
        self.refused_restore("scrypt parameters out of bounds")


class TestUpstreamBackupsWithoutMac(AuthenticityTest):
    def strip_macs(self) -> None:
        for level in self.levels():
            doc = level.metadata
            del doc["auth"]
            level.write_metadata(doc)

    def test_refused_by_default_and_restored_with_the_option(self):
        trees = self.encrypted_chain()
        self.strip_macs()
        self.refused_restore("level 0", "no MAC", "--allow-unauthenticated")
        self.restore(self.target, "--encrypt-pass-file", self.pass_file, "--allow-unauthenticated")
        self.assertSameTree(trees[-1], self.target)


class TestAuthKeyFile(AuthenticityTest):
    def test_unencrypted_backup_with_a_key_refuses_changed_data(self):
        key = os.path.join(self.tmp, "mac.key")
        write(key, "a key of its own\n", mode=0o600)
        write(f"{self.source}/a.txt", "a\n")
        self.backup("--auth-key-file", key, "--compression", "none")
        self.levels()[0].replace_data(evil_tar())
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, "--auth-key-file", key,
                          expect=None)
        self.assertOneLineError(proc, "level 0", "MAC does not match")
        self.assertFalse(os.path.exists(self.target))
        # without the key the same backup restores: the docs say integrity is then against accidents only
        self.restore(self.target)
        self.assertTrue(os.path.exists(os.path.join(self.target, "evil.txt")))


class TestInPlaceRestore(AuthenticityTest):
    def test_changed_data_is_caught_before_tar_writes_into_the_target(self):
        write(f"{self.source}/a-first.bin", os.urandom(8 << 20))  # many chunks: tar would write it early
        self.encrypted_chain(1)
        level = self.levels()[0]
        data = bytearray(level.read_data())
        data[600] ^= 0x20
        with open(level.data_path, "wb") as handle:  # the metadata untouched: only the sha256 can tell
            handle.write(bytes(data))
        write(f"{self.target}/keep.txt", "mine\n")
        before = describe_tree(self.target)
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, "--overwrite",
                          "--encrypt-pass-file", self.pass_file, expect=None)
        self.assertOneLineError(proc, "sha256")
        self.assertEqual(before, describe_tree(self.target))


class TestChainBuiltOnTamperedParent(AuthenticityTest):
    def test_changed_engine_metadata_fails_the_next_backup_clearly(self):
        self.encrypted_chain(1)
        level = self.levels()[0]
        engine = level.data_path.rsplit("/", 1)[0] + "/engine_metadata"
        with open(engine, "ab") as handle:
            handle.write(b"\0")
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none",
                          "--encrypt-pass-file", self.pass_file, expect=None)
        self.assertOneLineError(proc, "engine metadata of level 0", "MAC")
        self.assertEqual(1, len(self.levels()))

    def test_parent_with_a_bad_mac_starts_a_new_chain(self):
        self.encrypted_chain(1)
        level = self.levels()[0]
        doc = level.metadata
        doc["auth"]["mac"] = "0" * 64
        level.write_metadata(doc)
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none",
                          "--encrypt-pass-file", self.pass_file)
        self.assertIn("MAC does not match", proc.stderr)
        self.assertEqual([0, 0], [lvl.metadata["level"] for lvl in self.levels()])
