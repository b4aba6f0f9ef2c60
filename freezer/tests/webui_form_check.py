"""Fills freezer-web-ui's action form in-process (no browser) and prints what it made of it, as JSON.

Run with the environment of ``freezer.tests.horizon.site()``: it checks whichever freezer-web-ui
that site loads, the released one with our plug-in or a copy with contrib's patch applied.
"""

from __future__ import annotations

import importlib
import json

import django

BASE = {"action": "backup", "mode": "fs", "engine_name": "tar", "backup_name": "b", "path_to_backup": "/srv",
        "container": "backups"}
CASES = {
    "ftps_without_host_or_user": {"storage": "ftps", "ftp_port": "21"},
    "port_zero": {"storage": "ftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": "0"},
    "port_too_big": {"storage": "ftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": "65536"},
    "sftp_port_left_empty": {"storage": "sftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": ""},
    "ftp_port_left_empty": {"storage": "ftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": ""},
    "ftps_complete": {"storage": "ftps", "ftp_host": "h", "ftp_username": "u", "ftp_port": "2121",
                      "ftp_password": " p w "},
    "swift_with_ftp_leftovers": {"storage": "swift", "ftp_host": "h", "ftp_username": "u", "ftp_port": "21",
                                 "ftp_password": "p"},
    "edit_keeps_stored_password": {"storage": "sftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": "22",
                                   "action_id": "a1"},
    "ftps_with_files": {"storage": "ftps", "ftp_host": "h", "ftp_username": "u", "ftp_port": "21",
                        "ftp_password_file": " /etc/freezer/ftp.pw ", "ftp_cacert": "/etc/freezer/ca.pem",
                        "ftp_known_hosts": "/kh", "ftp_host_key_policy": "strict"},
    "sftp_with_host_keys": {"storage": "sftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": "22",
                            "ftp_cacert": "/ca.pem", "ftp_known_hosts": "/etc/freezer/known_hosts",
                            "ftp_host_key_policy": "strict"},
    "password_and_file": {"storage": "ftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": "21",
                          "ftp_password": "p", "ftp_password_file": "/pw"},
    "edit_to_password_file": {"storage": "sftp", "ftp_host": "h", "ftp_username": "u", "ftp_port": "22",
                              "ftp_password_file": "/pw", "action_id": "a1"},
}
FTP_KEYS = ("ftp_host", "ftp_port", "ftp_username", "ftp_password", "ftp_password_file", "ftp_cacert",
            "ftp_known_hosts", "ftp_host_key_policy")


def main() -> None:
    django.setup()
    from django.conf import settings
    from django.test import RequestFactory

    module = settings.HORIZON_CONFIG.get("customization_module")
    if module:  # Horizon imports it when it builds its URLs; no URL is resolved here
        importlib.import_module(module)
    from freezer_ui.actions.workflows import action as workflow

    factory, form_class = RequestFactory(), workflow.ActionConfigurationAction
    results = {"contributes": list(workflow.ActionConfiguration.contributes)}
    for name, fields in CASES.items():
        stored = {"ftp_password": "stored-Pw"} if "action_id" in fields else {}
        form = form_class(factory.post("/", {**BASE, **fields}), dict(stored))
        valid = form.is_valid()
        results[name] = {"valid": valid, "errors": sorted(form.errors),
                         "cleaned": {k: form.cleaned_data.get(k) for k in FTP_KEYS}}
    form = form_class(factory.get("/"), {"storage": "ftps", "ftp_password": "stored-Pw"})
    results["choices"] = [value for value, _label in form.fields["storage"].choices]
    results["edit_page_shows_password"] = "stored-Pw" in str(form)
    results["initial"] = {"no_incremental": workflow.AdvancedConfigurationAction.base_fields["no_incremental"].initial,
                          **{k: workflow.RulesConfigurationAction.base_fields[k].initial
                             for k in ("max_retries", "max_retries_interval")}}
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
