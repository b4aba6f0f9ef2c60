"""The settings builder: options and environment -> one frozen settings object per storage; secrets read once."""

import dataclasses
import os

import fixtures
import testtools

from freezer.common import config, credentials, settings
from freezer.errors import FreezerError, StorageError


class SettingsTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        for name in ("FREEZER_FTP_PASSWORD", "FREEZER_SSH_PASSWORD", "SECRET_KEY", "OS_PASSWORD"):
            self.useFixture(fixtures.EnvironmentVariable(name))

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path


class TestSecretPrecedence(SettingsTest):
    """An option's value wins over its file, which wins over its environment variable."""

    def test_option_wins_over_file_and_environment(self):
        path = self.write("pw", b"from-file\n")
        conf = settings.load(["--ftp-password", "from-cli", "--ftp-password-file", path],
                             environ={"FREEZER_FTP_PASSWORD": "from-env"})
        self.assertEqual("from-cli", conf.ftp_password)

    def test_file_wins_over_environment(self):
        path = self.write("pw", b"from-file\r\nsecond line\n")
        conf = settings.load(["--ssh-password-file", path], environ={"FREEZER_SSH_PASSWORD": "from-env"})
        self.assertEqual("from-file", conf.ssh_password)

    def test_environment_last(self):
        environ = {"FREEZER_FTP_PASSWORD": "a", "FREEZER_SSH_PASSWORD": "b", "SECRET_KEY": "c", "OS_PASSWORD": "d"}
        conf = settings.load([], environ=environ)
        self.assertEqual(("a", "b", "c", "d"),
                         (conf.ftp_password, conf.ssh_password, conf.secret_key, conf.os_password))

    def test_nothing_anywhere_stays_unset(self):
        self.assertIsNone(settings.load([], environ={}).ftp_password)

    def test_secrets_reach_the_log_mask(self):
        path = self.write("key", b"s3-secret\n")
        conf = settings.load(["--secret-key-file", path], environ={"OS_PASSWORD": "os-secret"})
        self.assertEqual({"s3-secret", "os-secret"}, set(config.secret_values(conf)))

    def test_unreadable_file_names_the_option_not_the_secret(self):
        error = self.assertRaises(FreezerError, settings.load, ["--os-password-file", "/nonexistent/pw"], environ={})
        self.assertEqual("cannot read --os-password-file /nonexistent/pw: No such file or directory", str(error))


class TestTheOneReader(SettingsTest):
    def test_password_line_drops_a_carriage_return_key_line_keeps_it(self):
        path = self.write("pw", b"secret\r\nrest\n")
        self.assertEqual("secret", credentials.password_line(path, "--ftp-password-file"))
        self.assertEqual(b"secret\r", credentials.key_line(path, "--encrypt-pass-file"))

    def test_nul_bytes_refused_without_showing_them(self):
        path = self.write("pw", b"zq7\0xy9\n")
        error = self.assertRaises(FreezerError, credentials.password_line, path, "--ftp-password-file")
        self.assertEqual(f"--ftp-password-file {path} holds NUL bytes: give a text file whose first line is the "
                         "secret", str(error))
        self.assertNotIn("zq7", str(error))

    def test_password_not_utf8(self):
        path = self.write("pw", b"\xff\xfe\n")
        error = self.assertRaises(FreezerError, credentials.password_line, path, "--ssh-password-file")
        self.assertEqual(f"--ssh-password-file {path}: the first line is not UTF-8 text", str(error))

    def test_empty_key_line_refused_empty_password_allowed(self):
        path = self.write("empty", b"\n")
        self.assertEqual("", credentials.password_line(path, "--ftp-password-file"))
        error = self.assertRaises(FreezerError, credentials.key_line, path, "--auth-key-file")
        self.assertIn("the first line is empty", str(error))

    def test_key_line_reads_as_openssl_does(self):
        path = self.write("long", b"a" * 5000)
        self.assertEqual(b"a" * credentials.SECRET_LINE_MAX, credentials.key_line(path, "--auth-key-file"))


class TestBuilders(SettingsTest):
    def conf(self, *argv):
        return config.build(list(argv))

    def test_missing_host_messages(self):
        for builder, message in ((settings.ftp, "--storage ftp needs --ftp-host"),
                                 (settings.ftps, "--storage ftps needs --ftp-host"),
                                 (settings.sftp, "--storage sftp needs --ftp-host"),
                                 (settings.ssh, "--storage ssh needs --ssh-host")):
            error = self.assertRaises(StorageError, builder, self.conf("--container", "c"))
            self.assertEqual(message, str(error))

    def test_ftp_ports_and_bare_ipv6_host(self):
        self.assertEqual(("::1", 21), dataclasses.astuple(settings.ftp(self.conf("--ftp-host", "[::1]",
                                                                                  "--container", "c")))[:2])
        implicit = settings.ftps(self.conf("--ftp-host", "h", "--ftp-implicit-tls", "--container", "c"))
        self.assertEqual((990, True, True), (implicit.port, implicit.tls, implicit.implicit_tls))
        self.assertEqual(21, settings.ftp(self.conf("--ftp-host", "h", "--ftp-implicit-tls", "--container", "c")).port)

    def test_settings_are_frozen_and_hide_secrets(self):
        s = settings.ftp(self.conf("--ftp-host", "h", "--ftp-password", "hunter22", "--container", "c"))
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, s, "host", "other")
        self.assertNotIn("hunter22", repr(s))

    def test_sftp_spellings_agent_and_passphrase(self):
        path = self.write("pass", b"phrase\r\n")
        conf = self.conf("--ftp-host", "h", "--ssh-host", "s", "--ssh-port", "2222", "--ftp-username", "u",
                         "--ssh-key-passphrase-file", path, "--container", "c")
        sftp = settings.sftp(conf, environ={"SSH_AUTH_SOCK": "/run/agent.sock"})
        self.assertEqual(("h", 22, "u", "--ftp", "phrase", "/run/agent.sock"),
                         (sftp.host, sftp.port, sftp.username, sftp.option_prefix, sftp.key_passphrase,
                          sftp.agent_socket))
        ssh = settings.ssh(conf, environ={})
        self.assertEqual(("s", 2222, "--ssh-host", None), (ssh.host, ssh.port, ssh.option("host"), ssh.agent_socket))
        self.assertNotIn("phrase", repr(sftp))

    def test_s3_environment_fallbacks(self):
        environ = {"ENDPOINT": "http://env:9000", "ACCESS_KEY": "env-id"}
        s = settings.s3(self.conf("--container", "bucket/a/b", "--secret-key", "k"), environ=environ)
        self.assertEqual(("bucket", "a/b", "http://env:9000", "env-id", "k"),
                         (s.bucket, s.prefix, s.endpoint, s.access_key, s.secret_key))
        s = settings.s3(self.conf("--container", "bucket", "--endpoint", "http://opt", "--access-key", "opt-id"),
                        environ=environ)
        self.assertEqual(("http://opt", "opt-id"), (s.endpoint, s.access_key))
        self.assertNotIn("secret", repr(s))

    def test_swift_environment_fallbacks_and_auth_version(self):
        environ = {"OS_AUTH_URL": "http://keystone/auth/v1.0", "OS_USERNAME": "acct:user", "OS_REGION_NAME": "r1"}
        s = settings.swift(self.conf("--container", "c/p/", "--os-password", "pw"), environ=environ)
        self.assertEqual(("http://keystone/auth/v1.0", "acct:user", "c", "p", "1", "r1"),
                         (s.auth_url, s.username, s.container, s.prefix, s.auth_version, s.region_name))
        environ["OS_IDENTITY_API_VERSION"] = "3.0"
        conf = self.conf("--container", "c", "--os-password", "pw")
        self.assertEqual("3", settings.swift(conf, environ).auth_version)
        self.assertEqual("3", settings.auth_version(None, "https://keystone/v3"))

    def test_swift_names_every_missing_option(self):
        error = self.assertRaises(FreezerError, settings.swift, self.conf("--container", "c"), environ={})
        self.assertEqual("--storage swift needs --os-auth-url, --os-username, --os-password "
                         "(or --os-password-file, $OS_PASSWORD)", str(error))


class TestSections(SettingsTest):
    def test_a_section_reads_its_own_password_file_else_the_jobs_secret(self):
        own = self.write("own", b"section-pw\n")
        ini = self.write("job.ini", (f"[job]\ncontainer = c\nftp_host = h\n"
                                     f"[storage:a]\nstorage = ftp\nftp_password_file = {own}\n"
                                     f"[storage:b]\nstorage = ftp\n").encode())
        conf = settings.load(["--config", ini], environ={"FREEZER_FTP_PASSWORD": "job-pw"})
        first, second = (settings.ftp(section) for section in conf.freezer_storages)
        self.assertEqual(("section-pw", "job-pw"), (first.password, second.password))

    def test_a_sections_unreadable_file_names_the_section(self):
        ini = self.write("job.ini", b"[storage:a]\nstorage = ftp\nftp_password_file = /nonexistent/pw\n")
        error = self.assertRaises(FreezerError, settings.load, ["--config", ini], environ={})
        self.assertEqual("cannot read [storage:a] ftp_password_file /nonexistent/pw: No such file or directory",
                         str(error))
