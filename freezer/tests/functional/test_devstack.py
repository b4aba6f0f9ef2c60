"""The devstack plugin (``devstack/``) run against devstack's own function library.

``freezer/tests/devstack_phases.sh`` does what stack.sh, unstack.sh and clean.sh do around a
plugin, with stubs only for cloning, pip, packages, sudo and systemd; the scheduler it starts
must register with the module's real Keystone + freezer-api. devstack comes from
``$DEVSTACK_DIR`` (default: the pinned copy in ``../shared/third_party/devstack``).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sysconfig
import unittest

from freezer.testing.servers import free_port
from freezer.tests.functional import test_scheduler_api as api_tests
from freezer.tests.openstack import ADMIN_PASSWORD, PROJECT, REPO

DEVSTACK_DIR = os.environ.get("DEVSTACK_DIR") or os.path.join(REPO, "..", "shared", "third_party", "devstack")
DRIVER = os.path.join(REPO, "freezer", "tests", "devstack_phases.sh")
VENV = os.path.dirname(os.path.dirname(os.path.abspath(api_tests.SCHEDULER)))
# what freezer-api's own devstack plugin creates: user "freezer", $SERVICE_PASSWORD, admin role
SERVICE_PASSWORD = "service-Pw-1"


def _require_devstack() -> None:
    if not os.path.isfile(os.path.join(DEVSTACK_DIR, "functions")):
        raise unittest.SkipTest(f"no devstack at {DEVSTACK_DIR}: set $DEVSTACK_DIR to a devstack checkout")


class DevstackTestCase(api_tests.ApiTestCase):
    """A temporary devstack layout (TOP_DIR, DEST, DATA_DIR, /etc/freezer) per test."""

    @classmethod
    def setUpClass(cls):
        _require_devstack()
        super().setUpClass()
        _ensure_freezer_service_user(cls.stack)

    def setUp(self):
        super().setUp()
        self.dest = os.path.join(self.tmp, "opt-stack")
        self.conf_dir = os.path.join(self.tmp, "etc-freezer")
        self.status = os.path.join(self.dest, "status")
        self.data = os.path.join(self.dest, "data", "freezer")
        self.log = os.path.join(self.status, "freezer-scheduler.log")
        for path in (self.dest, os.path.join(self.tmp, "devstack-top")):
            os.makedirs(path)
        self.addCleanup(self._kill_leftovers)

    def env(self, **settings: str) -> dict[str, str]:
        """What stack.sh has set when it runs a plugin, plus this test's local.conf settings."""
        keystone = self.stack.auth_url.rsplit("/v3", 1)[0]
        base = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
        return {**base, "DEVSTACK_DIR": DEVSTACK_DIR, "TOP_DIR": os.path.join(self.tmp, "devstack-top"),
                "DEST": self.dest, "DATA_DIR": os.path.join(self.dest, "data"), "STACK_USER": _user(),
                "ENABLED_SERVICES": "key", "KEYSTONE_SERVICE_URI": keystone, "SERVICE_PASSWORD": SERVICE_PASSWORD,
                "SERVICE_PROJECT_NAME": PROJECT, "SERVICE_DOMAIN_NAME": "Default", "GLOBAL_VENV": "True",
                "DEVSTACK_VENV": VENV, "OFFLINE": "True", "FREEZER_REPO_UNDER_TEST": REPO,
                "FREEZER_CONF_DIR": self.conf_dir, **settings}

    def phase(self, script: str, env: dict[str, str], expect: int = 0) -> str:
        """Run the driver (stack, unstack or clean); its output."""
        proc = subprocess.run(["bash", DRIVER, script], env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(expect, proc.returncode, f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return proc.stdout + proc.stderr

    def assertSays(self, text: str, out: str) -> None:
        """``text`` is in the driver's output (only its end is shown when it is not)."""
        if text not in out:
            self.fail(f"{text!r} not in the output, which ends:\n{out[-3000:]}")

    def pid_of(self, service: str) -> int:
        with open(os.path.join(self.status, f"{service}.pid"), encoding="utf-8") as handle:
            return int(handle.read())

    def _kill_leftovers(self) -> None:
        """Processes the stubbed run_process started, should the test fail before unstack."""
        if not os.path.isdir(self.status):
            return
        for name in os.listdir(self.status):
            if name.endswith(".pid"):
                with contextlib.suppress(ValueError, ProcessLookupError):
                    os.killpg(self.pid_of(name[:-4]), signal.SIGKILL)


class TestDevstackPlugin(DevstackTestCase):
    def test_stack_configures_and_starts_the_scheduler_unstack_stops_it_clean_removes_its_files(self):
        api_tree = self._freezer_api_source_tree()
        client_id = f"devstack-{os.getpid()}"
        env = self.env(FREEZER_SCHEDULER_CLIENT_ID=client_id, FREEZER_SCHEDULER_INTERVAL="2",
                       FREEZER_SMOKE_TEST="True", FREEZER_SMOKE_FTP_PORT=str(free_port()))

        out = self.phase("stack", env)

        conf_file = os.path.join(self.conf_dir, "scheduler.conf")
        self.assertEqual(0o600, stat.S_IMODE(os.stat(conf_file).st_mode))
        conf = configparser.ConfigParser()
        conf.read(conf_file)
        self.assertEqual({"os_auth_url": self.stack.auth_url, "os_username": "freezer",
                          "os_password": SERVICE_PASSWORD, "os_project_name": PROJECT,
                          "os_user_domain_name": "Default", "os_project_domain_name": "Default"},
                         dict(conf["service_auth"]))
        jobs_dir = os.path.join(self.conf_dir, "scheduler", "conf.d")
        self.assertEqual({"client_id": client_id, "interval": "2", "jobs_dir": jobs_dir}, dict(conf["scheduler"]))
        storages = conf["capabilities"]["supported_storages"].split(",")
        self.assertTrue({"ftp", "ftps", "sftp"} <= set(storages), storages)
        for private in (jobs_dir, self.data):
            self.assertEqual(0o700, stat.S_IMODE(os.stat(private).st_mode), private)
        self.assertIn("'ftps', 'sftp']", _read(os.path.join(api_tree, "freezer_api", "common", "json_schemas.py")))

        client = self.wait_for(lambda: _client(self.stack, client_id), "the devstack scheduler to register")
        self.assertTrue({"ftp", "ftps", "sftp"} <= set(client["supported_storages"]), client)
        scheduler = self.pid_of("freezer-scheduler")
        self.assertIn(f"--config-file\0{conf_file}", _read(f"/proc/{scheduler}/cmdline"))

        self.assertSays("freezer smoke test:", out)
        self.assertTrue(os.path.isdir(os.path.join(self.data, "smoke-ftp", "smoke")), "no backup on the FTP server")
        ftp_server = self.pid_of("freezer-smoke-ftp")

        self.phase("unstack", env)
        for pid in (scheduler, ftp_server):
            self.assertFalse(_alive(pid), f"pid {pid} still runs after unstack")

        out = self.phase("stack", env)  # stack.sh again: freezer-api is patched already, the client registered
        self.assertSays("already accepts sftp", out)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(conf_file).st_mode))
        self.assertTrue(_alive(self.pid_of("freezer-scheduler")), "no scheduler after the second stack")
        self.phase("unstack", env)

        self.phase("clean", env)
        self.phase("clean", env)  # again: nothing left to remove is no error
        for gone in (conf_file, jobs_dir, self.data):
            self.assertFalse(os.path.exists(gone), gone)
        self.assertTrue(os.path.isdir(self.conf_dir), "clean removed the directory freezer-api shares")

    def test_disabled_scheduler_is_configured_but_not_started(self):
        self.phase("stack", self.env(DISABLED_SERVICES="freezer-scheduler"))
        self.assertTrue(os.path.isfile(os.path.join(self.conf_dir, "scheduler.conf")))
        self.assertFalse(os.path.exists(os.path.join(self.status, "freezer-scheduler.pid")))

    def test_failed_smoke_backup_stops_stack(self):
        env = self.env(FREEZER_SCHEDULER_CLIENT_ID=f"devstack-smoke-{os.getpid()}", FREEZER_SMOKE_TEST="True",
                       FREEZER_SMOKE_FTP_PORT=str(free_port()), FREEZER_SMOKE_SOURCE=os.path.join(self.tmp, "absent"))
        out = self.phase("stack", env, expect=1)
        self.assertSays(f"freezer smoke test: the backup of {env['FREEZER_SMOKE_SOURCE']} to ftp://127.0.0.1:"
                        f"{env['FREEZER_SMOKE_FTP_PORT']} failed", out)
        ftp_server = self.pid_of("freezer-smoke-ftp")
        self.phase("unstack", env)
        self.assertFalse(_alive(ftp_server), "the smoke FTP server still runs after unstack")

    def test_post_config_without_keystone_settings_names_them(self):
        env = self.env()
        del env["SERVICE_PASSWORD"], env["KEYSTONE_SERVICE_URI"]
        out = self.phase("stack", env, expect=1)
        self.assertSays("set FREEZER_SCHEDULER_AUTH_URL and FREEZER_SCHEDULER_PASSWORD", out)
        self.assertFalse(os.path.exists(os.path.join(self.conf_dir, "scheduler.conf")))

    def test_freezer_enabled_before_freezer_api_is_refused(self):
        out = self.phase("stack", self.env(PLUGINS_AFTER="freezer-api"), expect=1)
        self.assertSays("enable_plugin freezer must come after enable_plugin freezer-api", out)

    def test_with_freezer_api_on_the_host_extra_waits_for_it_and_warns_when_its_source_is_not_there(self):
        port = self.stack.api_url.rsplit(":", 1)[1]
        env = self.env(PLUGINS_BEFORE="freezer-api", ENABLED_SERVICES="key,freezer-api", SERVICE_HOST="127.0.0.1",
                       FREEZER_API_SERVER_TYPE="apache2",
                       FREEZER_API_PORT=port, FREEZER_SCHEDULER_CLIENT_ID=f"devstack-order-{os.getpid()}")
        out = self.phase("stack", env)
        self.assertSays(f"http://127.0.0.1:{port}", out)  # the URL waited for
        self.assertSays("sftp needs freezer-api patched", out)
        self.wait_for(lambda: _client(self.stack, env["FREEZER_SCHEDULER_CLIENT_ID"]), "the scheduler to register")
        self.phase("unstack", env)

    def test_scheduler_is_not_started_when_freezer_api_does_not_answer(self):
        url = f"http://127.0.0.1:{free_port()}"
        out = self.phase("stack", self.env(FREEZER_SCHEDULER_API_URL=url, SERVICE_TIMEOUT="2"), expect=1)
        self.assertSays(f"freezer-scheduler not started: freezer-api did not answer at {url} within 2 s", out)
        self.assertFalse(os.path.exists(os.path.join(self.status, "freezer-scheduler.pid")))
        conf = configparser.ConfigParser()
        conf.read(os.path.join(self.conf_dir, "scheduler.conf"))
        self.assertEqual(url, conf["service_auth"]["os_backup_url"])

    def _freezer_api_source_tree(self) -> str:
        """$DEST/freezer-api as freezer-api's plugin leaves it: a source tree, unpatched."""
        tree = os.path.join(self.dest, "freezer-api")
        schemas = os.path.join(sysconfig.get_paths()["purelib"], "freezer_api", "common", "json_schemas.py")
        os.makedirs(os.path.join(tree, "freezer_api", "common"))
        shutil.copy(schemas, os.path.join(tree, "freezer_api", "common"))
        self.assertNotIn("'sftp'", _read(os.path.join(tree, "freezer_api", "common", "json_schemas.py")))
        return tree


def _ensure_freezer_service_user(stack) -> None:
    """User ``freezer`` with the admin role, as freezer-api's devstack plugin makes it (in our project)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from keystoneclient.v3 import client

    auth = v3.Password(auth_url=stack.auth_url, username="admin", password=ADMIN_PASSWORD, project_name="admin",
                       user_domain_name="Default", project_domain_name="Default")
    keystone = client.Client(session=session.Session(auth=auth))
    if keystone.users.list(name="freezer"):
        return
    project = keystone.projects.find(name=PROJECT)
    user = keystone.users.create("freezer", domain="default", password=SERVICE_PASSWORD, default_project=project)
    keystone.roles.grant(keystone.roles.find(name="admin"), user=user, project=project)


def _client(stack, client_id: str) -> dict | None:
    """The registered client ``client_id`` as freezer-api has it, or None."""
    for entry in stack.get("clients?limit=100")["clients"]:
        if entry["client"]["client_id"] == client_id:
            return entry["client"]
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie: exited, its parent (the driver's shell) is gone
        return "\nState:\tZ" not in _read(f"/proc/{pid}/status")
    return False


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name
