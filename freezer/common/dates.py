"""Parsing and printing of the dates users give and see."""

from __future__ import annotations

import datetime

from freezer.errors import FreezerError

FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def parse(value: str, option: str) -> int:
    """Epoch seconds for a local ``YYYY-MM-DDThh:mm:ss`` date given to ``option``."""
    for fmt in FORMATS:
        try:
            return int(datetime.datetime.strptime(value.strip(), fmt).timestamp())
        except ValueError:
            continue
    raise FreezerError(f"bad {option} {value!r}: use YYYY-MM-DDThh:mm:ss")


def show(timestamp: int) -> str:
    """A local ``YYYY-MM-DD hh:mm:ss`` for a timestamp; ``@<timestamp>`` when it is no date."""
    try:
        return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError, TypeError):
        return f"@{timestamp}"
