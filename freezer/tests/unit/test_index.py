"""The index of a backup name (storage/index.py) and STAT listings (storage/ftp_stat.py): pure parsing."""

import json

import testtools

from freezer.storage import ftp_stat, index
from freezer.storage.chains import BackupRef

REF = BackupRef(1_700_000_000, 1_700_000_060, 1)


class TestIndex(testtools.TestCase):
    def test_round_trip_and_only_the_wanted_levels(self):
        entries = {REF: index.Summary(10, "zstd", True), BackupRef(5, 5, 0): index.Summary(None, "gzip", False)}
        self.assertEqual(entries, index.decode(index.encode(entries)))
        self.assertEqual({REF: entries[REF]}, index.decode(index.encode(entries), [REF]))

    def test_malformed_documents_are_empty(self):
        for body in (b"", b"\xff", b"[]", b"{}", b'{"version": 2, "levels": []}', b"[" * 100000,
                     b" " * (index.MAX_BYTES + 1)):
            self.assertEqual({}, index.decode(body))

    def test_unsound_entries_are_dropped(self):
        good = {"l0_time_stamp": REF.l0_ts, "level": 1, "time_stamp": REF.ts, "data_size": 3,
                "compression": "gzip", "encryption": False}
        bad = [dict(good, level=-1), dict(good, compression="lzma"), dict(good, encryption="yes"),
               dict(good, data_size="3"), dict(good, time_stamp=None), "x", None, dict(good, level=True)]
        body = json.dumps({"version": 1, "levels": [*bad, good]}).encode()
        self.assertEqual({REF: index.Summary(3, "gzip", False)}, index.decode(body))


class TestStatListing(testtools.TestCase):
    def test_pyftpdlib_and_vsftpd_replies(self):
        pyftpd = ('213-Status of "/c":\n'
                  "drwxr-xr-x   3 root     root         4096 Dec 06 22:33 a\n"
                  "-rw-r--r--   1 root     root           12 Jan 01  2024 metadata\n"
                  "lrwxrwxrwx   1 root     root            1 Jan 01  2024 l -> a\n"
                  "213 End of status.")
        self.assertEqual([("a", "dir"), ("metadata", "file"), ("l", None)], ftp_stat._listing(pyftpd, "/c"))
        vsftpd = ("213-Status follows:\n"
                  "drwxr-xr-x    4 1001     1001         4096 Dec 06 22:33 .\n"
                  "drwxr-xr-x    3 1001     1001         4096 Dec 06 22:33 ..\n"
                  "drwxr-xr-x    2 1001     1001         4096 Dec 06 22:33 x y\n"
                  "213 End of status")
        self.assertEqual([("x y", "dir")], ftp_stat._listing(vsftpd, "/c"))
        self.assertEqual([], ftp_stat._listing("550 No such file or directory.", "/c"))

    def test_replies_that_are_not_listings(self):
        for reply in ("213 /c is a file", "502 Command not implemented.",
                      "213-Status:\n12-06-26  10:33PM  <DIR>  a\n213 End",
                      "211-Status of server:\nConnected to x\n211 End"):
            self.assertRaises(ftp_stat.Unusable, ftp_stat._listing, reply, "/c")

    def test_commands_past_one_write_are_split_off(self):
        commands = [f"STAT /{i:0100d}" for i in range(1000)]
        first, rest = ftp_stat._split_at(commands, ftp_stat.BATCH_BYTES)
        self.assertEqual(commands, first + rest)
        self.assertLessEqual(sum(len(command) + 2 for command in first), ftp_stat.BATCH_BYTES)
        self.assertTrue(rest)
        self.assertEqual((["STAT /a-long-one"], []), ftp_stat._split_at(["STAT /a-long-one"], 4))

    def test_paths_a_server_could_glob_are_not_batched(self):
        self.assertTrue(ftp_stat.batchable("/backups/metadata/tar/host_name/1700000000"))
        for path in ("relative", "/a b", "/a*", "/a?", "/a[1]", "/-la", "/x/-R", "/~root", "/a\\b"):
            self.assertFalse(ftp_stat.batchable(path), path)

