"""When a job runs next: ``job_schedule`` interval, date, start/end window and cron fields."""

from __future__ import annotations

import datetime
import re

from freezer.errors import FreezerError

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
CRON_FIELDS = (("schedule_month", 1, 12), ("schedule_day", 1, 31), ("schedule_day_of_week", 0, 6),
               ("schedule_hour", 0, 23), ("schedule_minute", 0, 59))
DAY_NAMES = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
SEARCH_LIMIT_MINUTES = 366 * 24 * 60
MAX_INTERVAL = 10 * 366 * 86400


def interval_seconds(text: str) -> int:
    """``"5 minutes"`` -> 300; ``"continuous"`` -> 0."""
    match = re.fullmatch(r"\s*(?:(continuous)|(\d+)\s+(second|minute|hour|day|week)s?)\s*", text or "",
                         re.ASCII)
    if not match:
        raise FreezerError(f"bad schedule_interval {text!r}: use 'N minutes|hours|days|weeks' or 'continuous'")
    if match.group(1):
        return 0
    seconds = int(match.group(2)) * UNIT_SECONDS[match.group(3)]
    if not 0 < seconds <= MAX_INTERVAL:
        raise FreezerError(f"bad schedule_interval {text!r}: give 1 second to 10 years, or 'continuous'")
    return seconds


def check(schedule: dict | None) -> None:
    """Raise FreezerError naming the first unusable field of a ``job_schedule``, before it is ever due."""
    schedule = schedule or {}
    for field in ("schedule_date", "schedule_start_date", "schedule_end_date"):
        if schedule.get(field):
            parse_date(schedule[field], field)
    if schedule.get("schedule_interval"):
        interval_seconds(schedule["schedule_interval"])
    for name, low, high in CRON_FIELDS:
        _cron_values(schedule.get(name), low, high, name)


def parse_date(text: str, field: str) -> float:
    """An ISO date (``2026-11-25T10:00:00``, optional zone) as epoch seconds; naive means local."""
    try:
        return datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError, OverflowError, OSError) as exc:
        raise FreezerError(f"bad {field} {text!r}: use YYYY-MM-DDThh:mm:ss") from exc


def next_run(schedule: dict, last_run: float | None, now: float) -> float | None:
    """Epoch seconds of the next run, or None when the job is finished."""
    schedule = schedule or {}
    start = parse_date(schedule["schedule_start_date"], "schedule_start_date") \
        if schedule.get("schedule_start_date") else None
    end = parse_date(schedule["schedule_end_date"], "schedule_end_date") \
        if schedule.get("schedule_end_date") else None
    earliest = max(now, start or now)
    if schedule.get("schedule_date"):
        due = parse_date(schedule["schedule_date"], "schedule_date")
        candidate = due if last_run is None else None
    elif schedule.get("schedule_interval"):
        step = interval_seconds(schedule["schedule_interval"])
        candidate = earliest if last_run is None else max(last_run + step, earliest)
    elif any(schedule.get(name) is not None for name, _, _ in CRON_FIELDS):
        candidate = next_cron_match(schedule, max(earliest, (last_run or 0) + 1))
    else:
        candidate = earliest if last_run is None else None  # no schedule: run once
    if candidate is None or (end is not None and candidate > end):
        return None
    return candidate


def next_cron_match(schedule: dict, after: float) -> float | None:
    """The first whole minute at or after ``after`` matching the cron fields (local time)."""
    allowed = {name: _cron_values(schedule.get(name), low, high, name) for name, low, high in CRON_FIELDS}
    moment = datetime.datetime.fromtimestamp(after).replace(second=0, microsecond=0)
    if moment.timestamp() < after:
        moment += datetime.timedelta(minutes=1)
    for _ in range(SEARCH_LIMIT_MINUTES):
        if (moment.month in allowed["schedule_month"] and moment.day in allowed["schedule_day"]
                and moment.weekday() in allowed["schedule_day_of_week"]):
            if moment.hour in allowed["schedule_hour"] and moment.minute in allowed["schedule_minute"]:
                return moment.timestamp()
            moment += datetime.timedelta(minutes=1)
        else:
            moment = (moment + datetime.timedelta(days=1)).replace(hour=0, minute=0)
    return None


def _cron_values(spec, low: int, high: int, name: str) -> set[int]:
    """``*``, ``*/N``, ``a-b``, ``a-b/N``, ``a,b`` (day names for day_of_week) as a set."""
    if spec is None:
        return set(range(low, high + 1))
    values: set[int] = set()
    for part in str(spec).lower().split(","):
        match = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", part.strip(), re.ASCII)
        if not match:
            raise FreezerError(f"bad {name} {spec!r}")
        first, last, step = match.groups()
        lo = low if first == "*" else _cron_number(first, name, low, high)
        hi = high if first == "*" else _cron_number(last, name, low, high) if last else (high if step else lo)
        if int(step or 1) == 0 or hi < lo:
            raise FreezerError(f"bad {name} {spec!r}: {'a step must be 1 or more' if hi >= lo else 'empty range'}")
        values.update(range(lo, hi + 1, int(step or 1)))
    return values


def _cron_number(text: str, name: str, low: int, high: int) -> int:
    """A cron value (or day name) within ``low``-``high``."""
    if text in DAY_NAMES:
        return DAY_NAMES[text]
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise FreezerError(f"bad {name} value {text!r}: expected {low}-{high}")
    return int(text)
