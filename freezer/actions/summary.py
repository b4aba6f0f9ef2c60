"""What a finished action tells its operator: a short summary, or the plan of a ``--dry-run``.

Built from the result document (the one ``--metadata-out`` writes), so both always agree.
"""

from __future__ import annotations

from freezer.actions.progress import duration, size
from freezer.common import dates


def lines(result: dict) -> list[str]:
    """The summary lines of ``result``; none for ``info``, whose table is its output."""
    action = result.get("action")
    if action == "backup":
        return _backup_plan(result) if result.get("dry_run") else _backup(result)
    if action == "restore":
        return _restore_plan(result) if result.get("dry_run") else _restore(result)
    if action == "admin":
        return _admin(result)
    return []


def _name(result: dict) -> str:
    return f"{result.get('hostname')}_{result.get('backup_name')}"


def _chain(result: dict) -> str:
    return dates.show(result["l0_time_stamp"]) if result.get("l0_time_stamp") else "?"


def _rate(count: int | None, seconds: float | None) -> str:
    if not count or not seconds:
        return "-"
    return f"{size(count / seconds)}/s"


def _backup(result: dict) -> list[str]:
    read, seconds = result.get("bytes_read"), result.get("duration")
    level = result["level"]
    chain = "new chain" if level == 0 else f"chain of {_chain(result)}"
    warnings = result.get("warnings") or []
    done = f"backup done with {len(warnings)} warning(s)" if warnings else "backup done"
    return [
        f"{done}: {_name(result)} level {level} ({chain}) in {result.get('location')}",
        f"  {result.get('files', '?')} files, {size(read)} read, {size(result.get('size'))} stored, "
        f"{duration(seconds or 0)}, {_rate(read, seconds)}",
    ]


def _backup_plan(result: dict) -> list[str]:
    parent = result.get("parent")
    level = result["level"]
    if parent:
        basis = f"level {level} of the chain of {_chain(result)}, on level {parent['level']} of {parent['date']}"
    else:
        basis = "level 0, a new chain"
    return [f"dry run: would back up {result.get('path_to_backup')} to {result.get('location')} "
            f"as {_name(result)} {basis}; nothing was written"]


def _restore(result: dict) -> list[str]:
    stored, seconds = result.get("size"), result.get("duration")
    return [
        f"restore done: {_name(result)} up to level {result['level']} of {dates.show(result['time_stamp'])} "
        f"from {result.get('location')} into {result.get('restore_abs_path')}",
        f"  {result.get('levels_applied')} level(s), {result.get('files', '?')} files, {size(stored)} read, "
        f"{duration(seconds or 0)}, {_rate(stored, seconds)}",
    ]


def _restore_plan(result: dict) -> list[str]:
    levels = result.get("levels") or []
    each = ", ".join(f"level {lv['level']} of {lv['date']} ({size(lv.get('size'))})" for lv in levels)
    total = sum(lv.get("size") or 0 for lv in levels)
    return [f"dry run: would restore {_name(result)} into {result.get('restore_abs_path')} from "
            f"{result.get('location')}: {len(levels)} level(s), {size(total)}: {each}; nothing was changed"]


def _admin(result: dict) -> list[str]:
    chains = [dates.show(ts) for ts in result.get("removed") or []]
    incomplete = result.get("removed_incomplete") or []
    partials = result.get("removed_partials") or []
    verb = "would remove" if result.get("dry_run") else "removed"
    head = "dry run" if result.get("dry_run") else "admin done"
    what = f"{len(chains)} chain(s)" + (f" ({', '.join(chains)})" if chains else "")
    return [f"{head}: {verb} {what}, {len(incomplete)} incomplete level(s), {len(partials)} partial upload(s) "
            f"of {_name(result)} in {result.get('location')}, keeping chains from "
            f"{dates.show(result['cutoff'])} on" + ("; nothing was removed" if result.get("dry_run") else "")]


def names_table(rows: list[dict]) -> str:
    """``--action info`` without ``--backup-name``: every backup set in the container."""
    header = f"{'host':<20} {'backup name':<24} {'chains':>6} {'levels':>6}  {'newest':<19} {'size':>12}"
    out = [header, "-" * len(header)]
    for row in rows:
        out.append(f"{row['hostname']:<20} {row['backup_name']:<24} {row['chains']:>6} {row['levels']:>6}  "
                   f"{row['newest'] or '-':<19} {size(row['size']):>12}")
    if not rows:
        out.append("(no backups in this container)")
    return "\n".join(out)
