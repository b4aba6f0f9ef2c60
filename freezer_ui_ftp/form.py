"""The FTP/FTPS/SFTP part of freezer-web-ui's action form: choices, fields and checks."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from horizon import forms

FTP_STORAGES = ("ftp", "ftps", "sftp")
STORAGE_CHOICES = [("ftp", _("FTP")), ("ftps", _("FTPS (explicit TLS)")), ("sftp", _("SFTP"))]
FTP_KEYS = ("ftp_host", "ftp_port", "ftp_username", "ftp_password")
ACTIONS_WITH_STORAGE = ("backup", "restore")


def default_port(storage: str) -> int:
    """The port an FTP-family storage listens on unless told otherwise."""
    return 22 if storage == "sftp" else 21


def ftp_fields() -> dict[str, forms.Field]:
    """The four form fields, in the order the form shows them."""
    return {
        "ftp_host": forms.CharField(
            label=_("FTP/SFTP Host"), required=False,
            help_text=_("IP address or DNS name of the FTP, FTPS or SFTP server.")),
        "ftp_port": forms.IntegerField(
            label=_("FTP/SFTP Port"), required=False, initial=21,
            help_text=_("Port of the server: 21 for FTP and FTPS, 22 for SFTP.")),
        "ftp_username": forms.CharField(label=_("FTP/SFTP Username"), required=False),
        "ftp_password": forms.CharField(
            label=_("FTP/SFTP Password"), required=False, strip=False,
            widget=forms.PasswordInput(render_value=False),
            help_text=_("Left empty when editing, the stored password is kept.")),
    }


def uses_ftp(cleaned: dict) -> bool:
    """Whether the action reads or writes an FTP-family storage."""
    return cleaned.get("action") in ACTIONS_WITH_STORAGE and cleaned.get("storage") in FTP_STORAGES


def check_ftp(cleaned: dict, stored_password: str | None = None) -> dict[str, str]:
    """Complete ``cleaned`` in place (default port, kept password, no ftp keys elsewhere); errors by field."""
    if not uses_ftp(cleaned):
        for key in FTP_KEYS:
            cleaned[key] = None
        return {}
    errors = {}
    if not (cleaned.get("ftp_host") or "").strip():
        errors["ftp_host"] = _("Set the host of the FTP, FTPS or SFTP server.")
    if not (cleaned.get("ftp_username") or "").strip():
        errors["ftp_username"] = _("Set the user name to log in to the server.")
    port = cleaned.get("ftp_port")
    if port in (None, ""):
        cleaned["ftp_port"] = default_port(cleaned["storage"])
    elif not 1 <= port <= 65535:
        errors["ftp_port"] = _("The port must be between 1 and 65535.")
    if not cleaned.get("ftp_password") and stored_password:
        cleaned["ftp_password"] = stored_password
    return errors


def extend_action_form(action_class, step_class) -> bool:
    """Add the storages, fields and checks to freezer-web-ui's action form classes; False if it has them
    already (a freezer-web-ui with contrib's patch, or a second call)."""
    if "ftp_host" in action_class.base_fields:
        return False
    action_class.base_fields.update(ftp_fields())
    step_class.contributes = tuple(step_class.contributes) + FTP_KEYS

    upstream_choices = action_class.populate_storage_choices
    upstream_clean = action_class.clean

    def populate_storage_choices(self, request, context):
        return list(upstream_choices(self, request, context)) + STORAGE_CHOICES

    def clean(self):
        cleaned = upstream_clean(self)
        stored = (self.initial or {}).get("ftp_password") if cleaned.get("action_id") else None
        for field, message in check_ftp(cleaned, stored).items():
            self.add_error(field, message)
        return cleaned

    action_class.populate_storage_choices = populate_storage_choices
    action_class.clean = clean
    return True
