"""Metadata files the storage hands back in any shape, metadata written by upstream freezer, chains that
change settings, and result destinations checked before any work; all on local storage."""

import glob
import json
import os

from freezer.testing import servers
from freezer.tests.functional.base import describe_tree, write
from freezer.tests.functional.test_ftp import ServerAgentTest
from freezer.tests.functional.test_local import LocalAgentTest

UPSTREAM = {"engine_name": "tar", "compression": "gzip", "encryption": False}


class MetadataFiles:
    """Reaching a backup's metadata file where the storage keeps it (``storage_root()``)."""

    def metadata_files(self) -> list[str]:
        """Every backup's metadata file, oldest first."""
        files = glob.glob(f"{self.storage_root()}/metadata/tar/*/*/*/metadata")
        return sorted(files, key=lambda f: int(f.split("/")[-2].split("_")[1]))

    def rewrite(self, path: str, body: bytes) -> None:
        with open(path, "wb") as handle:
            handle.write(body)

    def forget_index(self) -> None:
        """Remove the index (as upstream's backups have none): info then reads each level's metadata.

        With the index, info shows what was recorded when the level was written (user guide: the index).
        """
        for path in glob.glob(f"{self.storage_root()}/data/tar/*/.index"):
            os.remove(path)

    def info(self) -> tuple[dict, str]:
        """The result of ``--action info`` and the table it prints."""
        out = os.path.join(self.tmp, "info.json")
        proc = self.agent("--action", "info", "--metadata-out", out)
        with open(out, encoding="utf-8") as handle:
            return json.load(handle), proc.stdout


class MetadataTest(MetadataFiles, LocalAgentTest):
    """On local storage."""


class TestBadMetadata(MetadataTest):
    SHAPES = {
        "a JSON list": b'[{"compression": "gzip"}]',
        "a string": b'"tar"',
        "level not a number": json.dumps({"level": "x"}).encode(),
        "negative size": json.dumps({"data_size": -5}).encode(),
        "size as a string": json.dumps({"data_size": "1e999"}).encode(),
        "infinite size": b'{"data_size": 1e999}',
        "compression a number": json.dumps({"compression": 7}).encode(),
        "unknown codec": json.dumps({"compression": "lz4"}).encode(),
        "encryption maybe": json.dumps({"encryption": "maybe"}).encode(),
        "timestamp 1e30": json.dumps({"time_stamp": 1e30}).encode(),
        "negative timestamp": json.dumps({"l0_time_stamp": -1}).encode(),
        "not UTF-8": b'{"compression": "gz\xffip"}',
        "huge file": b"{" + b" " * (2 * 1024 * 1024) + b"}",
    }

    def test_every_bad_shape_fails_restore_in_one_line_and_info_goes_on(self):
        write(f"{self.source}/f.txt", "level 0")
        self.backup()
        write(f"{self.source}/g.txt", "level 1")
        self.backup()
        level0, level1 = self.metadata_files()
        name = os.path.relpath(level1, self.container)
        for shape, body in self.SHAPES.items():
            self.rewrite(level1, body)
            target = os.path.join(self.tmp, "restored")
            proc = self.agent("--action", "restore", "--restore-abs-path", target, expect=None)
            self.assertOneLineError(proc, "unreadable metadata", name)
            self.assertFalse(os.path.exists(target), f"{shape}: a level was applied before the check")
            self.forget_index()
            result, table = self.info()
            rows = result["backups"]
            self.assertEqual([0, 1], [r["level"] for r in rows], shape)
            self.assertNotIn("unreadable", rows[0], shape)
            self.assertIn(name, rows[1]["unreadable"], shape)
            self.assertIn("UNREADABLE", table.splitlines()[-1], shape)
            self.assertNotIn("UNREADABLE", table.splitlines()[-2], shape)

    def test_unreadable_parent_starts_a_new_chain(self):
        write(f"{self.source}/f.txt", "x")
        first = self.backup()
        self.rewrite(self.metadata_files()[0], b"[]")
        proc = self.agent("--path-to-backup", self.source, "--metadata-out", "-")
        result = json.loads(proc.stdout)
        self.assertEqual(0, result["level"])
        self.assertNotEqual(first["l0_time_stamp"], result["l0_time_stamp"])
        self.assertIn("unreadable metadata", proc.stderr)
        self.assertIn("starting a new chain (level 0)", proc.stderr)

    def test_absurd_level_directories_do_not_break_listing(self):
        write(f"{self.source}/f.txt", "x")
        first = self.backup()
        chain = os.path.dirname(os.path.dirname(self.metadata_files()[0]))
        for odd in ("99999999999999999999_1700000000", f"1_{'9' * 20}", "1_²"):
            write(f"{chain}/{odd}/metadata", "{}")
        write(f"{os.path.dirname(chain)}/{'9' * 20}/0_{'9' * 20}/metadata", "{}")
        result, table = self.info()
        self.assertEqual([(first["l0_time_stamp"], 0)], [(r["l0_time_stamp"], r["level"]) for r in result["backups"]])
        self.assertEqual(1, self.backup()["level"])
        self.restore(os.path.join(self.tmp, "restored"))


class TestUpstreamMetadata(MetadataTest):
    def test_backup_without_checksum_restores_with_a_warning_per_level(self):
        write(f"{self.source}/f.txt", "level 0")
        self.backup()
        write(f"{self.source}/g.txt", "level 1")
        self.backup()
        expected = describe_tree(self.source)
        for path in self.metadata_files():
            self.rewrite(path, json.dumps(UPSTREAM).encode())
        target = os.path.join(self.tmp, "restored")
        proc = self.agent("--action", "restore", "--restore-abs-path", target)
        self.assertEqual(expected, describe_tree(target))
        warnings = [ln for ln in proc.stderr.splitlines() if "not verified" in ln]
        self.assertEqual(2, len(warnings), proc.stderr)
        self.assertIn("level 0", warnings[0])
        self.assertIn("level 1", warnings[1])
        self.forget_index()
        result, _ = self.info()
        self.assertEqual([None, None], [r["size"] for r in result["backups"]])

    def test_our_backup_restores_without_that_warning(self):
        write(f"{self.source}/f.txt", "x")
        self.backup()
        proc = self.agent("--action", "restore", "--restore-abs-path", os.path.join(self.tmp, "restored"))
        self.assertNotIn("not verified", proc.stderr)


class TestSettingsChangeStartsNewChain(MetadataTest):
    def test_compression_change(self):
        write(f"{self.source}/f.txt", "x")
        first = self.backup()
        self.assertEqual(0, first["level"])
        proc = self.agent("--path-to-backup", self.source, "--compression", "zstd", "--metadata-out", "-")
        second = json.loads(proc.stdout)
        self.assertEqual(0, second["level"])
        self.assertNotEqual(first["l0_time_stamp"], second["l0_time_stamp"])
        self.assertIn("compression changed from gzip to zstd: starting a new chain (level 0)", proc.stderr)
        third = self.backup("--compression", "zstd")
        self.assertEqual((1, second["l0_time_stamp"]), (third["level"], third["l0_time_stamp"]))

    def test_encryption_switched_on_and_off(self):
        pass_file = os.path.join(self.tmp, "pass")
        write(pass_file, "secret passphrase\n")
        write(f"{self.source}/f.txt", "x")
        first = self.backup()
        proc = self.agent("--path-to-backup", self.source, "--encrypt-pass-file", pass_file, "--metadata-out", "-")
        second = json.loads(proc.stdout)
        self.assertEqual(0, second["level"])
        self.assertNotEqual(first["l0_time_stamp"], second["l0_time_stamp"])
        self.assertIn("encryption changed from off to on: starting a new chain (level 0)", proc.stderr)
        proc = self.agent("--path-to-backup", self.source, "--metadata-out", "-")
        self.assertEqual(0, json.loads(proc.stdout)["level"])
        self.assertIn("encryption changed from on to off", proc.stderr)


class TestDestinationsCheckedFirst(MetadataTest):
    def test_metadata_out_in_missing_directory(self):
        write(f"{self.source}/f.txt", "x")
        proc = self.agent("--path-to-backup", self.source, "--metadata-out", "/nonexistent/dir/out.json", expect=None)
        self.assertOneLineError(proc, "--metadata-out", "/nonexistent/dir")
        self.assertEqual([], self.metadata_files())
        self.assertFalse(os.path.exists(self.container))

    def test_log_file_in_missing_directory(self):
        write(f"{self.source}/f.txt", "x")
        proc = self.agent("--path-to-backup", self.source, "--log-file", "/nonexistent/dir/agent.log", expect=None)
        self.assertOneLineError(proc, "--log-file", "/nonexistent/dir")
        self.assertFalse(os.path.exists(self.container))

    def test_metadata_out_is_a_directory(self):
        write(f"{self.source}/f.txt", "x")
        proc = self.agent("--path-to-backup", self.source, "--metadata-out", self.tmp, expect=None)
        self.assertOneLineError(proc, "--metadata-out", "is a directory")
        self.assertFalse(os.path.exists(self.container))


class TestBadMetadataOverFtp(MetadataFiles, ServerAgentTest):
    """vsftpd hands back a huge metadata file: the read stops early and the next one still works."""

    def make_server(self):
        return servers.Vsftpd(self.tmp)

    def test_huge_metadata_is_cut_short_and_info_goes_on(self):
        write(f"{self.source}/f.txt", "x")
        self.backup()
        self.backup()
        level0, level1 = self.metadata_files()
        self.rewrite(level0, b"{" + b" " * (8 * 1024 * 1024) + b"}")
        self.forget_index()
        result, table = self.info()
        self.assertIn("unreadable metadata", result["backups"][0]["unreadable"])
        self.assertIn("bytes", result["backups"][0]["unreadable"])
        self.assertEqual("gzip", result["backups"][1]["compression"])
        proc = self.agent("--action", "restore", "--restore-abs-path", os.path.join(self.tmp, "r"), expect=None)
        self.assertOneLineError(proc, "unreadable metadata", os.path.relpath(level0, self.storage_root()))
