"""info and admin take the same round trips for 3 backups as for 30 or 300; the index is a cache only."""

import contextlib
import json
import os

import fixtures
import testtools

from benchmarks.history import HOST, NAME, measure, no_counter, store_history
from freezer import main
from freezer.common import config
from freezer.storage import ftp, index
from freezer.storage.chains import BackupRef
from freezer.storage.layout import BackupSet
from freezer.testing import servers
from freezer.testing.counting import ftp_round_trips, sftp_round_trips
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import make_tree
from freezer.tests.functional.test_local import LocalAgentTest


class CostDoesNotGrow:
    """Store 3 backups, measure info and admin; store 27 more, measure again: the same cost."""

    counter = staticmethod(no_counter)
    many = 30  # backups in the second measurement
    grown = 0  # round trips the second measurement takes more, by design

    def options(self) -> list[str]:
        raise NotImplementedError

    def stored(self, start: int, stop: int) -> None:
        conf = config.build([*self.options(), "--action", "info", "--hostname", HOST, "--backup-name", NAME])
        with contextlib.closing(main.make_storage(conf)) as storage:
            store_history(storage, start, stop)

    def cost(self) -> dict:
        """Storage calls and round trips of info and admin (requests in a batch may grow; waits may not)."""
        return {action: {key: value for key, value in measure(self.options(), action, self.counter).items()
                         if key in ("calls", "round_trips")} for action in ("info", "admin")}

    def test_info_and_admin_cost_the_same_for_3_and_many_backups(self):
        self.stored(0, 3)
        few = self.cost()
        self.stored(3, self.many)
        many = self.cost()
        for action in few:
            few[action]["round_trips"] += self.grown
        self.assertEqual(few, many)
        self.assertLess(many["info"]["calls"], 15)


class TestLocalCost(CostDoesNotGrow, testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def options(self):
        return ["--storage", "local", "--container", os.path.join(self.tmp, "store")]


class TestPyftpdCost(CostDoesNotGrow, testtools.TestCase):
    counter = staticmethod(ftp_round_trips)
    many = 300  # more paths than one write of STAT commands holds (16 KiB)

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(servers.PyFtpd(self.useFixture(fixtures.TempDir()).path))

    def options(self):
        return self.server.agent_options("history")

    def test_info_lists_backups_as_before(self):
        self.stored(0, 30)
        conf = config.build([*self.options(), "--action", "info", "--hostname", HOST, "--backup-name", NAME])
        with contextlib.closing(main.make_storage(conf)) as storage:
            backups = BackupSet(storage, HOST, NAME)
            self.assertEqual(30, len(backups.list_backups()))
            root = f"metadata/tar/{backups.prefix}"
            l0s = storage.listdir(root)
            self.assertEqual([storage.listdir(f"{root}/{name}") for name in l0s],
                             storage.listdirs([f"{root}/{name}" for name in l0s]))


class TestVsftpdListdirs(testtools.TestCase):
    """vsftpd answers STAT <dir> with dot entries and lists a missing directory as empty."""

    def test_listdirs_matches_listdir(self):
        server = self.useFixture(servers.Vsftpd(self.useFixture(fixtures.TempDir()).path))
        storage = ftp.FtpStorage(ftp.FtpSettings(host="127.0.0.1", port=server.port, username=server.username,
                                                 password=server.password, container="c"))
        self.addCleanup(storage.close)
        for path in ("a/1/x", "a/1/y", "a/2/z", "b/w"):
            storage.put_bytes(path, b"1")
        self.assertEqual([["x", "y"], ["z"], [], ["1", "2"], ["w"]],
                         storage.listdirs(["a/1", "a/2", "a/none", "a", "b"]))


class TestThousandsOfFtpDirectories(testtools.TestCase):
    """Every directory of a listing is asked for before the first reply is read, however many they are."""

    def check(self, server_class) -> None:
        server = self.useFixture(server_class(self.useFixture(fixtures.TempDir()).path))
        storage = ftp.FtpStorage(ftp.FtpSettings(host="127.0.0.1", port=server.port, username=server.username,
                                                 password=server.password, container="c"))
        self.addCleanup(storage.close)
        storage.put_bytes("first", b"1")  # logged in, container made
        root = os.path.join(server.root, "c")  # 3000 paths of 80 bytes: 240 KiB of STAT commands
        paths = [f"many/{n:05d}-{'x' * 60}" for n in range(3000)]
        for n, path in enumerate(paths):
            os.makedirs(os.path.join(root, path))
            open(os.path.join(root, path, f"f{n}"), "w").close()
        with ftp_round_trips() as trips:
            listings = storage.listdirs(paths)
        self.assertEqual([[f"f{n}"] for n in range(3000)], listings)
        self.assertEqual(1, trips.round_trips)

    def test_pyftpdlib(self):
        self.check(servers.PyFtpd)

    def test_vsftpd(self):
        self.check(servers.Vsftpd)


class TestSftpCost(CostDoesNotGrow, testtools.TestCase):
    counter = staticmethod(sftp_round_trips)
    # More directories than one batch used to hold (64). Both trees' level directories are listed
    # together, 512 at once: past 256 backups of a name, the deepest listing waits twice more.
    many = 300
    grown = 2

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path))

    def options(self):
        return self.server.agent_options()


class TestIndexIsNotTheTruth(LocalAgentTest):
    """A backup writes the index; info trusts the listing over it; restore never reads it."""

    def index_path(self) -> str:
        return os.path.join(self.container, "data", "tar", f"{self.hostname()}_{self.backup_name}", index.NAME)

    def hostname(self) -> str:
        return self.info()["hostname"]

    def info(self) -> dict:
        return self.result_of("--action", "info")

    def test_backups_write_the_index_and_info_matches_the_metadata(self):
        make_tree(self.source)
        first = self.backup("--compression", "zstd")
        second = self.backup("--compression", "zstd")
        with open(self.index_path(), "rb") as handle:
            entries = index.decode(handle.read())
        self.assertEqual([(0, "zstd"), (1, "zstd")], [(ref.level, s.compression) for ref, s in sorted(entries.items())])
        rows = self.info()["backups"]
        os.remove(self.index_path())
        self.assertEqual(rows, self.info()["backups"])  # without the index: each metadata read, same rows
        self.assertEqual([first["time_stamp"], second["time_stamp"]], [row["time_stamp"] for row in rows])

    def test_forged_index_neither_adds_nor_hides_a_backup_nor_changes_a_restore(self):
        make_tree(self.source)
        done = self.backup("--compression", "gzip")
        ref = BackupRef(done["time_stamp"], done["time_stamp"], 0)
        ghost = BackupRef(ref.l0_ts + 10, ref.l0_ts + 10, 0)
        forged = {ref: index.Summary(7, "none", True), ghost: index.Summary(1, "none", False)}
        with open(self.index_path(), "wb") as handle:
            handle.write(index.encode(forged))
        rows = self.info()["backups"]
        self.assertEqual([ref.ts], [row["time_stamp"] for row in rows])  # the ghost is not listed
        self.assertEqual((7, "none", True), (rows[0]["size"], rows[0]["compression"], rows[0]["encryption"]))
        target = os.path.join(self.tmp, "restored")
        self.restore(target)  # gzip, as the metadata says: the index's "none" is never read
        self.assertTrue(os.listdir(target))

    def test_malformed_index_falls_back_to_the_metadata(self):
        make_tree(self.source)
        self.backup("--compression", "zstd")
        for body in (b"\xff", b"[]", json.dumps({"version": 1, "levels": [{"level": "0"}]}).encode(), b"{" * 10000):
            with open(self.index_path(), "wb") as handle:
                handle.write(body)
            self.assertEqual(["zstd"], [row["compression"] for row in self.info()["backups"]])

    def test_admin_rewrites_the_index_after_removing(self):
        make_tree(self.source)
        self.backup("--compression", "none")
        self.backup("--compression", "none", "--no-incremental")
        # A cutoff in the future: "--remove-older-than 0" keeps a chain begun in the current second.
        self.result_of("--action", "admin", "--remove-from-date", "2100-01-01T00:00:00")
        with open(self.index_path(), "rb") as handle:
            self.assertEqual(1, len(index.decode(handle.read())))

