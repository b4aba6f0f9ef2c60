"""Job documents (freezer-api's JSON): loading with precise errors, and validation."""

from __future__ import annotations

import json

import jsonschema

from freezer.common.config import ACTIONS, STORAGES
from freezer.storage.base import FreezerError

INTERVAL_PATTERN = r"^\s*(continuous|\d+\s+(second|minute|hour|day|week)s?)\s*$"

FREEZER_ACTION = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "action": {"enum": list(ACTIONS)},
        "storage": {"enum": list(STORAGES)},
        "backup_name": {"type": "string", "minLength": 1},
        "container": {"type": "string"},
        "path_to_backup": {"type": "string"},
        "restore_abs_path": {"type": "string"},
        "ftp_host": {"type": "string"},
        "ftp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "ftp_username": {"type": "string"},
        "ftp_password": {"type": "string"},
        "ssh_host": {"type": "string"},
        "ssh_port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "no_incremental": {"type": "boolean"},
        "snapshot": {"anyOf": [{"type": "boolean"},  # upstream also writes "True" / "False"
                               {"type": "string", "pattern": "^(?i:true|false|yes|no|1|0)$"}]},
        "overwrite": {"type": "boolean"},
        "log_file": {"type": "string"},
        "remove_older_than": {"type": "number", "minimum": 0},
        "max_level": {"type": "integer", "minimum": 1},
        "always_level": {"type": "integer", "minimum": 1},
        "compression": {"enum": ["gzip", "bzip2", "xz", "zstd", "none"]},
    },
}

JOB_SCHEMA = {
    "type": "object",
    "additionalProperties": True,
    "required": ["job_actions"],
    "properties": {
        "description": {"type": "string"},
        "job_id": {"type": "string"},
        "job_schedule": {
            "type": "object",
            "additionalProperties": True,
            "properties": {
                "schedule_interval": {"type": "string", "pattern": INTERVAL_PATTERN},
                "schedule_date": {"type": "string"},
                "schedule_start_date": {"type": "string"},
                "schedule_end_date": {"type": "string"},
                "status": {"type": "string"},
                "event": {"type": "string"},
            },
        },
        "job_actions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": True,
                "required": ["freezer_action"],
                "properties": {
                    "freezer_action": FREEZER_ACTION,
                    "max_retries": {"type": "integer", "minimum": 0},
                    "max_retries_interval": {"type": "number", "minimum": 0},
                    "mandatory": {"type": "boolean"},
                },
            },
        },
    },
}


def drop_nulls(document: dict) -> dict:
    """The job without the ``null`` values freezer-api fills every unset action field with (a copy)."""
    actions = [{key: value for key, value in action.items() if value is not None}
               for action in document.get("job_actions") or []]
    for action in actions:
        if isinstance(action.get("freezer_action"), dict):
            action["freezer_action"] = {k: v for k, v in action["freezer_action"].items() if v is not None}
    return {**document, "job_actions": actions}


def parse(text: str, name: str) -> dict:
    """Parse a job document; malformed JSON names file, line and column."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FreezerError(_describe_json_error(exc, name)) from exc
    validate(document, name)
    return document


def load(path: str) -> dict:
    """Read and validate the job file at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise FreezerError(f"cannot read job file {path}: {exc}") from exc
    return parse(text, path)


def validate(document: dict, name: str) -> None:
    """Check a parsed job against freezer-api's job schema; name the first bad field."""
    validator = jsonschema.Draft7Validator(JOB_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        field = ".".join(str(p) for p in error.absolute_path) or "(document)"
        raise FreezerError(f"{name}: bad field {field}: {error.message}")


def _describe_json_error(exc: json.JSONDecodeError, name: str) -> str:
    comma = _trailing_comma(exc.doc, exc.pos)
    if comma is not None:
        line = exc.doc.count("\n", 0, comma) + 1
        column = comma - (exc.doc.rfind("\n", 0, comma) + 1) + 1
        return (f"{name}: line {line} column {column}: trailing comma before "
                f"'{exc.doc[exc.pos]}'; JSON allows none: remove it")
    return f"{name}: line {exc.lineno} column {exc.colno}: {exc.msg}"


def _trailing_comma(text: str, pos: int) -> int | None:
    """The position of a comma just before the ``}`` or ``]`` at ``pos``, if any."""
    if pos >= len(text) or text[pos] not in "}]":
        return None
    before = text[:pos].rstrip()
    return len(before) - 1 if before.endswith(",") else None
