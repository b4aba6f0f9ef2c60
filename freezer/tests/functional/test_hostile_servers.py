"""Storage servers that lie or stall (issue 24): one clear error, nothing touched outside the container."""

import hashlib
import logging
import os
import pwd
import subprocess
import time

import fixtures
import testtools

from freezer import errors
from freezer.common import dates
from freezer.storage import base, ftp, registry
from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests import hostile_ftp
from freezer.tests.functional.base import AGENT, AgentTestCase, describe_tree, make_tree, write

HOSTNAME = "host"
# Entries a lying server puts in every listing below the container: none may lead the agent outside it.
LIES = ("type=dir; /sibling", "type=dir; ../../../../../sibling", "type=dir; /", "type=dir; //",
        "type=dir; ./", "type=dir; .", "type=dir; ..", "type=dir; a/../../../../../../sibling",
        "type=file; .x/../../../../../../sibling/keep.txt.partial-0123abcd",
        "type=file; ../../../../../../sibling/keep.txt", "type=dir; \\..\\..\\sibling")


class HostileTest(AgentTestCase):
    """A backup made on local disk, then served by the scripted server of ``serve``."""

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "ftp-root")
        self.container = os.path.join(self.root, "backups")
        self.sibling = os.path.join(self.root, "sibling")
        write(os.path.join(self.sibling, "keep.txt"), "not the agent's")
        self.args = ["--storage", "local", "--container", self.container]

    def storage_args(self):
        return [*self.args, "--hostname", HOSTNAME]

    def serve(self, **lies) -> hostile_ftp.HostileFtp:
        server = self.useFixture(hostile_ftp.HostileFtp(self.root, **lies))
        self.args = server.agent_options("backups")
        return server

    def agent_within(self, seconds: float, *args: str) -> subprocess.CompletedProcess:
        """The agent's run, failing the test if it does not end within ``seconds``."""
        argv = [AGENT, *self.storage_args(), "--backup-name", self.backup_name, *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=seconds)
        except subprocess.TimeoutExpired:
            self.fail(f"freezer-agent still running after {seconds}s: {argv}")


class TestLyingListings(HostileTest):
    """Names that leave the directory; ``TestDuplicateNames`` runs the same cases with a name listed twice."""

    def lies(self) -> tuple[str, ...]:
        return LIES

    def setUp(self):
        super().setUp()
        make_tree(self.source)
        self.l0 = self.backup()["time_stamp"]
        self.dead = self.l0 - 10 * 86400  # a level 0 that never completed, for admin to remove
        write(os.path.join(self.container, "data", "tar", f"{HOSTNAME}_{self.backup_name}", str(self.dead),
                           f"0_{self.dead}", "data"), "partial")
        self.server = self.serve(lie_under="/backups", extra_lines=self.lies())

    def assertNothingOutside(self):
        self.assertEqual(["keep.txt"], os.listdir(self.sibling))
        outside = [change for change in self.server.changes if not change[1].startswith(self.container + "/")]
        self.assertEqual([], outside)

    def test_info_lists_the_real_backup(self):
        proc = self.agent_within(120, "--action", "info")
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertNotIn("unexpected", proc.stderr)
        self.assertIn(dates.show(self.l0), proc.stdout)
        self.assertEqual(4, len(proc.stdout.splitlines()))  # header, rule, the backup, the dead level 0
        self.assertEqual(self.lies() is LIES, "not file names" in proc.stderr)
        self.assertNothingOutside()

    def test_admin_removes_only_inside_the_container(self):
        proc = self.agent_within(120, "--action", "admin", "--remove-older-than", "365")
        self.assertNotIn("unexpected", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertNothingOutside()
        self.assertEqual(0, proc.returncode, proc.stderr)
        kept = os.listdir(os.path.join(self.container, "data", "tar", f"{HOSTNAME}_{self.backup_name}"))
        self.assertEqual([str(self.l0)], [name for name in kept if name not in (".timestamps", ".index")])

    def test_restore_through_the_lies(self):
        expected = describe_tree(self.source)
        target = os.path.join(self.tmp, "restored")
        proc = self.agent_within(120, "--action", "restore", "--restore-abs-path", target)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertSameTree(expected, target)
        self.assertNothingOutside()


class TestDuplicateNames(TestLyingListings):
    """A real chain's name listed again, without a type fact."""

    def lies(self) -> tuple[str, ...]:
        return (f"size=1; {self.l0}", f"type=dir; {self.l0}")


class TestStallingServers(HostileTest):
    def test_dribbled_greeting_ends_at_the_deadline(self):
        self.serve(greeting="dribble")
        started = time.monotonic()
        proc = self.agent_within(60, "--action", "info", "--ftp-timeout", "2", "--storage-retry-time", "0")
        self.assertOneLineError(proc, "did not answer in time", "--ftp-timeout")
        self.assertLess(time.monotonic() - started, 40)

    def test_binary_greeting_is_one_clear_error(self):
        self.serve(greeting="garbage")
        proc = self.agent_within(60, "--action", "info", "--ftp-timeout", "5")
        self.assertFailsAtOnce(proc, "does not answer like an FTP server", "--ftp-port")

    def test_endless_listing_is_cut_with_a_clear_error(self):
        os.makedirs(os.path.join(self.container, "metadata", "tar", f"{HOSTNAME}_{self.backup_name}"))
        server = self.serve(endless_listing=True)
        proc = self.agent_within(120, "--action", "info")
        self.assertOneLineError(proc, "lists more than", "--container")
        self.assertLess(server.listing_bytes_sent, ftp.MAX_LISTING_BYTES + (64 << 20))


class TestDeadSession(testtools.TestCase):
    """vsftpd answers ``500 OOPS: priv_sock_get_cmd`` when its session process died: reconnect."""

    def test_download_after_oops_reconnects(self):
        root = self.useFixture(fixtures.TempDir()).path
        data = os.urandom(3 << 20)
        write(os.path.join(root, "c", "big"), data)
        server = self.useFixture(hostile_ftp.HostileFtp(root, oops_retr=2))
        driver = ftp.FtpStorage(ftp.FtpSettings(host=server.host, port=server.port, username=hostile_ftp.USER,
                                                password=hostile_ftp.PASSWORD, container="c", timeout=10))
        storage = registry.wrap(driver, backoff=0.1)
        self.addCleanup(storage.close)
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        received = b"".join(storage.get_stream("big"))
        self.assertEqual(hashlib.sha256(data).hexdigest(), hashlib.sha256(received).hexdigest())
        self.assertIn("OOPS", logs.output)


class TestLogins(testtools.TestCase):
    """USER and PASS go out together: every answer a server may give to the pair is read right."""

    def driver(self, login: str) -> ftp.FtpStorage:
        root = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(root, "c"))
        server = self.useFixture(hostile_ftp.HostileFtp(root, login=login))
        driver = ftp.FtpStorage(ftp.FtpSettings(host=server.host, port=server.port, username=hostile_ftp.USER,
                                                password=hostile_ftp.PASSWORD, container="c", timeout=10))
        self.addCleanup(driver.close)
        return driver

    def test_a_server_needing_no_password_logs_in(self):
        driver = self.driver("no-password")
        driver.put_bytes("f", b"data")
        self.assertEqual(b"data", b"".join(driver.get_stream("f")))

    def test_a_server_asking_for_an_account_is_one_clear_error(self):
        error = self.assertRaises(errors.AuthError, self.driver("account").listdir, "")
        self.assertIn("ACCT", str(error))
        self.assertNotIn(hostile_ftp.PASSWORD, str(error))

    def test_a_busy_server_is_worth_a_retry(self):
        error = self.assertRaises(errors.StorageError, self.driver("busy").listdir, "")
        self.assertTrue(error.transient, error)
        self.assertIn("421", str(error))


class TestCheckedNames(testtools.TestCase):
    def test_names_that_leave_the_directory_are_dropped_and_duplicates_merged(self):
        entries = [("/x", "dir"), ("..", "dir"), ("a", None), ("a", "file"), ("b/c", None), ("", None),
                   ("\\..", "dir"), ("ok", "dir")]
        self.assertEqual([("a", "file"), ("ok", "dir")], base.checked_entries(entries, "/d", "server"))
        self.assertEqual(["b", "a"], base.checked_names(["b", "a", "b"], "/d", "server"))  # the server's order

    def test_too_many_names_is_an_error(self):
        self.useFixture(fixtures.MonkeyPatch("freezer.storage.base.MAX_LISTING", 10))
        self.assertRaises(errors.ListingTooLong, base.checked_names, (str(n) for n in range(11)), "/d", "server")


class TestCorruptedCopy(AgentTestCase):
    """``[storage:NAME]`` copies: a corrupted first copy is passed over for the next one, and said so."""

    def setUp(self):
        super().setUp()
        self.copies = [os.path.join(self.tmp, name) for name in ("first", "second")]
        self.ini = os.path.join(self.tmp, "job.ini")
        write(self.ini, "".join(f"[storage:{os.path.basename(path)}]\nstorage = local\ncontainer = {path}\n\n"
                                for path in self.copies))
        make_tree(self.source)
        self.backup()
        self.target = os.path.join(self.tmp, "restored")

    def storage_args(self):
        return ["--config", self.ini]

    def corrupt(self, container: str) -> None:
        for parent, _dirs, names in os.walk(os.path.join(container, "data")):
            if "data" in names:
                with open(os.path.join(parent, "data"), "r+b") as handle:
                    handle.seek(100)
                    byte = handle.read(1)
                    handle.seek(100)
                    handle.write(bytes([byte[0] ^ 0xFF]))

    def test_restore_falls_back_to_the_next_copy(self):
        expected = describe_tree(self.source)
        self.corrupt(self.copies[0])
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target)
        self.assertSameTree(expected, self.target)
        self.assertIn("restore from [storage:first]", proc.stderr)
        self.assertIn("trying [storage:second]", proc.stderr)

    def test_every_copy_corrupted_names_them_and_how_to_pick_one(self):
        for copy in self.copies:
            self.corrupt(copy)
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, expect=None)
        self.assertOneLineError(proc, "every copy", "[storage:first]", "[storage:second]", "sha256",
                                "move another one first")
        self.assertFalse(os.path.exists(self.target))


class TestConsistencyBeforeCommit(AgentTestCase):
    """A restore failing ``--consistency-check`` leaves nothing in the target."""

    def setUp(self):
        super().setUp()
        self.container = os.path.join(self.tmp, "store")
        make_tree(self.source)
        self.target = os.path.join(self.tmp, "restored")

    def storage_args(self):
        return ["--storage", "local", "--container", self.container]

    def test_wrong_checksum_leaves_no_file(self):
        self.backup("--consistency-check")
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target,
                          "--consistency-checksum", "0" * 64, expect=None)
        self.assertOneLineError(proc, "consistency check failed", "nothing was restored")
        self.assertFalse(os.path.exists(self.target))

    def test_recorded_checksum_mismatch_leaves_the_empty_target_empty(self):
        self.backup("--consistency-check")
        for parent, _dirs, names in os.walk(os.path.join(self.container, "metadata")):
            if "metadata" in names:
                path = os.path.join(parent, "metadata")
                with open(path, encoding="utf-8") as handle:
                    record = handle.read()
                checksum = record.split('"consistency_checksum": "')[1][:64]
                write(path, record.replace(checksum, "1" * 64))
        os.makedirs(self.target)
        proc = self.agent("--action", "restore", "--restore-abs-path", self.target, "--consistency-check",
                          expect=None)
        self.assertOneLineError(proc, "consistency check failed", "1" * 64)
        self.assertEqual([], os.listdir(self.target))


class TestSftpSymlinkInContainer(AgentTestCase):
    """A symlink in the container on an SFTP server: admin removes the link, never what it points to."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.tmp))
        make_tree(self.source)
        self.backup()

    def storage_args(self):
        return [*self.server.agent_options(), "--hostname", HOSTNAME]

    def test_admin_removes_the_link_only(self):
        user = pwd.getpwnam(servers.TEST_USER)
        dead = int(time.time()) - 10 * 86400
        sibling = os.path.join(self.server.root, "sibling")
        write(os.path.join(sibling, f"0_{dead}", "keep.txt"), "not the agent's")
        for path in (sibling, os.path.join(sibling, f"0_{dead}"), os.path.join(sibling, f"0_{dead}", "keep.txt")):
            os.chown(path, user.pw_uid, user.pw_gid)
        link = os.path.join(self.server.container(), "metadata", "tar", f"{HOSTNAME}_{self.backup_name}", str(dead))
        os.symlink(sibling, link)
        os.lchown(link, user.pw_uid, user.pw_gid)
        proc = self.agent("--action", "admin", "--remove-older-than", "365", expect=None)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertTrue(os.path.exists(os.path.join(sibling, f"0_{dead}", "keep.txt")), proc.stderr)
        self.assertFalse(os.path.lexists(link))
