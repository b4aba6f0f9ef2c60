"""Keystone and freezer-api on 127.0.0.1 for tests: one fixture, started once per test module.

Keystone (sqlite, fernet tokens) is served by ``wsgi_serve``; freezer-api 19.0.0 runs on sqlite
from a copy of its package with ``contrib/freezer-api-sftp.patch`` applied. A project ``backup``
holds a user ``scheduler`` (member role) that the scheduler and the ``freezer`` CLI log in as.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import time

import fixtures
import requests

from freezer.testing.servers import free_port, wait_for_port

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SFTP_PATCH = os.path.join(REPO, "contrib", "freezer-api-sftp.patch")
ADMIN_PASSWORD = "admin-Pw-1"
START_ATTEMPTS = 3  # a server that exits before it listens is started again (spawn_listening)
SCHEDULER_USER, SCHEDULER_PASSWORD, PROJECT = "scheduler", "scheduler-Pw-1", "backup"

KEYSTONE_CONF = """[DEFAULT]
log_file = {dir}/keystone.log
[database]
connection = sqlite:///{dir}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-receipts
[credential]
key_repository = {dir}/credential-keys
[identity]
password_hash_rounds = 4
"""

FREEZER_API_CONF = """[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
log_file = {dir}/{name}.log
[storage]
backend = sqlalchemy
driver = sqlalchemy
[database]
connection = sqlite:///{dir}/{name}.db
[paste_deploy]
config_file = {paste}
[keystone_authtoken]
www_authenticate_uri = {auth_url}
auth_url = {auth_url}
auth_type = password
username = admin
password = {password}
project_name = admin
user_domain_name = Default
project_domain_name = Default
"""


class OpenStack(fixtures.Fixture):
    """Keystone + freezer-api (patched for sftp); ``auth_env()`` and ``service_auth()`` reach them."""

    def __init__(self, workdir: str):
        super().__init__()
        self.dir = workdir
        self.keystone_port, self.api_port = free_port(), free_port()
        self.auth_url = f"http://127.0.0.1:{self.keystone_port}/v3"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self._unpatched_url: str | None = None
        self._token: tuple[str, str] | None = None

    def _setUp(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        self._start_keystone()
        self._register_users_and_service()
        self._start_freezer_api()

    # -- Keystone -----------------------------------------------------------------------------
    def _start_keystone(self) -> None:
        conf = self._write("keystone.conf", KEYSTONE_CONF.format(dir=self.dir))
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        manage = [os.path.join(BIN, "keystone-manage"), "--config-file", conf]
        _run(manage + ["db_sync"])
        for setup in ("fernet_setup", "credential_setup"):
            _run(manage + [setup, "--keystone-user", user, "--keystone-group", group])
        _run(manage + ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-region-id", "RegionOne",
                       *[arg for kind in ("admin", "internal", "public")
                         for arg in (f"--bootstrap-{kind}-url", self.auth_url + "/")]])
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=conf)
        self._spawn("keystone", [sys.executable, "-m", "freezer.tests.wsgi_serve", str(self.keystone_port),
                                 "keystone.wsgi.api:application"], env, self.keystone_port, timeout=90)

    def _register_users_and_service(self) -> None:
        from keystoneauth1 import session
        from keystoneauth1.identity import v3
        from keystoneclient.v3 import client

        auth = v3.Password(auth_url=self.auth_url, username="admin", password=ADMIN_PASSWORD, project_name="admin",
                           user_domain_name="Default", project_domain_name="Default")
        keystone = client.Client(session=session.Session(auth=auth))
        project = keystone.projects.create(PROJECT, "default")
        user = keystone.users.create(SCHEDULER_USER, domain="default", password=SCHEDULER_PASSWORD,
                                     default_project=project)
        keystone.roles.grant(keystone.roles.find(name="member"), user=user, project=project)
        service = keystone.services.create("freezer", "backup")
        for interface in ("public", "internal", "admin"):
            keystone.endpoints.create(service, self.api_url, interface=interface, region="RegionOne")

    # -- freezer-api ----------------------------------------------------------------------------
    def _start_freezer_api(self) -> None:
        self._serve_freezer_api("freezer-api", self.api_port, self._patched_freezer_api())

    def unpatched_api(self) -> str:
        """The URL of a second freezer-api, 19.0.0 as installed (no sftp), started on first use."""
        if self._unpatched_url is None:
            port = free_port()
            self._serve_freezer_api("freezer-api-unpatched", port, None)
            self._unpatched_url = f"http://127.0.0.1:{port}"
        return self._unpatched_url

    def _serve_freezer_api(self, name: str, port: int, code: str | None) -> None:
        paste = os.path.join(sys.prefix, "etc", "freezer", "freezer-paste.ini")
        conf = self._write(f"{name}.conf", FREEZER_API_CONF.format(
            port=port, dir=self.dir, name=name, paste=paste, auth_url=self.auth_url, password=ADMIN_PASSWORD))
        env = dict(os.environ)
        if code:
            env["PYTHONPATH"] = os.pathsep.join([code, os.environ.get("PYTHONPATH", "")])
        _run([os.path.join(BIN, "freezer-manage"), "--config-file", conf, "db", "sync"], env=env)
        self._spawn(name, [os.path.join(BIN, "freezer-api"), "--config-file", conf], env, port, timeout=60)

    def _patched_freezer_api(self) -> str:
        """A copy of the installed freezer_api package with the sftp patch applied; its parent dir."""
        code = os.path.join(self.dir, "freezer-api-code")
        installed = os.path.join(sysconfig.get_paths()["purelib"], "freezer_api")
        shutil.copytree(installed, os.path.join(code, "freezer_api"),
                        ignore=shutil.ignore_patterns("__pycache__", "tests"))
        with open(SFTP_PATCH, "rb") as patch:
            _run(["patch", "-p1", "--forward", "--quiet"], cwd=code, stdin=patch)
        return code

    # -- helpers --------------------------------------------------------------------------------
    def _write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        return path

    def _spawn(self, name: str, argv: list[str], env: dict, port: int, timeout: float) -> None:
        proc = spawn_listening(argv, env, port, timeout, os.path.join(self.dir, f"{name}.out"))
        self.addCleanup(_stop, proc)

    def service_auth(self) -> dict[str, str]:
        """The scheduler's ``[service_auth]`` section (upstream's ``os_*`` key names)."""
        return {"os_auth_url": self.auth_url, "os_username": SCHEDULER_USER, "os_password": SCHEDULER_PASSWORD,
                "os_project_name": PROJECT, "os_user_domain_name": "Default",
                "os_project_domain_name": "Default"}

    def auth_env(self) -> dict[str, str]:
        """Environment for the ``freezer`` CLI (python-freezerclient) as the scheduler's user."""
        return {key.upper(): value for key, value in self.service_auth().items()}

    def freezer(self, *args: str, api_url: str | None = None) -> str:
        """Run the ``freezer`` CLI (against ``api_url`` instead of the catalog's freezer-api); its stdout."""
        env = dict(os.environ, **self.auth_env())
        if api_url:
            env["OS_BACKUP_URL"] = api_url
        proc = subprocess.run([os.path.join(BIN, "freezer"), *args], env=env, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"freezer {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def token_and_project(self) -> tuple[str, str]:
        """A token for the scheduler's user and its project id (kept: tokens last an hour)."""
        if self._token is None:
            self._token = self._new_token()
        return self._token

    def _new_token(self) -> tuple[str, str]:
        user = {"name": SCHEDULER_USER, "domain": {"name": "Default"}, "password": SCHEDULER_PASSWORD}
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                         "scope": {"project": {"name": PROJECT, "domain": {"name": "Default"}}}}}
        reply = requests.post(self.auth_url + "/auth/tokens", json=body, timeout=30)
        reply.raise_for_status()
        return reply.headers["X-Subject-Token"], reply.json()["token"]["project"]["id"]

    def get(self, path: str, api_url: str | None = None) -> dict | None:
        """GET ``/v2/{project}/<path>`` from freezer-api as the scheduler's user; None if 404."""
        token, project = self.token_and_project()
        reply = requests.get(f"{api_url or self.api_url}/v2/{project}/{path}", headers={"X-Auth-Token": token},
                             timeout=30)
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        return reply.json()

    def post(self, path: str, doc: dict, api_url: str | None = None) -> requests.Response:
        """POST a document to ``/v2/{project}/<path>`` as the scheduler's user; the reply."""
        token, project = self.token_and_project()
        return requests.post(f"{api_url or self.api_url}/v2/{project}/{path}", headers={"X-Auth-Token": token},
                             data=json.dumps(doc), timeout=30)


def spawn_listening(argv: list[str], env: dict, port: int, timeout: float, log_path: str) -> subprocess.Popen:
    """Start a server, its output appended to ``log_path``, and wait until ``port`` listens.

    A server that exits before it listens is started again, up to START_ATTEMPTS times; the error
    then ends with its log. (freezer-api once exited at start-up in a suite on two workers, where
    the other worker's connections take ports from the same range as ``free_port``.)
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        try:
            wait_for_port(port, proc, timeout=timeout)
            return proc
        except RuntimeError as exc:
            exited = proc.poll() is not None
            _stop(proc)
            if not exited or attempt == START_ATTEMPTS:
                raise RuntimeError(f"{exc} (attempt {attempt}); {log_path} ends: {_tail(log_path)}") from exc
            time.sleep(1)
    raise AssertionError("not reached")


def _tail(path: str, size: int = 2000) -> str:
    with open(path, "rb") as log:
        log.seek(max(os.path.getsize(path) - size, 0))
        return log.read().decode(errors="replace").strip()


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies without cleaning up (Linux prctl)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run(argv: list[str], **kwargs) -> None:
    proc = subprocess.run(argv, capture_output=True, timeout=300, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {proc.stderr.decode(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


if __name__ == "__main__":  # start both by hand: python -m freezer.tests.openstack DIR
    stack = OpenStack(sys.argv[1])
    stack.setUp()
    print(json.dumps({"api": stack.api_url, **stack.service_auth()}, indent=2), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    stack.cleanUp()
