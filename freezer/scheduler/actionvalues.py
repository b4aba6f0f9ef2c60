"""A job's values as forms and people write them, made the agent's once, before any check.

Keys are matched as the agent reads its ini file (any case, ``-`` or ``_``, old names) and become
the option's own name; values take the option's type (``"21"`` is a port, ``"yes"`` is true).
A key the agent does not know, or one option given twice, is refused with one line. Every check
of a job (schema, ``--disable-exec``, ``[capabilities]``) and the agent's ini file see only this form.
"""

from __future__ import annotations

import difflib

from freezer.common import config
from freezer.errors import FreezerError

#: fields freezer-api keeps in a freezer_action for its own reports; never options of the agent
REPORT_KEYS = frozenset({"result", "time_elapsed", "report_date", "last_error", "last_error_date"})
#: a job action's own fields (beside its freezer_action) and how to read them
JOB_ACTION_FIELDS = {"max_retries": "integer", "max_retries_interval": "number", "mandatory": "boolean"}


def normalize_job(document, name: str):
    """A copy of the job with ``null`` values dropped and every action in the agent's form.

    A document of the wrong shape is returned as it is, for the schema to name what is wrong.
    """
    if not isinstance(document, dict) or not isinstance(document.get("job_actions"), list):
        return document
    actions = [normalize_job_action(action, f"job_actions.{index}", name) if isinstance(action, dict) else action
               for index, action in enumerate(document["job_actions"])]
    return {**document, "job_actions": actions}


def normalize_job_action(job_action: dict, where: str, name: str) -> dict:
    """One entry of ``job_actions``: its retry fields typed, its freezer_action normalised."""
    out = {key: value for key, value in job_action.items() if value is not None}
    for field, kind in JOB_ACTION_FIELDS.items():
        if field in out:
            out[field] = _field_value(out[field], kind, f"{name}: {where}.{field}")
    if isinstance(out.get("freezer_action"), dict):
        out["freezer_action"] = normalize_action(out["freezer_action"], f"{name}: {where}.freezer_action")
    return out


def normalize_action(freezer_action: dict, where: str) -> dict:
    """The freezer_action keyed by option name, with typed values; unknown or repeated options refused."""
    out: dict = {}
    given_as: dict[str, str] = {}
    for raw_key, raw_value in freezer_action.items():
        key = config.normalize_key(str(raw_key))
        if raw_value is None or key in REPORT_KEYS:
            continue
        opt = config.option_for(key)
        if opt is None or opt.dest == "config":
            raise FreezerError(f"{where}: unknown option {str(raw_key)!r}{_hint(key)}")
        if opt.dest in given_as:
            raise FreezerError(f"{where}: option {opt.dest} is given twice (as {given_as[opt.dest]!r} and "
                               f"{str(raw_key)!r}): keep one")
        given_as[opt.dest] = str(raw_key)
        value = _option_value(opt, raw_value, where)
        if value is not None and value != []:
            out[opt.dest] = value
    return out


def is_exec(freezer_action: dict) -> bool:
    """True for an exec action (in the normalised form; any case counts, to be safe)."""
    return str(freezer_action.get("action", "")).strip().lower() == "exec"


def _option_value(opt, value, where: str):
    if isinstance(value, (list, dict)):
        raise FreezerError(f"{where}.{opt.dest}: lists and objects are not supported")
    try:
        value = config.coerce(opt, value)
        return value[0] if isinstance(value, list) and len(value) == 1 else value  # one --exclude
    except FreezerError as exc:
        raise FreezerError(f"{where}.{exc}") from None


def _field_value(value, kind: str, where: str):
    from oslo_utils import strutils  # imported when needed: it costs 0.19 s of start-up

    text = str(value).strip()
    try:
        if kind == "boolean":
            return strutils.bool_from_string(text, strict=True)
        if isinstance(value, bool):
            raise ValueError(text)
        number = float(text) if kind == "number" else int(text)
        if number < 0:
            raise ValueError(text)
        return number
    except ValueError:
        expected = {"boolean": "true or false", "integer": "a whole number, 0 or more",
                    "number": "a number of seconds, 0 or more"}[kind]
        raise FreezerError(f"{where}: invalid value {text!r}: expected {expected}") from None


def _hint(key: str) -> str:
    close = difflib.get_close_matches(key, config.option_keys(), n=1, cutoff=0.75)
    return f": did you mean {close[0]!r}?" if close else " (see freezer-agent --help)"
