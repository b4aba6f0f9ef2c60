"""Job documents (freezer-api's JSON): loading with precise errors, and validation."""

from __future__ import annotations

import json
import os

import jsonschema

from freezer.common import inputs
from freezer.common.config import ACTIONS, STORAGES
from freezer.errors import FreezerError
from freezer.scheduler import actionvalues, schedule

CAPABILITY_KEYS = (("supported_actions", "action"), ("supported_modes", "mode"),
                   ("supported_storages", "storage"), ("supported_engines", "engine_name"))
#: a job document is five levels deep (job, job_actions, action, freezer_action, value); deeper is refused
MAX_DEPTH = 32
#: the largest job file read; real ones are a few KiB
MAX_FILE_BYTES = 1 << 20
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
        "snapshot": {"type": "boolean"},
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


def parse(text: str, name: str) -> dict:
    """Parse and prepare a job document; malformed JSON names file, line and column."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FreezerError(_describe_json_error(exc, name)) from exc
    except RecursionError:
        raise FreezerError(f"{name}: JSON nested more than {MAX_DEPTH} levels deep: not a job document") from None
    job_id = document.get("job_id") if isinstance(document, dict) else None
    return prepare(document, f"{name} (job {job_id})" if job_id else name)


def load(path: str) -> dict:
    """Read and prepare the job file at ``path``."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise FreezerError(f"{path}: not a regular file: not a job document")  # a FIFO would block the daemon
    return parse(inputs.read_text(path, MAX_FILE_BYTES, f"job file {path}"), path)


def prepare(document, name: str) -> dict:
    """The job in the agent's form (see actionvalues), checked against freezer-api's job schema.

    Every entry point (job files, freezer-api) passes through here before any other check.
    """
    if too_deep(document, MAX_DEPTH):
        raise FreezerError(f"{name}: JSON nested more than {MAX_DEPTH} levels deep: not a job document")
    job = actionvalues.normalize_job(document, name)
    validate(job, name)
    try:
        schedule.check(job.get("job_schedule"))
    except FreezerError as exc:
        raise FreezerError(f"{name}: job_schedule: {exc}") from None
    return job


def too_deep(document, limit: int) -> bool:
    """True when lists and objects nest more than ``limit`` levels (walked without recursion)."""
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
    return False


def validate(document: dict, name: str) -> None:
    """Check a prepared job against freezer-api's job schema; name the first bad field."""
    validator = jsonschema.Draft7Validator(JOB_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        field = ".".join(str(p) for p in error.absolute_path) or "(document)"
        raise FreezerError(f"{name}: bad field {field}: {error.message}")


def refusal(job: dict, capabilities: dict, allow_exec: bool) -> str | None:
    """Why this host will not run a prepared job (``[capabilities]``, ``--disable-exec``), or None."""
    why = unsupported(job, capabilities)
    if why is None and not allow_exec:
        why = exec_refused(job)
    return why


def unsupported(job: dict, capabilities: dict) -> str | None:
    """Why a prepared job is outside this host's ``[capabilities]``, or None when it is within."""
    for index, action in enumerate(job["job_actions"]):
        freezer_action = action.get("freezer_action") or {}
        for listed, key in CAPABILITY_KEYS:
            value = freezer_action.get(key)
            if value and value not in capabilities[listed]:
                return (f"job_actions.{index}.freezer_action.{key} {value!r} is not in this host's "
                        f"[capabilities] {listed} ({', '.join(capabilities[listed])})")
    return None


def exec_refused(job: dict) -> str | None:
    """The ``--disable-exec`` refusal for a prepared job holding an exec action, else None."""
    for index, action in enumerate(job["job_actions"]):
        if actionvalues.is_exec(action.get("freezer_action") or {}):
            return f"job_actions.{index} is an exec action and exec is disabled on this host (--disable-exec)"
    return None


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
