"""FTP and FTPS storage end to end against pyftpdlib and vsftpd on 127.0.0.1."""

import glob
import os
import socket

import fixtures
import testtools

from freezer import errors
from freezer.storage import ftp as ftp_storage
from freezer.storage import ftp_session
from freezer.testing import servers
from freezer.tests.functional import roundtrip
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree, mount_small_disk, write


class ServerAgentTest(AgentTestCase):
    """An agent test against a server fixture made by ``make_server``."""

    container = "backups"

    def make_server(self):
        raise NotImplementedError

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(self.make_server())

    def storage_args(self):
        return self.server.agent_options(self.container)

    def storage_root(self):
        return os.path.join(self.server.root, self.container)


class TestPyftpdFtp(roundtrip.RoundTripTests, roundtrip.LeftoverTests, ServerAgentTest):
    def make_server(self):
        return servers.PyFtpd(self.tmp)


class TestPyftpdFtps(roundtrip.RoundTripTests, ServerAgentTest):
    def make_server(self):
        return servers.PyFtpd(self.tmp, True)


class TestVsftpdFtps(ServerAgentTest):
    """vsftpd with require_ssl_reuse=YES and forced TLS: stock ftplib fails here with 522."""

    def make_server(self):
        return servers.Vsftpd(self.tmp, tls=True)

    def test_incremental_round_trip(self):
        make_tree(self.source)
        self.backup()
        write(f"{self.source}/added.txt", "added")
        os.remove(f"{self.source}/random.bin")
        self.assertEqual(1, self.backup()["level"])
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)


class TestVsftpdImplicitFtps(ServerAgentTest):
    """FTPS with TLS from the first byte (--ftp-implicit-tls), as on port 990."""

    def make_server(self):
        return servers.Vsftpd(self.tmp, implicit=True)

    def test_round_trip(self):
        make_tree(self.source)
        self.backup()
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)


class TestPyftpdActiveMode(ServerAgentTest):
    def make_server(self):
        return servers.PyFtpd(self.tmp)

    def storage_args(self):
        return self.server.agent_options(self.container) + ["--ftp-active"]

    def test_round_trip(self):
        make_tree(self.source)
        self.backup()
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)


class TestVsftpdFtp(ServerAgentTest):
    container = "/tmp/absolute-container-not-allowed"

    def make_server(self):
        return servers.Vsftpd(self.tmp)

    def storage_args(self):
        return self.server.agent_options(os.path.join(self.server.root, "nested", "backups"))

    def storage_root(self):
        return os.path.join(self.server.root, "nested", "backups")

    def test_absolute_container_and_nested_directories(self):
        make_tree(self.source)
        self.backup()
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)
        metadata = glob.glob(os.path.join(self.storage_root(), "metadata", "**", "metadata"), recursive=True)
        self.assertEqual(1, len(metadata))


class TestFtpErrors(ServerAgentTest):
    def make_server(self):
        return servers.PyFtpd(self.tmp)

    def options(self, **changes):
        """The server's options with some replaced (``None`` drops an option)."""
        options = dict(zip(self.server.agent_options()[::2], self.server.agent_options()[1::2], strict=True))
        for key, value in changes.items():
            key = "--" + key.replace("_", "-")
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        return [item for pair in options.items() for item in pair]

    def run_with(self, **changes):
        self.storage_args = lambda: self.options(**changes)
        write(f"{self.source}/f", "x")
        return self.agent("--path-to-backup", self.source, expect=None)

    def test_missing_host(self):
        self.assertOneLineError(self.run_with(ftp_host=None), "--ftp-host")

    def test_wrong_password_names_option_not_secret(self):
        proc = self.run_with(ftp_password="wrong-Secret-99")
        self.assertFailsAtOnce(proc, "--ftp-password", "127.0.0.1")
        self.assertNotIn("wrong-Secret-99", proc.stderr + proc.stdout)

    def test_connection_refused(self):
        proc = self.run_with(ftp_port=str(servers.free_port()))
        self.assertFailsAtOnce(proc, "refused", "--ftp-port")

    def test_unknown_host(self):
        proc = self.run_with(ftp_host="no-such-host.invalid")
        self.assertFailsAtOnce(proc, "cannot resolve", "--ftp-host")

    def test_silent_server_is_retried(self):
        """A timeout may pass: it is retried, unlike a refusal."""
        silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever answers
        self.addCleanup(silent.close)
        proc = self.run_with(ftp_port=str(silent.getsockname()[1]), ftp_timeout="1", storage_retry_time="0")
        self.assertOneLineError(proc, "did not answer in time", "--ftp-timeout")
        self.assertEqual(2, proc.stderr.count("retrying in"), proc.stderr)

    def test_ftps_against_plain_server(self):
        self.assertOneLineError(self.run_with(storage="ftps"), "TLS")

    def test_password_from_environment_and_file(self):
        write(f"{self.source}/f", "x")
        self.storage_args = lambda: self.options(ftp_password=None)
        self.agent("--path-to-backup", self.source, env={"FREEZER_FTP_PASSWORD": self.server.password})
        pw_file = os.path.join(self.tmp, "pw")
        write(pw_file, self.server.password + "\n", mode=0o600)
        self.storage_args = lambda: self.options(ftp_password=None, ftp_password_file=pw_file)
        self.agent("--path-to-backup", self.source)


class TestFtpsCertificate(ServerAgentTest):
    def make_server(self):
        return servers.PyFtpd(self.tmp, True)

    def test_untrusted_certificate_refused(self):
        write(f"{self.source}/f", "x")
        options = self.server.agent_options()
        index = options.index("--ftp-cacert")
        self.storage_args = lambda: options[:index] + options[index + 2:]
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertFailsAtOnce(proc, "certificate", "--ftp-cacert")
        insecure = self.agent("--path-to-backup", self.source, "--ftp-insecure")
        self.assertIn("NOT verified", insecure.stderr)


class RealDiskTests:
    """The container on a 2 MiB tmpfs: the server's own write fails, as on a real full disk."""

    def make_server(self):
        raise NotImplementedError

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(self.make_server())
        self.storage_args = lambda: self.server.agent_options()

    def disk(self, *options: str) -> str:
        owner = os.stat(self.server.root).st_uid
        return mount_small_disk(self, os.path.join(self.server.root, "backups"), owner, *options)

    def test_full_disk_fails_and_keeps_earlier_backup(self):
        container = self.disk()
        write(f"{self.source}/small.txt", "fits")
        self.backup("--compression", "none")
        write(f"{self.source}/big.bin", os.urandom(3 << 20))
        proc = self.agent("--path-to-backup", self.source, "--compression", "none", expect=None)
        # FTP cannot ask for free space: the servers answer 451 (vsftpd) or 426 (pyftpdlib).
        self.assertOneLineError(proc, "disk may be full")
        metadata = [f for f in _walk(container) if f.endswith("/metadata")]
        self.assertEqual(1, len(metadata))
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertEqual(["small.txt"], os.listdir(target))

    def test_read_only_disk_fails(self):
        self.disk("ro")
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "--container")


class TestVsftpdRealDisk(RealDiskTests, AgentTestCase):
    def make_server(self):
        return servers.Vsftpd(self.tmp)


class TestPyftpdRealDisk(RealDiskTests, AgentTestCase):
    def make_server(self):
        return servers.PyFtpd(self.tmp)


class TestFtpsClientCertificate(ServerAgentTest):
    """A server that wants a client certificate: --ftp-certfile and --ftp-keyfile present one."""

    def make_server(self):
        return servers.PyFtpd(self.tmp, True, client_certs=True)

    def test_round_trip_with_client_certificate(self):
        cert, key = self.server.ca.client_cert()
        make_tree(self.source)
        self.backup("--ftp-certfile", cert, "--ftp-keyfile", key)
        target = os.path.join(self.tmp, "restored")
        self.restore(target, "--ftp-certfile", cert, "--ftp-keyfile", key)
        self.assertSameTree(describe_tree(self.source), target)

    def test_without_client_certificate_one_clear_error(self):
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "TLS", "--ftp-certfile", "--ftp-keyfile")

    def test_unreadable_client_key_names_the_options(self):
        cert, _ = self.server.ca.client_cert()
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, "--ftp-certfile", cert,
                          "--ftp-keyfile", os.path.join(self.tmp, "missing.key"), expect=None)
        self.assertOneLineError(proc, "--ftp-keyfile")


class TestFtpServerRefusals(AgentTestCase):
    """Servers that refuse writes: read-only account, full disk."""

    def serve(self, *flags):
        server = self.useFixture(servers.PyFtpd(self.tmp, False, *flags))
        self.storage_args = lambda: server.agent_options()
        write(f"{self.source}/f", "x")
        return server

    def test_read_only_server(self):
        self.serve("--read-only")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "--container")

    def small_upload_to(self, *flags) -> BaseException:
        """A metadata-sized upload (sent before the server's 150) to a server started with ``flags``."""
        server = self.serve(*flags)
        os.makedirs(os.path.join(server.root, "backups", "dir"))  # so it is the STOR that is refused
        settings = ftp_storage.FtpSettings(host="127.0.0.1", port=server.port, username=server.username,
                                           password=server.password, container="backups")
        storage = ftp_storage.FtpStorage(settings)
        self.addCleanup(storage.close)
        return self.assertRaises(errors.StorageError, storage.put_bytes, "dir/metadata", b"{}" * 100)

    def test_a_small_upload_refused_for_space_says_so(self):
        self.assertIsInstance(self.small_upload_to("--full"), errors.NoSpace)

    def test_a_small_upload_refused_for_permission_names_the_option(self):
        self.assertIn("--container", str(self.small_upload_to("--read-only")))

    def test_busy_server_is_retried(self):
        self.serve("--refuse-first", "2")  # 421: try again later
        proc = self.agent("--path-to-backup", self.source)
        self.assertEqual(2, proc.stderr.count("retrying in"), proc.stderr)

    def earlier_backup_then_serve(self, *flags: str) -> servers.PyFtpd:
        """Make one good backup on an honest server, then serve the same root with ``flags``."""
        honest = servers.PyFtpd(self.tmp)
        honest.setUp()
        self.storage_args = lambda: honest.agent_options()
        write(f"{self.source}/f", "x")
        try:
            self.backup()
        finally:
            honest.cleanUp()
        server = self.useFixture(servers.PyFtpd(self.tmp, False, *flags))
        self.storage_args = lambda: server.agent_options()
        return server

    def test_full_server_keeps_earlier_backup(self):
        full = self.earlier_backup_then_serve("--full")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "space")
        metadata = [f for f in _walk(os.path.join(full.root, "backups")) if f.endswith("/metadata")]
        self.assertEqual(1, len(metadata))
        self.restore(os.path.join(self.tmp, "restored"))

    def test_server_losing_bytes_fails_the_upload(self):
        lossy = self.earlier_backup_then_serve("--lose-after", "1000")
        write(f"{self.source}/big.bin", os.urandom(1 << 20))
        proc = self.agent("--path-to-backup", self.source, "--compression", "none", expect=None)
        self.assertOneLineError(proc, "stored 1000 of the")
        metadata = [f for f in _walk(os.path.join(lossy.root, "backups")) if f.endswith("/metadata")]
        self.assertEqual(1, len(metadata))

    def restore_after_cut(self, *flags: str) -> str:
        """Back up a 2 MiB file, then restore it from a server that cuts the download's data connection."""
        write(f"{self.source}/big.bin", os.urandom(2 << 20))
        self.earlier_backup_then_serve("--cut-download-after", str(256 << 10), *flags)
        target = os.path.join(self.tmp, "restored")
        proc = self.agent("--action", "restore", "--restore-abs-path", target)
        self.assertSameTree(describe_tree(self.source), target)
        return proc.stderr

    def test_download_resumes_after_426(self):
        stderr = self.restore_after_cut()
        self.assertIn("426 Transfer aborted; 262144 bytes transmitted", stderr)
        self.assertIn("resuming at byte 262144", stderr)

    def test_download_resumes_after_data_connection_reset(self):
        stderr = self.restore_after_cut("--cut-reset")
        # A reset may discard bytes the kernel had not handed over yet, so the retry can start at 0.
        self.assertRegex(stderr, r"resuming at byte \d+|retrying in")
        self.assertIn("Connection reset", stderr)

    def test_server_without_mlsd(self):
        self.serve("--no-mlsd")
        make_tree(self.source)
        self.backup()
        self.backup()
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)
        self.result_of("--action", "admin", "--remove-from-date", "2100-01-01T00:00:00")


def _walk(root):
    for parent, _, files in os.walk(root):
        for name in files:
            yield os.path.join(parent, name)


class TestFtpRoundTrips(testtools.TestCase):
    """On a long link every command costs a round trip: a session does not repeat what it already said."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(servers.PyFtpd(self.useFixture(fixtures.TempDir()).path))
        self.writes: list[list[str]] = []  # the commands sent together, write by write
        self.storage, self.sent = self.session()

    def session(self) -> tuple[ftp_storage.FtpStorage, list[str]]:
        """A connected storage, and the list of the commands it sends from now on."""
        settings = ftp_storage.FtpSettings(host="127.0.0.1", port=self.server.port, username=self.server.username,
                                           password=self.server.password, container="backups")
        storage = ftp_storage.FtpStorage(settings)
        self.addCleanup(storage.close)
        sent: list[str] = []
        client = storage._client()
        real_putcmd = client.putcmd
        client.putcmd = lambda line: (sent.append(line), real_putcmd(line))
        real_together = ftp_session.send_together

        def together(ftp, lines):
            if ftp is client:
                sent.extend(lines)
                self.writes.append(lines)
            return real_together(ftp, lines)

        self.patch(ftp_session, "send_together", together)
        return storage, sent

    def test_listings_and_transfers_share_binary_mode_so_type_is_sent_only_at_login(self):
        for name in ("a", "b"):
            self.storage.put_stream(f"dir/{name}", [b"data"])
            self.assertEqual(4, self.storage.size(f"dir/{name}"))
        self.assertEqual(["a", "b"], self.storage.listdir("dir"))
        self.assertEqual(["a", "b"], self.storage.listdir("dir"))
        self.assertEqual(b"data", b"".join(self.storage.get_stream("dir/a")))
        self.assertEqual([], [c for c in self.sent if c.startswith(("TYPE", "OPTS"))])

    def test_a_listing_is_one_stat_without_a_data_connection(self):
        self.storage.put_stream("dir/a", [b"data"])
        remote = self.storage._abs("dir")
        del self.sent[:]
        self.assertEqual(["a"], self.storage.listdir("dir"))
        self.assertEqual([f"STAT {remote}"], self.sent)

    def test_listing_keeps_the_types_of_entries(self):
        self.storage.put_stream("dir/sub/file", [b"data"])
        self.storage.put_stream("dir/file", [b"data"])
        self.assertEqual([("file", "file"), ("sub", "dir")], self.storage._entries(self.storage._abs("dir")))

    def test_utf8_is_asked_for_only_before_the_first_non_ascii_path(self):
        self.storage.put_stream("plain/a", [b"data"])
        self.assertNotIn("OPTS UTF8 ON", self.sent)
        self.storage.put_stream("caf\u00e9/a", [b"data"])
        self.storage.put_stream("caf\u00e9/b", [b"data"])
        self.assertEqual(1, self.sent.count("OPTS UTF8 ON"), self.sent)
        self.assertEqual(["a", "b"], self.storage.listdir("caf\u00e9"))

    def test_an_absolute_container_needs_no_pwd(self):
        settings = ftp_storage.FtpSettings(host="127.0.0.1", port=self.server.port, username=self.server.username,
                                           password=self.server.password, container="/abs/container")
        storage = ftp_storage.FtpStorage(settings)
        self.addCleanup(storage.close)
        storage.put_stream("f", [b"data"])
        self.assertEqual("/abs/container", storage._root)
        self.assertEqual(b"data", b"".join(storage.get_stream("f")))

    def test_directories_a_listing_showed_are_not_made_again(self):
        self.storage.put_stream("a/b/c/first", [b"data"])
        later, sent = self.session()
        self.assertEqual(["c"], later.listdir("a/b"))
        later.put_stream("a/b/new/second", [b"data"])
        later.put_stream("a/b/c/third", [b"data"])
        self.assertEqual(["MKD /backups/a/b/new"], [c for c in sent if c.startswith(("MKD", "CWD"))])

    def test_a_directory_a_listing_found_missing_is_made_without_a_failed_attempt(self):
        self.storage.put_stream("a/first", [b"data"])
        later, sent = self.session()
        self.assertEqual(["first"], later.listdir("a"))
        self.assertEqual([], later.listdir("a/x/y"))
        later.put_stream("a/x/y/file", [b"data"])
        self.assertEqual(["MKD /backups/a/x", "MKD /backups/a/x/y"],
                         [c for c in sent if c.startswith("MKD")])

    def test_a_new_directory_under_existing_ones_costs_no_round_trip(self):
        self.storage.put_stream("a/b/c/first", [b"data"])
        later, sent = self.session()
        later.put_stream("a/b/c/d/second", [b"data"])
        self.assertEqual([], [c for c in sent if c.startswith("CWD")])
        made = ["MKD /backups", "MKD /backups/a", "MKD /backups/a/b", "MKD /backups/a/b/c", "MKD /backups/a/b/c/d"]
        # unknown to this session, all asked for in the upload's own write
        self.assertIn(made + ["PASV"], [write[:-1] for write in self.writes if write[-1].startswith("STOR")])
        self.assertEqual(b"data", b"".join(later.get_stream("a/b/c/d/second")))

    def test_a_fresh_tree_is_still_made_from_the_top(self):
        self.storage.put_stream("x/y/z/file", [b"data"])
        self.assertEqual(["x"], self.storage.listdir(""))
        self.assertEqual(b"data", b"".join(self.storage.get_stream("x/y/z/file")))

    def test_listing_a_missing_directory_does_not_fall_back_to_nlst(self):
        self.assertEqual([], self.storage.listdir("nowhere"))
        self.assertNotIn("NLST", " ".join(self.sent))
