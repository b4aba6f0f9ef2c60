"""The FTP/FTPS/SFTP part of freezer-web-ui's action form: choices, fields and checks."""

from __future__ import annotations

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from horizon import forms

FTP_STORAGES = ("ftp", "ftps", "sftp")
STORAGE_CHOICES = [("ftp", _("FTP")), ("ftps", _("FTPS (explicit TLS)")), ("sftp", _("SFTP"))]
FTP_KEYS = ("ftp_host", "ftp_port", "ftp_username", "ftp_password", "ftp_password_file", "ftp_cacert",
            "ftp_known_hosts", "ftp_host_key_policy")
# Keys that belong to one storage only; any other storage sends none of them.
ONLY_FOR = {"ftp_cacert": "ftps", "ftp_known_hosts": "sftp", "ftp_host_key_policy": "sftp"}
ACTIONS_WITH_STORAGE = ("backup", "restore")
HOST_KEY_POLICY_CHOICES = [
    ("", _("Agent's default (accept-new, or its ssh_host_key_policy)")),
    ("accept-new", _("accept-new: learn an unknown server's key")),
    ("strict", _("strict: refuse a server missing from known_hosts")),
]
ON_AGENT_HOST = _("A path on the host where freezer-agent runs (the scheduler's host), not on this web server.")
# freezer-web-ui's own initial values that would be stored although the operator never chose them.
UNCHOSEN_RULES = ("max_retries", "max_retries_interval")


def default_port(storage: str) -> int:
    """The port an FTP-family storage listens on unless told otherwise."""
    return 22 if storage == "sftp" else 21


def ftp_fields() -> dict[str, forms.Field]:
    """The form fields, in the order the form shows them."""
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
            help_text=_("Stored in freezer-api in clear; prefer the password file. Left empty when editing, "
                        "the stored password is kept.")),
        **secret_file_fields(),
    }


def secret_file_fields() -> dict[str, forms.Field]:
    """Fields that name files on the agent's host, so that no secret goes to freezer-api."""
    return {
        "ftp_password_file": forms.CharField(
            label=_("FTP/SFTP Password File"), required=False,
            help_text=format_lazy("{} {} {}", _("File whose first line is the password; only its path is stored."),
                                  ON_AGENT_HOST, _("Or leave both password fields empty and set "
                                                   "FREEZER_FTP_PASSWORD in the scheduler's environment."))),
        "ftp_cacert": forms.CharField(
            label=_("FTPS CA Certificate"), required=False,
            help_text=format_lazy("{} {}", _("FTPS: CA certificate file to trust for the server."), ON_AGENT_HOST)),
        "ftp_known_hosts": forms.CharField(
            label=_("SFTP Known Hosts File"), required=False,
            help_text=format_lazy("{} {}", _("SFTP: known_hosts file holding the server's key (ssh-keyscan)."),
                                  ON_AGENT_HOST)),
        "ftp_host_key_policy": forms.ChoiceField(
            label=_("SFTP Host Key Policy"), required=False, choices=HOST_KEY_POLICY_CHOICES,
            help_text=_("SFTP: what the agent does with a server whose key is not in known_hosts; a changed "
                        "key is always refused.")),
    }


def uses_ftp(cleaned: dict) -> bool:
    """Whether the action reads or writes an FTP-family storage."""
    return cleaned.get("action") in ACTIONS_WITH_STORAGE and cleaned.get("storage") in FTP_STORAGES


def check_ftp(cleaned: dict, stored_password: str | None = None) -> dict[str, str]:
    """Complete ``cleaned`` in place (default port, kept password, no unused ftp keys); errors by field."""
    if not uses_ftp(cleaned):
        for key in FTP_KEYS:
            cleaned[key] = None
        return {}
    for key, storage in ONLY_FOR.items():
        if cleaned["storage"] != storage or not cleaned.get(key):
            cleaned[key] = None
    errors = check_server(cleaned)
    errors.update(check_password(cleaned, stored_password))
    return errors


def check_server(cleaned: dict) -> dict[str, str]:
    """Host and user name set, port in range (empty: the storage's default)."""
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
    return errors


def check_password(cleaned: dict, stored_password: str | None) -> dict[str, str]:
    """A password or a password file, not both; an edit without either keeps the stored password."""
    cleaned["ftp_password"] = cleaned.get("ftp_password") or None
    cleaned["ftp_password_file"] = (cleaned.get("ftp_password_file") or "").strip() or None
    if cleaned.get("ftp_password") and cleaned["ftp_password_file"]:
        return {"ftp_password_file": _("Give the password or a password file, not both.")}
    if not cleaned.get("ftp_password") and not cleaned["ftp_password_file"] and stored_password:
        cleaned["ftp_password"] = stored_password
    return {}


def without_unchosen(context) -> None:
    """Drop retry rules left empty from a workflow context: freezer-api stores only what was chosen."""
    for key in UNCHOSEN_RULES:
        if key in context and context[key] in (None, ""):
            del context[key]
    if "mandatory" in context and not context["mandatory"] and not context.get("action_id"):
        del context["mandatory"]


def store_only_chosen(workflow_module) -> None:
    """Start freezer-web-ui's no_incremental unchecked and retry rules empty, and send none left empty."""
    advanced = workflow_module.AdvancedConfigurationAction.base_fields
    advanced["no_incremental"].initial = False  # the agent's default: incremental
    rules = workflow_module.RulesConfigurationAction.base_fields
    for key in UNCHOSEN_RULES:
        rules[key].initial = None
    upstream_handle = workflow_module.ActionWorkflow.handle

    def handle(self, request, context):
        without_unchosen(context)
        return upstream_handle(self, request, context)

    workflow_module.ActionWorkflow.handle = handle


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
