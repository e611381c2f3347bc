"""What the command line prints for people and for scripts.

- JSON objects of a fixed shape (docs/schema/ publishes it): every key present, `null` when
  empty, numbers as numbers, times as ISO-8601 UTC.
- Tables that fit the terminal: the last (free-text) column is cut, no field wraps.
- Log records with structured fields: `log_event` puts `event`, `job`, `run_id`, ... on the
  record, and the JSON log formatter writes them beside the message.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from scheduler.model import JobSpec, Run, from_ms, iso

WORKER_FIELDS = ("id", "host", "pid", "queues", "current", "heartbeat_at")
"""The keys of a worker object (`sched workers --json`), in order."""

LOG_FIELDS = ("event", "job", "run_id", "status", "duration_s", "delay_ms", "worker")
"""The structured fields a JSON log line may carry beside its message."""


def worker_json(row: Mapping[str, str]) -> dict[str, Any]:
    """A worker as stored (every value a string) -> its JSON object, typed, every key present."""
    pid = row.get("pid")
    beat = row.get("heartbeat_at")
    queues = row.get("queues")
    return {
        "id": row["id"],
        "host": row.get("host") or None,
        "pid": int(pid) if pid and pid.isdigit() else None,
        "queues": [q for q in queues.split(",") if q] if queues else [],
        "current": row.get("current") or None,
        "heartbeat_at": iso(from_ms(int(beat))) if beat and beat.isdigit() else None,
    }


def colour_wanted(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR"):
        return False
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def terminal_width(env: Mapping[str, str] | None = None) -> int | None:
    """Columns of the terminal, or None when the output is not one (a pipe is never cut),
    unless COLUMNS says otherwise."""
    env = os.environ if env is None else env
    columns = env.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def fit(lines: Sequence[str], width: int | None) -> list[str]:
    """Cut each line to `width` with an ellipsis (the free-text last column goes first)."""
    if width is None:
        return list(lines)
    return [line if len(line) <= width else line[: max(width - 1, 1)] + "…" for line in lines]


def zone_label(moment: datetime) -> str:
    """The local zone's name, or `UTC` when the local zone is UTC (shown once, not twice)."""
    local = moment.astimezone()
    if local.utcoffset() == UTC.utcoffset(None):
        return "UTC"
    return local.tzname() or ""


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    message: str,
    *args: object,
    **fields: object,
) -> None:
    """Log `message % args` with structured fields for `--log-format json`.

    `fields` are among LOG_FIELDS (`job`, `run_id`, `status`, `duration_s`, `delay_ms`,
    `worker`); the human format shows only the message.
    """
    unknown = set(fields) - set(LOG_FIELDS)
    if unknown:
        raise ValueError(f"not a log field: {sorted(unknown)}")
    logger.log(level, message, *args, extra={"sched": {"event": event, **fields}})


def structured_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields `log_event` put on a record, in LOG_FIELDS order (none for plain calls)."""
    fields = getattr(record, "sched", None)
    if not isinstance(fields, dict):
        return {}
    return {name: fields[name] for name in LOG_FIELDS if name in fields}


def when_ms(moment: datetime | None, utc: bool = False) -> str:
    """A time to the millisecond, in the local zone (or UTC), with its zone: for `sched show`."""
    if moment is None:
        return ""
    shown = moment.astimezone(UTC) if utc else moment.astimezone()
    stamp = shown.strftime("%Y-%m-%d %H:%M:%S.") + f"{shown.microsecond // 1000:03d}"
    return f"{stamp}Z" if utc else f"{stamp} {zone_label(moment)}"


def fit_table(rows: Sequence[Sequence[str]], width: int | None, shrink: int) -> list[str]:
    """Left-aligned columns two spaces apart (the first row is the header), each line at most
    `width` wide: column `shrink` (the free text) is cut with an ellipsis, the others kept whole,
    so no field wraps onto the next line."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    total = sum(widths) + 2 * (len(widths) - 1)
    if width is not None and total > width:
        header = len(rows[0][shrink])
        widths[shrink] = max(widths[shrink] - (total - width), min(header, 8))
    out = []
    for row in rows:
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            if i == shrink and len(cell) > w:
                cell = cell[: max(w - 1, 0)] + "…"
            cells.append(cell.ljust(w))
        out.append("  ".join(cells).rstrip())
    # Even the shortest free text does not fit: cut the lines, never let the terminal wrap them.
    return fit(out, width)


def _json_log_formatter() -> logging.Formatter:
    from scheduler.display import JsonLogFormatter

    class StructuredJsonFormatter(JsonLogFormatter):
        """display's JSON line (time, level, logger, pid, message) plus `log_event`'s fields;
        every line has `event` (null for a plain log call)."""

        def format(self, record: logging.LogRecord) -> str:
            entry = json.loads(super().format(record))
            entry["event"] = None
            entry.update(structured_fields(record))
            return json.dumps(entry)

    return StructuredJsonFormatter()


def log_formatter(log_format: str) -> logging.Formatter:
    """The formatter of `--log-format human|json`."""
    if log_format == "json":
        return _json_log_formatter()
    return logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%d %H:%M:%S")


def list_row(spec: JobSpec, run: Run | None, paused: bool, now: datetime) -> dict[str, Any]:
    """`sched list --json`: one job, its last run and its next fire."""
    from scheduler import cron, display, options, policy

    nxt = policy.next_fire(spec, now) if (spec.cron or spec.every_s) else None
    return {
        "job": spec.name,
        "kind": spec.kind,
        "schedule": spec.schedule,
        "description": display.describe_schedule(spec),
        **options.listed(spec),  # tz, timeout_s, overlap, ...: every listed option
        "where": spec.where,
        "paused": paused,
        "next_fire": iso(nxt) if nxt else None,
        "next_fire_local": nxt.astimezone(cron.zone(spec.tz)).isoformat() if nxt else None,
        "last_status": str(run.status) if run else None,
        "last_run": run.id if run else None,
        "last_run_at": iso(run.scheduled_for) if run else None,
    }


def next_rows(
    spec: JobSpec, after: datetime, count: int, tz: str | None = None
) -> list[dict[str, Any]]:
    """`sched next JOB --json [--tz Z]`: the job's zone decides the times, `tz` shows them."""
    from scheduler import cron, policy

    shown = tz or spec.tz
    zone = cron.zone(shown)
    rows = []
    for _ in range(count):
        after = policy.next_fire(spec, after)
        row = {"job": spec.name, "at": iso(after), "local": after.astimezone(zone).isoformat()}
        rows.append(row | {"tz": shown, "job_tz": spec.tz})
    return rows
