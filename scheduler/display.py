"""How runs and jobs read to a person: times, durations, schedules in words, tables.

Pure functions over plain values; `cli.py` adds colour when the output is a terminal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from scheduler.cron import MACROS
from scheduler.model import JobSpec, RunStatus, format_seconds

# Colours (click.style names) per status, for terminals.
STATUS_COLOURS = {
    RunStatus.QUEUED: "cyan",
    RunStatus.RUNNING: "blue",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.TIMED_OUT: "magenta",
    RunStatus.KILLED: "red",
    RunStatus.LOST: "yellow",
    RunStatus.SKIPPED: "white",
    RunStatus.MISSED: "yellow",
}


def human_duration(seconds: float | None) -> str:
    """`512ms`, `4.2s`, `1m03s`, `2h05m`; empty for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    text = format_seconds(round(seconds))
    return text[:-3] if text.endswith("m00s") else text


def when(moment: datetime | None, utc: bool = False) -> str:
    """A time in the local zone (or UTC with `utc`), to the second, with its zone."""
    if moment is None:
        return ""
    if utc:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


def ago(moment: datetime | None, now: datetime) -> str:
    """`3m ago`, `in 12s`."""
    if moment is None:
        return ""
    delta = (now - moment).total_seconds()
    text = human_duration(abs(delta))
    return f"{text} ago" if delta >= 0 else f"in {text}"


def describe_schedule(spec: JobSpec) -> str:
    """The schedule in words: `Every 5 minutes`, `At 03:00, Monday through Friday`."""
    if spec.every_s is not None:
        return f"Every {format_seconds(spec.every_s)}"
    if spec.cron is None:
        return "manual only"
    from cron_descriptor import ExpressionDescriptor, Options

    options = Options()
    options.use_24hour_time_format = True
    expr = MACROS.get(spec.cron, spec.cron)
    try:
        return str(ExpressionDescriptor(expr, options).get_description())
    except Exception:  # noqa: BLE001 - words are a nicety; the expression itself is valid
        return spec.cron


def policies(spec: JobSpec) -> str:
    """The job's policies in one short phrase."""
    parts = [f"overlap={spec.overlap}", f"catchup={spec.catchup}"]
    if spec.retries:
        parts.append(f"retries={spec.retries}")
    return " ".join(parts)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces; the first row is the header."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def status_counts(statuses: Sequence[RunStatus]) -> str:
    """`12 runs: 9 completed, 2 failed, 1 timed-out`."""
    counts: dict[RunStatus, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    total = len(statuses)
    return f"{total} run{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, pid, message (and any exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
