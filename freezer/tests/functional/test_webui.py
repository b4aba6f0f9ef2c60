"""freezer-web-ui with our FTP/FTPS/SFTP plug-in, driven in headless Chromium (Debian packages).

Keystone and freezer-api come from the scheduler API tests' fixture; Horizon starts once for the
module. An operator logs in, creates an ``ftps`` action in the form, and our scheduler runs it
against a real FTPS server; the restore must match. Set ``FREEZER_SCREENSHOT_DIR`` (e.g. to
``doc/source``) to keep the screenshot of the filled form as ``webui-ftps-action.png``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile

import fixtures
import testtools
import xstatic.pkg.jquery
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from freezer.testing import servers
from freezer.testing.sshd import Sshd
from freezer.tests.functional.base import describe_tree, make_tree
from freezer.tests.functional.test_scheduler_api import ApiTestCase
from freezer.tests.horizon import Horizon, patched_freezer_ui
from freezer.tests.openstack import SCHEDULER_PASSWORD, SCHEDULER_USER, OpenStack

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FTP_FIELDS = ("ftp_host", "ftp_port", "ftp_username", "ftp_password")
RULES = ("max_retries", "max_retries_interval", "mandatory")
ONLY_FOR = {"ftp_cacert": "ftps", "ftp_known_hosts": "sftp", "ftp_host_key_policy": "sftp"}


def chromium() -> webdriver.Chrome:
    """Headless Chromium from Debian through its own chromedriver; nothing fetched from the network."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{path} is missing: run tools/setup-env.sh (Debian chromium, chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--no-first-run", "--window-size=1280,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


_browser: list[webdriver.Chrome] = []


def shared_browser() -> webdriver.Chrome:
    """One Chromium for the whole module, quit when the test process exits."""
    if not _browser:
        _browser.append(chromium())
        atexit.register(_browser[0].quit)
    return _browser[0]


class WebUiTestCase(ApiTestCase):
    """One Horizon and one browser for the module, on top of the shared Keystone + freezer-api."""

    horizon: Horizon | None = None
    browser: webdriver.Chrome | None = None

    @classmethod
    def setUpClass(cls):
        if WebUiTestCase.horizon is None:
            cls._start_horizon_while_keystone_starts()
        super().setUpClass()
        if WebUiTestCase.browser is None:
            WebUiTestCase.horizon.wait_warm()
            WebUiTestCase.browser = shared_browser()
            WebUiTestCase._log_in()

    @staticmethod
    def _start_horizon_while_keystone_starts() -> None:
        """Horizon compiles its pages' styles (~10 s) while Keystone and freezer-api start (30-60 s)."""
        if ApiTestCase.stack is None:  # as ApiTestCase.setUpClass does, but Keystone's URL known first
            workdir = tempfile.mkdtemp(prefix="freezer-openstack-")
            atexit.register(shutil.rmtree, workdir, True)
            ApiTestCase.stack = OpenStack(workdir)
            atexit.register(ApiTestCase.stack.cleanUp)
            horizon = WebUiTestCase._horizon(ApiTestCase.stack.auth_url)
            ApiTestCase.stack.setUp()
        else:
            horizon = WebUiTestCase._horizon(ApiTestCase.stack.auth_url)
        WebUiTestCase.horizon = horizon

    @staticmethod
    def _horizon(auth_url: str) -> Horizon:
        workdir = tempfile.mkdtemp(prefix="freezer-horizon-")
        atexit.register(shutil.rmtree, workdir, True)
        horizon = Horizon(workdir, auth_url)
        atexit.register(horizon.cleanUp)
        horizon.setUp()
        horizon.warm_up()
        shared_browser()  # Chromium starts meanwhile too
        return horizon

    @classmethod
    def _log_in(cls) -> None:
        browser, horizon = cls.browser, cls.horizon
        browser.get(horizon.url + "/auth/login/?next=/project/freezer-actions/")
        browser.find_element(By.ID, "id_username").send_keys(SCHEDULER_USER)
        browser.find_element(By.ID, "id_password").send_keys(SCHEDULER_PASSWORD)
        browser.find_element(By.ID, "loginBtn").click()
        try:
            WebDriverWait(browser, 60).until(lambda b: "/auth/login" not in b.current_url)
        except TimeoutException as exc:
            raise RuntimeError(f"cannot log in to Horizon: {horizon.log_tail()}") from exc

    def setUp(self):
        super().setUp()
        self.browser, self.horizon = WebUiTestCase.browser, WebUiTestCase.horizon
        self.wait = WebDriverWait(self.browser, 60)

    def visible(self, field: str) -> bool:
        return self.browser.find_element(By.ID, f"id_{field}").is_displayed()

    def select(self, field: str, value: str) -> None:
        Select(self.browser.find_element(By.ID, f"id_{field}")).select_by_value(value)

    def type(self, field: str, value: str) -> None:
        element = self.browser.find_element(By.ID, f"id_{field}")
        element.clear()
        element.send_keys(value)

    def open_action_form(self) -> None:
        """The actions panel, then its "Create Action" button (a modal, as an operator sees it)."""
        self.browser.get(self.horizon.url + "/project/freezer-actions/")
        self.wait.until(seen.element_to_be_clickable(
            (By.CSS_SELECTOR, "a[href$='/project/freezer-actions/create/']"))).click()
        self.wait.until(seen.visibility_of_element_located((By.ID, "id_storage")))

    def fill_backup(self, name: str) -> None:
        self.type("backup_name", name)
        self.type("path_to_backup", self.source)
        self.type("container", "backups")

    def save(self) -> None:
        self.browser.find_element(By.CSS_SELECTOR, ".modal-footer [type=submit]").click()

    def stored_action(self, backup_name: str) -> dict:
        actions = self.stack.get("actions?limit=100")["actions"]
        return next(a for a in actions if a["freezer_action"].get("backup_name") == backup_name)


class TestFtpsActionFromTheBrowser(WebUiTestCase):
    def test_operator_creates_an_ftps_action_that_the_scheduler_runs(self):
        ftps = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "ftps"), True))
        make_tree(self.source)
        self.open_action_form()
        self.select("action", "backup")
        self.assertFalse(any(self.visible(f) for f in FTP_FIELDS), "ftp fields shown for swift")
        self.select("storage", "sftp")
        self.assertTrue(all(self.visible(f) for f in FTP_FIELDS), "ftp fields hidden for sftp")
        self.assertEqual("22", self.browser.find_element(By.ID, "id_ftp_port").get_attribute("value"))
        self.select("storage", "local")
        self.assertFalse(any(self.visible(f) for f in FTP_FIELDS), "ftp fields shown for local")
        self.select("storage", "ftps")
        self.assertTrue(all(self.visible(f) for f in FTP_FIELDS), "ftp fields hidden for ftps")
        self.assertEqual("21", self.browser.find_element(By.ID, "id_ftp_port").get_attribute("value"))
        self.assertEqual("password", self.browser.find_element(By.ID, "id_ftp_password").get_attribute("type"))

        self.fill_backup("webui_ftps_backup")
        self.type("ftp_password", "refused-Pw-1")
        self.save()  # no host, no user name: clean() refuses
        self.wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, ".modal .has-error")))
        errors = self.browser.find_element(By.CSS_SELECTOR, ".modal").text
        self.assertIn("Set the host of the FTP, FTPS or SFTP server.", errors)
        self.assertIn("Set the user name to log in to the server.", errors)
        self.assertNotIn("refused-Pw-1", self.browser.page_source)  # the form comes back without it

        self.open_action_form()  # afresh, as the screenshot shows it
        self.select("action", "backup")
        self.select("storage", "ftps")
        self.fill_backup("webui_ftps_backup")
        self.type("ftp_host", "127.0.0.1")
        self.type("ftp_port", str(ftps.port))
        self.type("ftp_username", ftps.username)
        self.type("ftp_password", ftps.password)
        self._keep_screenshot()
        self.save()
        self.wait.until(seen.invisibility_of_element_located((By.CSS_SELECTOR, ".modal")))

        stored = self.wait_for(lambda: self._find("webui_ftps_backup"), "the action in freezer-api")
        action = stored["freezer_action"]
        self.assertEqual(("backup", "ftps", "backups", self.source),
                         (action["action"], action["storage"], action["container"], action["path_to_backup"]))
        self.assertEqual({"ftp_host": "127.0.0.1", "ftp_port": ftps.port, "ftp_username": ftps.username,
                          "ftp_password": ftps.password}, {k: action[k] for k in FTP_FIELDS})
        self.assertIs(int, type(action["ftp_port"]))
        self._check_pages_hide_the_password(stored["action_id"], ftps)
        self._run_with_the_scheduler(action, ftps)

    def _find(self, backup_name: str) -> dict | None:
        try:
            return self.stored_action(backup_name)
        except StopIteration:
            return None

    def _keep_screenshot(self) -> None:
        target = os.environ.get("FREEZER_SCREENSHOT_DIR") or self.tmp
        self.browser.find_element(By.CSS_SELECTOR, ".modal-dialog").screenshot(
            os.path.join(target, "webui-ftps-action.png"))

    def _check_pages_hide_the_password(self, action_id: str, ftps) -> None:
        """Detail and edit pages never hold the password; saving the edit form unchanged keeps it."""
        self.browser.get(f"{self.horizon.url}/project/freezer-actions/action/{action_id}")
        section = self.wait.until(seen.visibility_of_element_located((By.ID, "freezer-ftp-storage"))).text
        for shown in ("127.0.0.1", str(ftps.port), ftps.username, "set (not shown)"):
            self.assertIn(shown, section)
        self.assertNotIn(ftps.password, self.browser.page_source)
        self.browser.get(f"{self.horizon.url}/project/freezer-actions/create/{action_id}")
        self.wait.until(seen.visibility_of_element_located((By.ID, "id_ftp_host")))
        self.assertEqual("", self.browser.find_element(By.ID, "id_ftp_password").get_attribute("value"))
        self.assertNotIn(ftps.password, self.browser.page_source)
        self.browser.find_element(By.CSS_SELECTOR, "form [type=submit].btn-primary").click()  # saved unchanged
        self.wait.until(lambda b: "/create/" not in b.current_url)
        self.assertNotIn(ftps.password, self.browser.page_source)  # the actions table
        self.assertEqual(ftps.password, self.stored_action("webui_ftps_backup")["freezer_action"]["ftp_password"])

    def _run_with_the_scheduler(self, action: dict, ftps) -> None:
        """The action as the job's backup, then a restore from the same storage; the trees match."""
        self.useFixture(fixtures.EnvironmentVariable("SSL_CERT_FILE", ftps.ca.ca_file))  # the host trusts the CA
        self.start_scheduler()
        restored = os.path.join(self.tmp, "restored")
        restore = {k: v for k, v in action.items() if k not in ("path_to_backup", "action")}
        restore.update(action="restore", restore_abs_path=restored)
        job_id = self.create_job({"description": "web UI ftps action", "job_schedule": {},
                                  "job_actions": [{"freezer_action": action, "max_retries": 1},
                                                  {"freezer_action": restore, "max_retries": 1}]})
        doc = self.wait_result(job_id)
        self.assertEqual("success", doc["job_schedule"]["result"], self.scheduler_log())
        self.assertEqual(describe_tree(self.source), describe_tree(restored))


class TestSecretsOffTheApiFromTheBrowser(WebUiTestCase):
    """Password file, FTPS CA and SFTP host key fields: stored as paths, used by the agent; no unchosen defaults."""

    def test_ftps_and_sftp_actions_with_files_run_under_the_scheduler(self):
        ftps = self.useFixture(servers.PyFtpd(os.path.join(self.tmp, "ftps"), True))
        sshd = self.useFixture(Sshd(os.path.join(self.tmp, "sshd")))
        make_tree(self.source)
        ftps_pw, sftp_pw = self.secret_file("ftps.pw", ftps.password), self.secret_file("sftp.pw", sshd.password)
        known_hosts = self.keyscan(sshd)
        self.open_action_form()
        self.assertFalse(self.browser.find_element(By.ID, "id_no_incremental").is_selected())
        self.assertEqual("", self.browser.find_element(By.ID, "id_max_retries").get_attribute("value"))
        self.select("action", "backup")
        for storage in ("ftp", "ftps", "sftp"):
            self.select("storage", storage)
            self.assertTrue(self.visible("ftp_password_file"), storage)
            self.assertEqual({f: s == storage for f, s in ONLY_FOR.items()}, {f: self.visible(f) for f in ONLY_FOR})
        self.create_action("webui_ftps_files", "ftps", ftps, ftp_password_file=ftps_pw, ftp_cacert=ftps.ca.ca_file)
        self.create_action("webui_sftp_pinned", "sftp", sshd, ftp_password_file=sftp_pw,
                           ftp_known_hosts=known_hosts, ftp_host_key_policy="strict")
        ftps_action = self.wait_for(lambda: self._find("webui_ftps_files"), "the ftps action in freezer-api")
        sftp_action = self.wait_for(lambda: self._find("webui_sftp_pinned"), "the sftp action in freezer-api")
        self.assertStoredAsChosen(ftps_action, {"ftp_password_file": ftps_pw, "ftp_cacert": ftps.ca.ca_file})
        self.assertStoredAsChosen(sftp_action, {"ftp_password_file": sftp_pw, "ftp_known_hosts": known_hosts,
                                                "ftp_host_key_policy": "strict"})
        for stored, server in ((ftps_action, ftps), (sftp_action, sshd)):
            self.assertNotIn(server.password, json.dumps(stored))
        self.run_both(ftps_action["freezer_action"], sftp_action["freezer_action"])

    def secret_file(self, name: str, secret: str) -> str:
        path = os.path.join(self.tmp, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as out:
            out.write(secret + "\n")
        return path

    def keyscan(self, sshd: Sshd) -> str:
        """The docs' recipe: the server's keys pinned before the first job runs."""
        path = os.path.join(self.tmp, "known_hosts.pinned")
        scan = subprocess.run(["ssh-keyscan", "-p", str(sshd.port), "127.0.0.1"], capture_output=True, text=True,
                              timeout=60, check=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(scan.stdout)
        return path

    def create_action(self, name: str, storage: str, server, **fields: str) -> None:
        """A backup action filled in the form as an operator does, the retry rules and advanced tab untouched."""
        self.open_action_form()
        self.select("action", "backup")
        self.select("storage", storage)
        self.fill_backup(name)
        self.type("container", "backups" if storage == "ftps" else server.container())
        self.type("ftp_host", "127.0.0.1")
        self.type("ftp_port", str(server.port))
        self.type("ftp_username", server.username)
        for field, value in fields.items():
            if field == "ftp_host_key_policy":
                self.select(field, value)
            else:
                self.type(field, value)
        self.save()
        self.wait.until(seen.invisibility_of_element_located((By.CSS_SELECTOR, ".modal")))

    def assertStoredAsChosen(self, stored: dict, files: dict) -> None:
        """The files as typed; no password, no key of another storage, no default the operator left alone."""
        action = stored["freezer_action"]
        self.assertEqual(files, {k: action.get(k) for k in files})
        unchosen = {"ftp_password", "no_incremental", "ftp_cacert", "ftp_known_hosts", "ftp_host_key_policy"}
        self.assertEqual(set(), (unchosen - set(files)) & set(action))
        self.assertEqual(self.api_defaults(), {k: stored.get(k) for k in RULES})

    def api_defaults(self) -> dict:
        """The rules freezer-api gives an action created without them (as ``freezer action-create`` does)."""
        reply = self.stack.post("actions", {"freezer_action": {"action": "backup", "backup_name": "no_rules"}})
        self.assertEqual(201, reply.status_code, reply.text)
        stored = self.stored_action("no_rules")  # from the same listing as the form's actions
        return {k: stored.get(k) for k in RULES}

    def run_both(self, ftps_action: dict, sftp_action: dict) -> None:
        """One job with both actions: the agent reads the password files, the CA and the pinned key."""
        self.start_scheduler()
        job_id = self.create_job({"description": "web UI actions with files", "job_schedule": {},
                                  "job_actions": [{"freezer_action": ftps_action, "max_retries": 0},
                                                  {"freezer_action": sftp_action, "max_retries": 0}]})
        doc = self.wait_result(job_id)
        self.assertEqual("success", doc["job_schedule"]["result"], self.scheduler_log())
        self.assertEqual(2, len(self.backups(job_id)), self.scheduler_log())

    def _find(self, backup_name: str) -> dict | None:
        try:
            return self.stored_action(backup_name)
        except StopIteration:
            return None


HARNESS = """<!DOCTYPE html><html><body><form>
<div class="form-group"><select id="id_action"><option value="backup">b</option>
  <option value="restore">r</option><option value="admin">a</option></select></div>
<div class="form-group"><select id="id_mode"><option value="fs">fs</option></select></div>
<div class="form-group"><select id="id_storage">{storages}</select></div>
{inputs}
</form><script src="{jquery}"></script><script src="{script}"></script></body></html>
"""


class TestPatchedFormScript(testtools.TestCase):
    """contrib's patch to freezer.actions.action.js, on a bare page with the form's fields."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        script = os.path.join(patched_freezer_ui(self.tmp), "freezer_ui", "static", "freezer", "js",
                              "freezer.actions.action.js")
        storages = "".join(f'<option value="{s}">{s}</option>'
                           for s in ("swift", "local", "ssh", "ftp", "ftps", "sftp"))
        inputs = "".join(f'<div class="form-group"><input id="id_{name}" value="{value}"></div>'
                         for name, value in (("backup_name", ""), ("path_to_backup", ""), ("container", ""),
                                             ("ssh_host", ""), ("ftp_host", ""), ("ftp_port", "21"),
                                             ("ftp_username", ""), ("ftp_password", ""),
                                             ("ftp_password_file", ""), ("ftp_cacert", ""),
                                             ("ftp_known_hosts", ""), ("ftp_host_key_policy", "")))
        page = os.path.join(self.tmp, "form.html")
        with open(page, "w", encoding="utf-8") as out:
            out.write(HARNESS.format(storages=storages, inputs=inputs, script="file://" + script,
                                     jquery="file://" + os.path.join(xstatic.pkg.jquery.BASE_DIR, "jquery.js")))
        self.browser = shared_browser()
        self.browser.get("file://" + page)

    def shown(self) -> list[bool]:
        return [self.browser.find_element(By.ID, f"id_{f}").is_displayed() for f in FTP_FIELDS]

    def choose(self, field: str, value: str) -> None:
        Select(self.browser.find_element(By.ID, f"id_{field}")).select_by_value(value)

    def port(self) -> str:
        return self.browser.find_element(By.ID, "id_ftp_port").get_attribute("value")

    def test_ftp_fields_follow_the_storage_and_the_port_follows_sftp(self):
        self.assertEqual([False] * 4, self.shown())  # backup to swift
        self.choose("storage", "sftp")
        self.assertEqual(([True] * 4, "22"), (self.shown(), self.port()))
        self.choose("storage", "ssh")
        self.assertEqual([False] * 4, self.shown())
        self.assertTrue(self.browser.find_element(By.ID, "id_ssh_host").is_displayed())
        self.choose("storage", "ftps")
        self.assertEqual(([True] * 4, "21"), (self.shown(), self.port()))
        self.browser.find_element(By.ID, "id_ftp_port").clear()
        self.browser.find_element(By.ID, "id_ftp_port").send_keys("2121")
        self.choose("storage", "sftp")
        self.assertEqual("2121", self.port())  # a typed port stays
        self.choose("action", "admin")
        self.assertEqual([False] * 4, self.shown())
        self.choose("action", "restore")
        self.assertEqual([True] * 4, self.shown())

    def test_password_file_for_all_three_the_ca_for_ftps_the_host_keys_for_sftp(self):
        def visible(field: str) -> bool:
            return self.browser.find_element(By.ID, f"id_{field}").is_displayed()

        for storage in ("swift", "ftp", "ftps", "sftp", "ssh"):
            self.choose("storage", storage)
            ftp_family = storage in ("ftp", "ftps", "sftp")
            self.assertEqual(ftp_family, visible("ftp_password_file"), storage)
            self.assertEqual({f: s == storage for f, s in ONLY_FOR.items()}, {f: visible(f) for f in ONLY_FOR})
