"""SFTP and ssh storage end to end against OpenSSH sshd on 127.0.0.1."""

import os
import re
import stat
import subprocess

import fixtures
import paramiko
import testtools

from freezer.errors import StorageError
from freezer.storage import sftp as sftp_storage
from freezer.storage import sftp_stripes
from freezer.testing.servers import free_port
from freezer.testing.sshd import Sshd, keygen
from freezer.tests.functional import roundtrip
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree, mount_small_disk, write
from freezer.tests.functional.test_scheduler import SchedulerTest, spec_job


class SshdAgentTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.tmp))

    def storage_args(self):
        return self.server.agent_options()

    def storage_root(self):
        return self.server.container()


class TestSftpRoundTrip(roundtrip.RoundTripTests, roundtrip.LeftoverTests, SshdAgentTest):
    """The spec's spelling: --storage sftp --ftp-host ... with a password."""


class TestSshSpelling(SshdAgentTest):
    def storage_args(self):
        return self.server.ssh_options()

    def round_trip(self):
        make_tree(self.source)
        self.backup()
        write(f"{self.source}/more.txt", "more")
        self.assertEqual(1, self.backup()["level"])
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)

    def test_key_login_round_trip(self):
        self.round_trip()

    def test_encrypted_key_with_passphrase_file(self):
        key = keygen(os.path.join(self.tmp, "rsa_key"), "rsa", passphrase="key-Phrase-7")
        self.server.authorize(key)
        phrase = os.path.join(self.tmp, "phrase")
        write(phrase, "key-Phrase-7\n", mode=0o600)
        options = self.server.ssh_options()
        options[options.index("--ssh-key") + 1] = key
        self.storage_args = lambda: options + ["--ssh-key-passphrase-file", phrase]
        self.round_trip()
        self.storage_args = lambda: options
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "--ssh-key-passphrase-file")


class TestSshAgentLogin(SshdAgentTest):
    def test_key_from_running_agent(self):
        started = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
        env = dict(re.findall(r"(SSH_AUTH_SOCK|SSH_AGENT_PID)=([^;]+);", started))
        self.addCleanup(subprocess.run, ["ssh-agent", "-k"], env=dict(os.environ, **env), capture_output=True)
        subprocess.run(["ssh-add", self.server.client_key], env=dict(os.environ, **env), check=True,
                       capture_output=True)
        options = self.server.ssh_options()
        key_at = options.index("--ssh-key")
        self.storage_args = lambda: options[:key_at] + options[key_at + 2:]
        write(f"{self.source}/f", "x")
        self.agent("--path-to-backup", self.source, env=env)
        no_agent = self.agent("--path-to-backup", self.source, expect=None, env={"SSH_AUTH_SOCK": ""})
        self.assertOneLineError(no_agent, "--ssh-key")


class TestNoSftpSubsystem(AgentTestCase):
    def test_clear_error(self):
        server = self.useFixture(Sshd(self.tmp, sftp=False))
        self.storage_args = lambda: server.agent_options()
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "SFTP subsystem")


class TestHostKeys(AgentTestCase):
    def start(self, port: int, kind: str = "ed25519", *more_kinds: str) -> Sshd:
        """An sshd on ``port`` with fresh host keys; the agent reaches it with --storage sftp."""
        server = Sshd(self.tmp, port=port, host_key_kind=kind, more_host_key_kinds=more_kinds)
        server.setUp()
        self.addCleanup(server.cleanUp)
        self.storage_args = lambda: server.agent_options()
        write(f"{self.source}/f", "x")
        return server

    def known_hosts_lines(self, server: Sshd) -> list[str]:
        with open(server.known_hosts) as handle:
            return handle.read().splitlines()

    def test_unknown_learnt_then_changed_key_refused(self):
        port = free_port()
        first = self.start(port)
        self.backup()
        first.stop()
        self.assertIn(f"[127.0.0.1]:{port}", self.known_hosts_lines(first)[0])
        self.start(port)  # a fresh ed25519 key: changed
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertFailsAtOnce(proc, "CHANGED", "127.0.0.1", "ssh-keygen -R", "known_hosts")

    def test_known_host_showing_only_another_key_type_refused(self):
        port = free_port()
        first = self.start(port)
        self.backup()
        first.stop()
        for kind in ("rsa", "ecdsa"):
            server = self.start(port, kind)
            proc = self.agent("--path-to-backup", self.source, expect=None)
            self.assertOneLineError(proc, "CHANGED", "ssh-ed25519", f"[127.0.0.1]:{port}", server.known_hosts)
            self.assertNotIn("learnt", proc.stderr)
            self.assertEqual(1, len(self.known_hosts_lines(server)))  # nothing learnt
            server.stop()

    def test_known_key_type_asked_for_first(self):
        """known_hosts holds the server's ecdsa key; the server also has ed25519 (paramiko's first choice)."""
        port = free_port()
        server = self.start(port, "ecdsa", "ed25519")
        with open(server.host_key + ".pub") as public:
            kind, key = public.read().split()[:2]
        write(server.known_hosts, f"[127.0.0.1]:{port} {kind} {key}\n")
        proc = self.agent("--path-to-backup", self.source)
        self.assertNotIn("learnt", proc.stderr)
        self.assertEqual(1, len(self.known_hosts_lines(server)))

    def test_learnt_known_hosts_is_private_whatever_the_umask(self):
        server = self.start(free_port())
        known_hosts = os.path.join(self.tmp, "new-dir", "known_hosts")
        self.storage_args = lambda: server.agent_options() + ["--ssh-known-hosts", known_hosts]
        self.agent_prefix = ("sh", "-c", 'umask 000 && exec "$@"', "sh")
        proc = self.agent("--path-to-backup", self.source)
        self.assertIn("learnt host key", proc.stderr)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(known_hosts).st_mode))
        self.assertEqual(0o700, stat.S_IMODE(os.stat(os.path.dirname(known_hosts)).st_mode))

    def test_strict_policy_refuses_unknown_host(self):
        server = self.useFixture(Sshd(self.tmp))
        self.storage_args = lambda: server.agent_options() + ["--ssh-host-key-policy", "strict"]
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "unknown", "known")


class TestFtpHostKeyOptions(AgentTestCase):
    """--storage sftp with the spec's spelling: --ftp-host-key-policy and --ftp-known-hosts over the ssh_ ones."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.tmp))
        self.pinned = os.path.join(self.tmp, "pinned_known_hosts")
        self.storage_args = lambda: self.server.agent_options() + ["--ftp-known-hosts", self.pinned]
        write(f"{self.source}/f", "x")

    def keyscan(self) -> str:
        """The server's host keys as an operator pins them: ssh-keyscan into a known_hosts file."""
        scan = subprocess.run(["ssh-keyscan", "-p", str(self.server.port), "127.0.0.1"], capture_output=True,
                              text=True, timeout=60, check=True)
        write(self.pinned, scan.stdout)
        return scan.stdout

    def test_strict_and_reject_refuse_an_unknown_host_naming_the_option(self):
        for policy in ("strict", "reject"):
            proc = self.agent("--path-to-backup", self.source, "--ftp-host-key-policy", policy, expect=None)
            self.assertFailsAtOnce(proc, "unknown", "--ftp-host-key-policy", "--ftp-known-hosts", self.pinned)
            self.assertFalse(os.path.exists(self.pinned))
            self.assertFalse(os.path.exists(self.server.known_hosts))  # the --ssh-known-hosts file neither

    def test_accept_new_learns_into_the_ftp_known_hosts_file(self):
        self.agent("--path-to-backup", self.source, "--ftp-host-key-policy", "accept-new",
                   "--ssh-host-key-policy", "strict")
        with open(self.pinned) as handle:
            self.assertIn(f"[127.0.0.1]:{self.server.port} ssh-ed25519 ", handle.read())
        self.assertFalse(os.path.exists(self.server.known_hosts))

    def test_pinned_known_hosts_with_strict_policy(self):
        pinned = self.keyscan()
        proc = self.agent("--path-to-backup", self.source, "--ftp-host-key-policy", "strict")
        self.assertNotIn("learnt", proc.stderr)
        with open(self.pinned) as handle:
            self.assertEqual(pinned, handle.read())

    def test_ssh_policy_applies_when_the_ftp_one_is_unset(self):
        proc = self.agent("--path-to-backup", self.source, "--ssh-host-key-policy", "strict", expect=None)
        self.assertFailsAtOnce(proc, "unknown", "--ssh-host-key-policy", self.pinned)

    def test_ini_file_spelling(self):
        self.keyscan()
        ini = os.path.join(self.tmp, "job.ini")
        write(ini, f"[job]\nftp_host_key_policy = reject\nftp_known_hosts = {self.pinned}\n")
        self.storage_args = lambda: self.server.agent_options()
        self.agent("--path-to-backup", self.source, "--config", ini)
        write(self.pinned, "")
        proc = self.agent("--path-to-backup", self.source, "--config", ini, expect=None)
        self.assertFailsAtOnce(proc, "unknown", "--ftp-host-key-policy")


class TestPinnedHostKeyInAJob(SchedulerTest):
    """The docs' recipe: ssh-keyscan before the first run, then ftp_known_hosts + strict in freezer_action."""

    def test_pinned_job_runs_and_an_unpinned_one_is_refused(self):
        server = self.useFixture(Sshd(os.path.join(self.tmp, "sshd")))
        pinned = os.path.join(self.tmp, "known_hosts.freezer")
        scan = subprocess.run(["ssh-keyscan", "-p", str(server.port), "127.0.0.1"], capture_output=True,
                              text=True, timeout=60, check=True)
        write(pinned, scan.stdout)
        log = os.path.join(self.tmp, "job.log")
        job = spec_job("pinned", "sftp", server, self.source, log, container=server.container(),
                       ftp_known_hosts=pinned, ftp_host_key_policy="strict")
        job["job_actions"][0]["max_retries"] = 0
        path = self.add_job("pinned.json", job)
        self.run_once()
        self.assertEqual("completed", self.state(path)["status"])
        write(pinned, "")
        self.run_once(expect=1)
        self.assertIn("--ftp-host-key-policy", self.state(path)["actions"][0]["error"])


class TestSftpErrors(SshdAgentTest):
    def with_options(self, **changes):
        options = self.server.agent_options()
        for key, value in changes.items():
            options[options.index("--" + key.replace("_", "-")) + 1] = value
        self.storage_args = lambda: options
        write(f"{self.source}/f", "x")
        return self.agent("--path-to-backup", self.source, expect=None)

    def test_wrong_password(self):
        proc = self.with_options(ftp_password="Wrong-pw-123")
        self.assertFailsAtOnce(proc, "--ftp-password", "127.0.0.1")
        self.assertNotIn("Wrong-pw-123", proc.stderr)

    def test_connection_refused(self):
        self.assertFailsAtOnce(self.with_options(ftp_port=str(free_port())), "refused", "--ftp-port")

    def test_permission_denied_on_container(self):
        self.assertOneLineError(self.with_options(container="/root/not-yours"), "--container")


class TestSftpServerDisk(SshdAgentTest):
    """The container on a tiny tmpfs: OpenSSH answers a bare "Failure", the agent finds out why."""

    def mount_container(self, *options: str) -> str:
        return mount_small_disk(self, self.server.container(), os.stat(self.server.root).st_uid, *options)

    def test_full_disk_named_and_earlier_backup_kept(self):
        self.mount_container()
        write(f"{self.source}/small.txt", "fits")
        self.backup("--compression", "none")
        write(f"{self.source}/big.bin", os.urandom(3 << 20))
        proc = self.agent("--path-to-backup", self.source, "--compression", "none", expect=None)
        self.assertOneLineError(proc, "out of space", "bytes free")
        os.remove(f"{self.source}/big.bin")
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertEqual(["small.txt"], os.listdir(target))

    def test_read_only_disk_named(self):
        self.mount_container("ro")
        write(f"{self.source}/f", "x")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "read-only")


class RoundTrips:
    """Counts the waits of one SFTP channel for replies to what it sent: each is a round trip on a long link."""

    def __init__(self, client: paramiko.SFTPClient):
        self.count = 0
        self.sent_since_read = False
        real_send, real_read = client._send_packet, client._read_packet

        def send(*args):
            self.sent_since_read = True
            return real_send(*args)

        def read():
            packet = real_read()  # a prefetch thread may send while this waits: look afterwards
            if self.sent_since_read:
                self.count, self.sent_since_read = self.count + 1, False
            return packet

        client._send_packet, client._read_packet = send, read

    def taken(self) -> int:
        """Round trips since the last call."""
        count, self.count = self.count, 0
        return count


class TestSftpRoundTrips(testtools.TestCase):
    """On a long link every wait for a reply costs a round trip: independent requests go out together."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path))

    def session(self) -> tuple[sftp_storage.SftpStorage, RoundTrips]:
        """A connected storage, and the round trips it takes from now on."""
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=self.server.port, username=self.server.username,
                                             password=self.server.password, container=self.server.container(),
                                             known_hosts=self.server.known_hosts)
        storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(storage.close)
        return storage, RoundTrips(storage._client())

    def test_an_upload_into_new_directories_takes_three_round_trips(self):
        storage, trips = self.session()
        storage.put_stream("a/b/c/first", [b"data"])  # the container itself is new too
        self.assertEqual(3, trips.taken())  # mkdirs and open; size and close; rename
        later, trips = self.session()
        later.put_stream("a/b/c/d/second", [b"data", b"more"])
        later.put_stream("a/b/c/d/third", [b"data"])
        self.assertEqual(6, trips.taken())
        self.assertEqual(b"datamore", b"".join(later.get_stream("a/b/c/d/second")))

    def test_a_claim_takes_one_round_trip_and_stays_exclusive(self):
        storage, trips = self.session()
        self.assertTrue(storage.claim("data/tar/h_w/100/0_100"))
        self.assertEqual(1, trips.taken())
        self.assertTrue(storage.claim("data/tar/h_w/100/1_101"))
        self.assertEqual(1, trips.taken())
        other, _ = self.session()
        self.assertFalse(other.claim("data/tar/h_w/100/1_101"))

    def test_a_download_left_midway_leaves_the_storage_usable(self):
        storage, _ = self.session()
        data = os.urandom(8 << 20)
        storage.put_stream("dir/file", [data])
        stream = storage.get_stream("dir/file")
        self.assertEqual(data[:1 << 20], next(stream))
        stream.close()  # its reading thread may still wait for replies: the session goes with it
        self.assertEqual(data, b"".join(storage.get_stream("dir/file")))

    def test_a_small_download_takes_two_round_trips(self):
        storage, trips = self.session()
        storage.put_stream("dir/file", [b"x" * 100_000])  # one read request
        trips.taken()
        self.assertEqual(b"x" * 100_000, b"".join(storage.get_stream("dir/file")))
        self.assertEqual(2, trips.taken())  # open and size; the read (the close is not waited for)
        self.assertEqual(b"x" * 1000, b"".join(storage.get_stream("dir/file", 99_000)))

    def test_directories_are_listed_together(self):
        storage, trips = self.session()
        for name in ("one/a", "one/b", "two/c", "three/d"):
            storage.put_stream(name, [b""])
        listing, trips = self.session()
        self.assertEqual([["a", "b"], ["c"], [], ["d"]], listing.listdirs(["one", "two", "missing", "three"]))
        self.assertEqual(2, trips.taken())  # open all; read all (the closes are not waited for)
        self.assertEqual(["one", "three", "two"], listing.listdir(""))

    def test_a_long_listing_is_read_whole(self):
        storage, _ = self.session()
        storage.claim("many")
        root = os.path.join(self.server.container(), "many")
        names = sorted(f"file-{n:04d}-" + "x" * 40 for n in range(700))  # several READDIR replies
        for name in names:
            open(os.path.join(root, name), "w").close()
        self.assertEqual(names, storage.listdir("many"))

    def test_hundreds_of_directories_are_listed_in_two_round_trips(self):
        paths = self.directories(self.server, 250)
        storage, trips = self.session()
        self.assertEqual([[f"f{n}"] for n in range(250)], storage.listdirs(paths))
        self.assertEqual(2, trips.taken())

    @staticmethod
    def directories(server: Sshd, count: int) -> list[str]:
        """``count`` directories of one file each, made on the server's disk; their container paths."""
        for n in range(count):
            os.makedirs(os.path.join(server.container(), "dirs", f"d{n}"))
            open(os.path.join(server.container(), "dirs", f"d{n}", f"f{n}"), "w").close()
        return [f"dirs/d{n}" for n in range(count)]

    def test_a_fresh_tree_and_an_existing_directory_still_work(self):
        storage, _ = self.session()
        storage.put_stream("x/y/z/file", [b"data"])
        storage.rmtree("x/y")
        storage.put_stream("x/y/z/file", [b"again"])
        self.assertEqual(b"again", b"".join(storage.get_stream("x/y/z/file")))
        self.assertTrue(storage.claim("x/y/slot"))
        self.assertFalse(storage.claim("x/y/slot"))

    def test_a_file_in_the_way_is_named(self):
        storage, _ = self.session()
        storage.put_stream("plain", [b"a file"])
        for attempt in (lambda: storage.claim("plain/0_100"), lambda: storage.put_stream("plain/sub/f", [b""])):
            error = self.assertRaises(StorageError, attempt)
            self.assertIn("plain on 127.0.0.1", str(error))
            self.assertIn("is a file, not a directory", str(error))


class TestSftpServerOutOfHandles(testtools.TestCase):
    """A server whose process runs out of descriptors while listing: the refused directories are listed later."""

    def test_every_directory_is_listed_with_few_descriptors(self):
        server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path, open_files=48))
        paths = TestSftpRoundTrips.directories(server, 120)
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=server.port, username=server.username,
                                             password=server.password, container=server.container(),
                                             known_hosts=server.known_hosts)
        storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(storage.close)
        with self.assertLogs("freezer.storage.sftp_requests", "DEBUG") as logs:
            listings = storage.listdirs([*paths, "dirs/missing"])
        self.assertEqual([[f"f{n}"] for n in range(120)] + [[]], listings)
        self.assertIn("server refused", "".join(logs.output))


class TestOneSessionPerConnection(SshdAgentTest):
    """A server that allows one SFTP channel per connection (MaxSessions 1): long uploads use that one."""

    def setUp(self):
        AgentTestCase.setUp(self)
        self.server = self.useFixture(Sshd(self.tmp, extra_config=("MaxSessions 1",)))

    def test_long_backup_and_restore(self):
        write(f"{self.source}/random", os.urandom(sftp_stripes.STRIPE_AFTER + (4 << 20)))
        write(f"{self.source}/small", "x")
        proc = self.agent("--action", "backup", "--path-to-backup", self.source, "--compression", "none", "--debug")
        self.assertIn("uploading over one channel: no more SFTP channels", proc.stderr)  # the fallback was taken
        target = os.path.join(self.tmp, "restored")
        self.restore(target)
        self.assertSameTree(describe_tree(self.source), target)

    def test_the_refused_channel_is_not_asked_for_again(self):
        self.useFixture(fixtures.FakeLogger())  # paramiko reports the refused channel as an error
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=self.server.port, username=self.server.username,
                                             password=self.server.password, container=self.server.container(),
                                             known_hosts=self.server.known_hosts)
        storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(storage.close)
        chunks = [os.urandom(1 << 20) for _ in range(12)]
        self.assertEqual(12 << 20, storage.put_stream("long/one", iter(chunks)))
        self.assertTrue(storage._channels.refused)
        self.assertEqual([], storage._channels.channels)
        storage.put_stream("long/two", iter(chunks))
        self.assertEqual(b"".join(chunks), b"".join(storage.get_stream("long/one")))
        self.assertEqual(b"".join(chunks), b"".join(storage.get_stream("long/two")))


class TestSftpStripedUpload(testtools.TestCase):
    """A long upload to OpenSSH goes over more than one SFTP channel (each has its own window)."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.useFixture(fixtures.TempDir()).path))
        settings = sftp_storage.SftpSettings(host="127.0.0.1", port=self.server.port, username=self.server.username,
                                             password=self.server.password, container=self.server.container(),
                                             known_hosts=self.server.known_hosts,
                                             connections=1)  # one connection's channels; auto may pick 4 under load
        self.storage = sftp_storage.SftpStorage(settings)
        self.addCleanup(self.storage.close)

    def test_every_byte_lands_at_its_offset(self):
        # Uneven chunk sizes, so a chunk written at the wrong offset would show.
        chunks = [os.urandom(size) for size in [1 << 20] * 9 + [12345, 1 << 20, 777, 3 << 20, 1]]
        written = self.storage.put_stream("long/file", iter(chunks))
        self.assertEqual(sum(map(len, chunks)), written)
        self.assertEqual(sftp_stripes.UPLOAD_CHANNELS - 1, len(self.storage._channels.channels))
        self.assertEqual(b"".join(chunks), b"".join(self.storage.get_stream("long/file")))
        self.storage.put_stream("long/small", [b"short"])  # the extra channel stays open for the next one
        self.assertEqual(b"short", b"".join(self.storage.get_stream("long/small")))

    def test_the_channels_are_opened_before_the_upload_needs_them(self):
        chunk = os.urandom(1 << 20)
        self.storage.put_stream("mid/file", [chunk] * 3)  # past OPEN_CHANNELS_AFTER, short of STRIPE_AFTER
        self.storage._channels.wait()
        self.assertEqual(sftp_stripes.UPLOAD_CHANNELS - 1, len(self.storage._channels.channels))
        self.assertEqual(chunk * 3, b"".join(self.storage.get_stream("mid/file")))

    def test_a_failing_stream_leaves_no_file_and_the_storage_usable(self):
        def failing():
            for _ in range(12):
                yield os.urandom(1 << 20)
            raise RuntimeError("source broke")

        self.assertRaises(RuntimeError, self.storage.put_stream, "long/broken", failing())
        self.assertEqual([], self.storage.listdir("long"))
        self.storage.put_stream("long/after", [b"fine"] * 3)
        self.assertEqual(b"finefinefine", b"".join(self.storage.get_stream("long/after")))
