"""Metadata read from an untrusted storage: every bad shape is one BadMetadata, never a crash."""

import json
import os

import fixtures
import testtools

from freezer import main
from freezer.common import dates
from freezer.storage import chains as chain_rules
from freezer.storage import metadata
from freezer.storage.chains import BackupRef
from freezer.storage.layout import BackupSet
from freezer.storage.local import LocalStorage
from freezer.storage.metadata import BadMetadata, Metadata

SHA = "ab" * 32
OURS = {"engine_name": "tar", "compression": "zstd", "encryption": True, "level": 1, "time_stamp": 1_700_000_100,
        "l0_time_stamp": 1_700_000_000, "hostname": "h", "backup_name": "b", "path_to_backup": "/etc",
        "data_size": 1234, "data_sha256": SHA, "agent": "freezer 1.0"}


def parse_doc(doc) -> Metadata:
    return metadata.parse(json.dumps(doc).encode())


class TestGoodMetadata(testtools.TestCase):
    def test_ours(self):
        record = parse_doc(OURS)
        self.assertEqual(Metadata("zstd", True, 1, 1_700_000_100, 1_700_000_000, 1234, SHA), record)

    def test_upstream_freezer_writes_three_fields(self):
        record = parse_doc({"engine_name": "tar", "compression": "gzip", "encryption": False})
        self.assertEqual(Metadata("gzip", False), record)
        self.assertIsNone(record.data_sha256)
        self.assertIsNone(record.data_size)

    def test_empty_object_means_upstream_defaults(self):
        self.assertEqual(Metadata("gzip", False), parse_doc({}))

    def test_unknown_fields_are_ignored(self):
        self.assertEqual("xz", parse_doc({"compression": "xz", "future_field": [1, {"a": None}]}).compression)

    def test_upper_case_sha256_is_accepted(self):
        self.assertEqual(SHA, parse_doc({"data_sha256": SHA.upper()}).data_sha256)


class TestBadMetadata(testtools.TestCase):
    BAD_FIELDS = [
        ("level", "x"), ("level", -1), ("level", 1.5), ("level", True), ("level", 10**7),
        ("data_size", -5), ("data_size", "1e999"), ("data_size", 1e999), ("data_size", 12.0),
        ("data_size", 2**64), ("data_size", [1]),
        ("compression", 7), ("compression", "lz4"), ("compression", None), ("compression", ""),
        ("encryption", "maybe"), ("encryption", 1), ("encryption", None), ("encryption", "false"),
        ("time_stamp", 1e30), ("time_stamp", 10**30), ("time_stamp", -1), ("time_stamp", "1700000000"),
        ("l0_time_stamp", -1_700_000_000), ("l0_time_stamp", {"a": 1}),
        ("data_sha256", "abc"), ("data_sha256", 5), ("data_sha256", "g" * 64), ("data_sha256", SHA + "\n"),
        ("engine_name", "rsync"), ("engine_name", None),
    ]

    def assertBad(self, raw: bytes, *words: str) -> None:
        exc = self.assertRaises(BadMetadata, metadata.parse, raw)
        for word in words:
            self.assertIn(word, str(exc), raw[:100])
        self.assertLess(len(str(exc)), 200)

    def test_wrong_field_values(self):
        for field, value in self.BAD_FIELDS:
            self.assertBad(json.dumps({**OURS, field: value}).encode(), field)

    def test_not_an_object(self):
        for doc in ([], [OURS], "tar", 42, None, True):
            self.assertBad(json.dumps(doc).encode(), "instead of an object")

    def test_not_json(self):
        for raw in (b"", b"{", b"{'a': 1}", b"\x00\x01", b"NaN x"):
            self.assertBad(raw, "not JSON")

    def test_not_utf8(self):
        self.assertBad(b'{"compression": "\xff\xfe"}', "UTF-8")

    def test_nested_too_deep(self):
        self.assertBad(b"[" * 50_000 + b"]" * 50_000)

    def test_huge_number(self):
        self.assertBad(b'{"data_size": ' + b"9" * 5000 + b"}", "not JSON")

    def test_huge_file(self):
        self.assertBad(b" " * (metadata.MAX_BYTES + 1) + b"{}", "bytes")

    def test_long_values_are_cut_in_messages(self):
        self.assertBad(json.dumps({"compression": "z" * 10_000}).encode(), "compression", "...")

    def test_metadata_of_another_backup(self):
        record = parse_doc(OURS)
        metadata.check_matches(record, 1, 1_700_000_100, 1_700_000_000)
        exc = self.assertRaises(BadMetadata, metadata.check_matches, record, 2, 1_700_000_100, 1_700_000_000)
        self.assertIn("level 1", str(exc))


class TestBackupSetOnDisk(testtools.TestCase):
    """Listing and reading through BackupSet, on a real directory."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.backups = BackupSet(LocalStorage(self.root), "host", "name")

    def put_meta(self, relpath: str, body: bytes) -> None:
        path = os.path.join(self.root, "metadata/tar/host_name", relpath, "metadata")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(body)

    def test_read_names_the_file(self):
        self.put_meta("1700000000/0_1700000000", b'["not", "an", "object"]')
        ref = BackupRef(1_700_000_000, 1_700_000_000, 0)
        exc = self.assertRaises(BadMetadata, self.backups.read_metadata, ref)
        self.assertIn("metadata/tar/host_name/1700000000/0_1700000000/metadata", str(exc))

    def test_read_stops_at_the_limit(self):
        self.put_meta("1700000000/0_1700000000", b"{" + b" " * (4 * 1024 * 1024) + b"}")
        ref = BackupRef(1_700_000_000, 1_700_000_000, 0)
        self.assertRaises(BadMetadata, self.backups.read_metadata, ref)

    def test_absurd_directory_names_are_skipped(self):
        self.put_meta("1700000000/0_1700000000", b"{}")
        for relpath in ("99999999999999999999/0_99999999999999999999", "1700000000/99999999999999999999_1700000001",
                        "1700000000/1_99999999999999999999", "1700000000/1_5", "²/0_1", "1700000000/1_١٢",
                        "1700000000/01_1700000002", "1700000000/1_1700000003\n", "9" * 250 + "/0_1"):
            self.put_meta(relpath, b"{}")
        self.assertEqual([BackupRef(1_700_000_000, 1_700_000_000, 0)], self.backups.list_backups())


class TestSettingsChange(testtools.TestCase):
    def test_same_settings_continue_the_chain(self):
        self.assertIsNone(chain_rules.settings_change(Metadata("gzip", False), "gzip", False))

    def test_compression_change(self):
        self.assertEqual("compression changed from gzip to zstd",
                         chain_rules.settings_change(Metadata("gzip", False), "zstd", False))

    def test_encryption_change(self):
        self.assertEqual("encryption changed from off to on",
                         chain_rules.settings_change(Metadata("gzip", False), "gzip", True))
        self.assertEqual("encryption changed from on to off",
                         chain_rules.settings_change(Metadata("gzip", True), "gzip", False))


class TestShowingUntrustedValues(testtools.TestCase):
    def test_absurd_timestamps_are_shown_not_raised(self):
        for ts in (99999999999999999999, -10**20, 10**30):
            self.assertEqual(f"@{ts}", dates.show(ts))

    def test_info_table_marks_unreadable_rows(self):
        rows = [{"l0_time_stamp": 10, "level": 0, "time_stamp": 10, "date": dates.show(10), "size": None,
                 "compression": None, "encryption": None, "unreadable": "unreadable metadata m: bad"},
                {"l0_time_stamp": 10**20, "level": 1, "time_stamp": 20, "date": dates.show(20), "size": 5,
                 "compression": "gzip", "encryption": False}]
        table = main.info_table(rows).splitlines()
        self.assertIn("UNREADABLE: unreadable metadata m: bad", table[2])
        self.assertIn("gzip", table[3])


class TestDestinations(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def test_writable_places(self):
        main.check_writable("--metadata-out", os.path.join(self.tmp, "new.json"))
        existing = os.path.join(self.tmp, "old.json")
        open(existing, "w").close()
        main.check_writable("--metadata-out", existing)

    def test_missing_directory(self):
        exc = self.assertRaises(main.FreezerError, main.check_writable, "--log-file", "/nonexistent/dir/x.log")
        self.assertIn("--log-file", str(exc))
        self.assertIn("/nonexistent/dir does not exist", str(exc))

    def test_directory_instead_of_file(self):
        exc = self.assertRaises(main.FreezerError, main.check_writable, "--metadata-out", self.tmp)
        self.assertIn("is a directory", str(exc))
