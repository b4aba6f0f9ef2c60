"""Option merging: command line over ini file, secrets from files and environment."""

import os

import fixtures
import testtools

from freezer.common import config, settings
from freezer.errors import FreezerError


class TestConfig(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def ini(self, text):
        path = os.path.join(self.tmp, "job.ini")
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def test_defaults(self):
        conf = config.build([])
        self.assertEqual(("backup", "gzip", True), (conf.action, conf.compression, config.incremental(conf)))

    def test_no_incremental_as_the_spec_writes_it(self):
        self.assertFalse(config.incremental(config.build(["--no-incremental"])))

    def test_ini_any_section_dashes_and_coercion(self):
        path = self.ini("[job]\nbackup-name = nightly\nmax_level = 3\noverwrite = true\n"
                        "restore_from_date = none\n[storage:extra]\nstorage = local\nbackup_name = ignored\n")
        conf = config.build(["--config", path])
        self.assertEqual(("nightly", 3, True, None),
                         (conf.backup_name, conf.max_level, conf.overwrite, conf.restore_from_date))

    def test_command_line_wins_over_ini(self):
        path = self.ini("[default]\nbackup_name = from_ini\ncompression = xz\n")
        conf = config.build(["--config", path, "--backup-name", "from_cli"])
        self.assertEqual(("from_cli", "xz"), (conf.backup_name, conf.compression))

    def test_bad_ini_value_names_the_option(self):
        path = self.ini("[default]\nmax_level = lots\n")
        error = self.assertRaises(FreezerError, config.build, ["--config", path])
        self.assertIn("max_level", str(error))

    def test_missing_ini_file(self):
        error = self.assertRaises(FreezerError, config.build, ["--config", "/nonexistent.ini"])
        self.assertIn("--config", str(error))

    def test_unknown_action_is_one_clear_error(self):
        error = self.assertRaises(FreezerError, config.build, ["--action", "fly"])
        self.assertIn("backup, restore, info, admin", str(error))

    def test_password_from_file(self):
        path = os.path.join(self.tmp, "pw")
        with open(path, "w") as handle:
            handle.write("s3cret\n")
        self.assertEqual("s3cret", settings.load(["--ftp-password-file", path]).ftp_password)

    def test_password_from_environment(self):
        self.useFixture(fixtures.EnvironmentVariable("FREEZER_FTP_PASSWORD", "envpw"))
        self.assertEqual("envpw", settings.load([]).ftp_password)

    def test_command_line_password_wins(self):
        self.useFixture(fixtures.EnvironmentVariable("FREEZER_FTP_PASSWORD", "envpw"))
        self.assertEqual("clipw", settings.load(["--ftp-password", "clipw"]).ftp_password)

    def test_secret_values_listed_for_masking(self):
        conf = config.build(["--ftp-password", "p1", "--ssh-password", "p2"])
        self.assertEqual({"p1", "p2"}, set(config.secret_values(conf)))


class TestHostKeySettings(testtools.TestCase):
    """sftp reads ftp_known_hosts / ftp_host_key_policy, each falling back to the ssh_ one; ssh reads ssh_ only."""

    def settings(self, storage, *argv):
        s = settings.host_key_settings(config.build(list(argv)), storage)
        return s.known_hosts, s.policy, s.known_hosts_option, s.policy_option

    def test_defaults_are_the_ssh_ones(self):
        self.assertEqual(("~/.ssh/known_hosts", "accept-new", "--ssh-known-hosts", "--ssh-host-key-policy"),
                         self.settings("sftp"))

    def test_ftp_spelling_wins_for_sftp(self):
        argv = ("--ftp-known-hosts", "/kh", "--ftp-host-key-policy", "strict", "--ssh-known-hosts", "/ssh")
        self.assertEqual(("/kh", "strict", "--ftp-known-hosts", "--ftp-host-key-policy"),
                         self.settings("sftp", *argv))
        self.assertEqual(("/ssh", "accept-new", "--ssh-known-hosts", "--ssh-host-key-policy"),
                         self.settings("ssh", *argv))

    def test_each_falls_back_on_its_own(self):
        self.assertEqual(("/ssh", "strict", "--ssh-known-hosts", "--ftp-host-key-policy"),
                         self.settings("sftp", "--ftp-host-key-policy", "strict", "--ssh-known-hosts", "/ssh"))

    def test_reject_is_strict(self):
        self.assertEqual("strict", self.settings("sftp", "--ftp-host-key-policy", "reject")[1])
        self.assertEqual("strict", self.settings("ssh", "--ssh-host-key-policy", "reject")[1])

    def test_ini_spelling_and_bad_value(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, "job.ini")
        with open(path, "w") as handle:
            handle.write("[job]\nftp-host-key-policy = reject\nftp_known_hosts = /pinned\n")
        self.assertEqual(("/pinned", "strict"), self.settings("sftp", "--config", path)[:2])
        error = self.assertRaises(FreezerError, config.build, ["--ftp-host-key-policy", "trust-all"])
        self.assertIn("ftp", str(error))


class TestChildEnvironment(testtools.TestCase):
    def test_tools_get_only_the_allowed_variables(self):
        environ = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "HOME": "/root",
                   "ACCESS_KEY": "id", "FREEZER_FTP_PASSWORD": "a", "SECRET_KEY": "c", "OS_PASSWORD": "d",
                   "MY_DB_PASSWORD": "h", "github_token": "i", "DB_PASSWD": "j", "GITHUB_PAT": "k",
                   "TAR_OPTIONS": "--exclude=*", "XZ_OPT": "--format=lzma", "LD_PRELOAD": "/tmp/x.so"}
        self.assertEqual({"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "HOME": "/root"},
                         config.child_environment(environ))
        self.assertEqual({"PATH": os.defpath}, config.child_environment({"DB_PASSWD": "j"}))

    def test_exec_keeps_the_operators_variables_not_the_agents_secrets(self):
        environ = {"PATH": "/usr/bin", "DB_PASSWD": "db-pass", "GITHUB_PAT": "ghp_x", "PGPASSWORD": "pg",
                   "FREEZER_FTP_PASSWORD": "ftp-secret", "OS_PASSWORD": "os", "SECRET_KEY": "s3",
                   "COPY": "ftp-secret", "URL": "ftp://u:ftp-secret@host/", "SHORT": "a-b", "PASS_LINE": "pass phrase"}
        kept = config.exec_environment(["ftp-secret", "a", "pass phrase"], environ)
        self.assertEqual({"PATH": "/usr/bin", "DB_PASSWD": "db-pass", "GITHUB_PAT": "ghp_x", "PGPASSWORD": "pg",
                          "SHORT": "a-b"}, kept)

    def test_every_secret_the_agent_reads_is_listed(self):
        for _file_option, env_var in config.SECRET_SOURCES.values():
            self.assertIn(env_var, config.SECRET_ENV)


class TestStorageSections(testtools.TestCase):
    """``[storage:NAME]``: each section is one storage; what it leaves out comes from the job."""

    def test_sections_in_order_over_the_job_options(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "job.ini")
        with open(path, "w") as handle:
            handle.write("[job]\ncontainer = shared\nftp_username = bob\n"
                         "[storage:a]\nstorage = local\ncontainer = /srv/a\n"
                         "[storage:b]\nstorage = ftp\nftp-host = ::1\nftp_port = 2121\n")
        conf = settings.load(["--config", path])
        first, second = conf.freezer_storages
        self.assertEqual(("local", "/srv/a", "ftp", "shared", "::1", 2121, "bob"),
                         (first.storage, first.container, second.storage, second.container,
                          second.ftp_host, second["ftp_port"], second.ftp_username))
        self.assertEqual((), first.freezer_storages)

    def test_unknown_key_in_a_section_names_it(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, "job.ini")
        with open(path, "w") as handle:
            handle.write("[storage:a]\nstorage = local\nftp_hots = x\n")
        error = self.assertRaises(FreezerError, settings.load, ["--config", path])
        self.assertIn("[storage:a] has unknown option 'ftp_hots'", str(error))
