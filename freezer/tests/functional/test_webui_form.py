"""The action form's FTP/FTPS/SFTP checks, in-process (no browser): our Horizon plug-in on the released
freezer-web-ui, and contrib/freezer-web-ui-ftp.patch applied to a copy of the released package."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import testtools
from fixtures import TempDir

from freezer.tests.horizon import _package_dir, patched_freezer_ui, site
from freezer.tests.openstack import REPO

PATCH = os.path.join(REPO, "contrib", "freezer-web-ui-ftp.patch")
FTP_KEYS = ["ftp_host", "ftp_port", "ftp_username", "ftp_password", "ftp_password_file", "ftp_cacert",
            "ftp_known_hosts", "ftp_host_key_policy"]


class FormCheck(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(TempDir()).path

    def check(self, plugin: bool, code: str | None = None) -> dict:
        """What ``webui_form_check`` made of each case, on the site described."""
        env = site(os.path.join(self.tmp, "site"), "http://127.0.0.1:9/v3", plugin=plugin, code=code)
        proc = subprocess.run([sys.executable, "-m", "freezer.tests.webui_form_check"], env=env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(0, proc.returncode, proc.stderr[-3000:])
        return json.loads(proc.stdout)

    def assertFtpForm(self, results: dict) -> None:
        self.assertEqual(["swift", "local", "ssh", "ftp", "ftps", "sftp"], results["choices"])
        self.assertEqual(FTP_KEYS, results["contributes"][-len(FTP_KEYS):])
        self.assertEqual(["ftp_host", "ftp_username"], results["ftps_without_host_or_user"]["errors"])
        self.assertEqual(["ftp_port"], results["port_zero"]["errors"])
        self.assertEqual(["ftp_port"], results["port_too_big"]["errors"])
        self.assertEqual(22, results["sftp_port_left_empty"]["cleaned"]["ftp_port"])
        self.assertEqual(21, results["ftp_port_left_empty"]["cleaned"]["ftp_port"])
        complete = results["ftps_complete"]
        self.assertTrue(complete["valid"], complete["errors"])
        self.assertEqual({"ftp_host": "h", "ftp_port": 2121, "ftp_username": "u", "ftp_password": " p w ",
                          **dict.fromkeys(FTP_KEYS[4:])}, complete["cleaned"])
        leftovers = results["swift_with_ftp_leftovers"]
        self.assertTrue(leftovers["valid"])
        self.assertEqual(dict.fromkeys(FTP_KEYS), leftovers["cleaned"])  # nothing ftp sent for swift
        self.assertEqual("stored-Pw", results["edit_keeps_stored_password"]["cleaned"]["ftp_password"])
        self.assertFalse(results["edit_page_shows_password"])
        self.assertSecretFiles(results)
        self.assertEqual({"no_incremental": False, "max_retries": None, "max_retries_interval": None},
                         results["initial"])

    def assertSecretFiles(self, results: dict) -> None:
        """Password file and CA for ftps, known_hosts and policy for sftp; nothing for the other storages."""
        files = results["ftps_with_files"]
        self.assertTrue(files["valid"], files["errors"])
        self.assertEqual({"ftp_password": None, "ftp_password_file": "/etc/freezer/ftp.pw",
                          "ftp_cacert": "/etc/freezer/ca.pem", "ftp_known_hosts": None, "ftp_host_key_policy": None},
                         {k: files["cleaned"][k] for k in FTP_KEYS[3:]})
        sftp = results["sftp_with_host_keys"]
        self.assertTrue(sftp["valid"], sftp["errors"])
        self.assertEqual({"ftp_cacert": None, "ftp_known_hosts": "/etc/freezer/known_hosts",
                          "ftp_host_key_policy": "strict"}, {k: sftp["cleaned"][k] for k in FTP_KEYS[5:]})
        self.assertEqual(["ftp_password_file"], results["password_and_file"]["errors"])
        edited = results["edit_to_password_file"]["cleaned"]
        self.assertEqual((None, "/pw"), (edited["ftp_password"], edited["ftp_password_file"]))


class TestPlugin(FormCheck):
    def test_released_freezer_web_ui_refuses_ftp_storages(self):
        results = self.check(plugin=False)
        self.assertEqual(["swift", "local", "ssh"], results["choices"])
        self.assertIn("storage", results["ftps_complete"]["errors"])

    def test_plugin_adds_storages_fields_and_checks(self):
        self.assertFtpForm(self.check(plugin=True))


class TestUpstreamPatch(FormCheck):
    def test_patch_applies_to_the_release_and_gives_the_same_form(self):
        self.assertEqual("19.0.0", importlib.metadata.version("freezer-web-ui"))
        code = os.path.join(self.tmp, "code")
        shutil.copytree(_package_dir("freezer_ui"), os.path.join(code, "freezer_ui"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for dry_run in (["--dry-run"], []):
            with open(PATCH, "rb") as patch:
                proc = subprocess.run(["patch", "-p1", "--forward", *dry_run], cwd=code, stdin=patch,
                                      capture_output=True, timeout=60)
            self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
            self.assertNotIn(b"offset", proc.stdout)
            self.assertNotIn(b"fuzz", proc.stdout)
        self.assertFtpForm(self.check(plugin=False, code=code))

    def test_plugin_on_a_patched_release_adds_nothing_twice(self):
        results = self.check(plugin=True, code=patched_freezer_ui(self.tmp))
        self.assertFtpForm(results)
        self.assertEqual(1, results["contributes"].count("ftp_host"))
