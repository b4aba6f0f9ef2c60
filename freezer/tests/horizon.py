"""Horizon 27 with freezer-web-ui on 127.0.0.1 for tests, set up as an operator would.

``site()`` writes a ``local_settings.py`` (Keystone URL, locmem cache, DEBUG for static files) and an
"enabled" directory holding freezer-web-ui's ``_50*.py`` files and, with ``plugin=True``, ours;
Horizon reads that directory as part of ``openstack_dashboard.local.enabled``, so the venv is not
touched. ``Horizon`` serves the site with Django's ``runserver``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import threading

import fixtures
import requests

from freezer.testing.servers import free_port, wait_for_port
from freezer.tests.openstack import REPO, _stop

WEB_UI_PATCH = os.path.join(REPO, "contrib", "freezer-web-ui-ftp.patch")
LOCAL_SETTINGS = """# written by freezer.tests.horizon
import openstack_dashboard.local.enabled as _enabled
_enabled.__path__.append({enabled!r})

DEBUG = True
SECRET_KEY = "freezer-tests-only"
LOCAL_PATH = {dir!r}
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
OPENSTACK_KEYSTONE_URL = {auth_url!r}
OPENSTACK_KEYSTONE_DEFAULT_ROLE = "member"
SESSION_ENGINE = "django.contrib.sessions.backends.file"
SESSION_FILE_PATH = {dir!r}
CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                       "OPTIONS": {{"MAX_ENTRIES": 100000}}}}}}
COMPRESS_ENABLED = True  # compiled once, then served from the cache: pages in 1-2 s, not 10
COMPRESS_OFFLINE = False
STATIC_ROOT = {static!r}
LOGGING = {{"version": 1, "disable_existing_loggers": False,
           "handlers": {{"console": {{"class": "logging.StreamHandler"}}}},
           "root": {{"handlers": ["console"], "level": "WARNING"}}}}
"""


def site(workdir: str, auth_url: str, plugin: bool = True, code: str | None = None) -> dict[str, str]:
    """Write the site's settings under ``workdir``; the environment that runs Django with them.

    ``code``: a directory put first on the path (a patched copy of ``freezer_ui``, for one).
    """
    enabled = os.path.join(workdir, "enabled")
    os.makedirs(os.path.join(workdir, "local"), exist_ok=True)
    os.makedirs(enabled, exist_ok=True)
    freezer_ui = os.path.join(code, "freezer_ui") if code else _package_dir("freezer_ui")
    for path in glob.glob(os.path.join(freezer_ui, "enabled", "_50*.py")):
        shutil.copy(path, enabled)
    if plugin:
        shutil.copy(os.path.join(_package_dir("freezer_ui_ftp"), "enabled", "_5059_freezer_ui_ftp.py"), enabled)
    with open(os.path.join(workdir, "local", "__init__.py"), "w", encoding="utf-8"):
        pass
    with open(os.path.join(workdir, "local", "local_settings.py"), "w", encoding="utf-8") as out:
        out.write(LOCAL_SETTINGS.format(enabled=enabled, dir=workdir, auth_url=auth_url,
                                        static=os.path.join(workdir, "static")))
    path = [p for p in (code, workdir, os.environ.get("PYTHONPATH")) if p]
    return dict(os.environ, DJANGO_SETTINGS_MODULE="openstack_dashboard.settings",
                PYTHONPATH=os.pathsep.join(path))


def patched_freezer_ui(workdir: str) -> str:
    """A copy of the installed freezer_ui with contrib/freezer-web-ui-ftp.patch applied; its parent dir."""
    code = os.path.join(workdir, "code")
    shutil.copytree(_package_dir("freezer_ui"), os.path.join(code, "freezer_ui"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(WEB_UI_PATCH, "rb") as patch:
        proc = subprocess.run(["patch", "-p1", "--forward"], cwd=code, stdin=patch, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{WEB_UI_PATCH} does not apply: {proc.stdout.decode()} {proc.stderr.decode()}")
    return code


def _package_dir(name: str) -> str:
    return os.path.dirname(importlib.util.find_spec(name).origin)


class Horizon(fixtures.Fixture):
    """Horizon + freezer-web-ui (+ our plug-in) under ``runserver``; ``url`` is its root."""

    def __init__(self, workdir: str, auth_url: str, plugin: bool = True, code: str | None = None):
        super().__init__()
        self.dir, self.auth_url, self.plugin, self.code = workdir, auth_url, plugin, code
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _setUp(self) -> None:
        env = site(self.dir, self.auth_url, self.plugin, self.code)
        log = open(os.path.join(self.dir, "horizon.out"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen([sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}",
                                 "--noreload", "--skip-checks"],
                                cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.addCleanup(_stop, proc)
        try:
            wait_for_port(self.port, proc, timeout=90)
        except RuntimeError as exc:
            raise RuntimeError(f"Horizon did not start: {exc}; {self.log_tail()}") from exc

    def warm_up(self) -> None:
        """Fetch the login page in the background: its first render compiles the styles."""
        self._warm = threading.Thread(target=self._fetch_login_page, daemon=True)
        self._warm.start()

    def _fetch_login_page(self) -> None:
        self.warm_error = None
        try:
            requests.get(self.url + "/auth/login/", timeout=300).raise_for_status()
        except requests.RequestException as exc:
            self.warm_error = exc

    def wait_warm(self) -> None:
        """Wait for ``warm_up``; a login page that failed to render fails here."""
        self._warm.join()
        if self.warm_error is not None:
            raise RuntimeError(f"Horizon's login page failed: {self.warm_error}; {self.log_tail()}")

    def log_tail(self) -> str:
        with open(os.path.join(self.dir, "horizon.out"), encoding="utf-8", errors="replace") as handle:
            return handle.read()[-3000:]
