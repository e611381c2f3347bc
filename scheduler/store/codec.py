"""Records to and from the flat string fields Redis holds. No I/O.

Decoding never lets a ValueError out: a field that does not parse is StoreCorrupt, naming
the record and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum

from scheduler.errors import StoreCorrupt
from scheduler.model import RUN_FIELDS, Run, RunStatus, to_ms
from scheduler.policy import RunPolicy
from scheduler.store.records import Claimed, FireSettings, RunSummary

# How each stored field of a run is read back (see model.Run.from_fields and RunPolicy): the
# scripts check a record against this before they change it (lua/lib/validate.lua).
FIELD_KINDS = {
    **dict.fromkeys(("scheduled_for", "enqueued_at", "started_at", "finished_at"), "time"),
    **dict.fromkeys(("attempt", "exit_code", "pid", "max_rss_kb", "retries"), "int"),
    **dict.fromkeys(
        ("duration_s", "cpu_s", "timeout_s", "retry_backoff_s", "misfire_grace_s"), "float"
    ),
    **dict.fromkeys(("error", "result"), "json"),
    "status": "status",
    "trigger": "trigger",
}


def decode_run(fields: Mapping[str, str]) -> Run:
    """A stored run as a Run; StoreCorrupt naming the record and the field when it is unusable."""
    try:
        return Run.from_fields(fields)
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise StoreCorrupt(_field_problem(fields, exc), fields.get("id") or "a run") from None


_REQUIRED = ("id", "job", "status", "scheduled_for")


def _field_problem(fields: Mapping[str, str], exc: BaseException) -> str:
    """Which field of a stored run cannot be read, and why."""
    for name in _REQUIRED:
        if not fields.get(name):
            return f"field {name} is missing"
    base = {name: fields[name] for name in _REQUIRED}
    for name in RUN_FIELDS:
        raw = fields.get(name)
        if not raw:
            continue
        try:
            Run.from_fields({**base, "status": "queued", "scheduled_for": "0", name: raw})
        except (ValueError, TypeError, OverflowError, OSError):
            return f"field {name} is {raw[:80]!r}, which cannot be read"
    return f"unusable record ({exc})"


# The most a run keeps of each long text (UTF-8 bytes), in its side key: the worker's own
# 64 KiB output tail fits whole with its marker line.
TEXT_LIMIT = 64 * 1024
# Room for the marker line the worker puts before an output tail it had to cut.
_MARKER_ROOM = 100
# Fields a run keeps in its side key; a record written before the side key held them itself.
SIDE_FIELDS = ("output", "error", "result", "late_report", "live_output", "live_total")


def merged(record: Mapping[str, str], side: Mapping[str, str]) -> dict[str, str]:
    """A run's stored fields from its record and its side key (whose whole reason wins over
    the record's cut copy). A record of an earlier version has no side key: it is whole."""
    if not side:
        return dict(record)
    return {**record, **side} if record else {}


def capped(fields: Mapping[str, object]) -> dict[str, object]:
    """The fields as a run keeps them: each long text within TEXT_LIMIT, cut with a marker."""
    out = dict(fields)
    for name in ("output", "live_output"):
        value = out.get(name)
        if isinstance(value, str) and len(value) > TEXT_LIMIT // 4:
            out[name] = tail_of(value, TEXT_LIMIT)
    reason = out.get("reason")
    if isinstance(reason, str) and len(reason) > TEXT_LIMIT // 4:
        out["reason"] = head_of(reason, TEXT_LIMIT)
    error = out.get("error")
    if isinstance(error, str) and len(error) > TEXT_LIMIT // 4:
        out["error"] = _capped_error(error)
    result = out.get("result")
    if isinstance(result, str) and len(result.encode()) > TEXT_LIMIT:
        size = len(result.encode())
        out["result"] = json.dumps(
            f"[a result of {size} bytes of JSON, over the {TEXT_LIMIT} kept]"
        )
    return out


def tail_of(text: str, limit: int) -> str:
    """The text's last `limit` bytes after a line saying how many earlier ones were dropped."""
    data = text.encode()
    if len(data) <= limit + _MARKER_ROOM:
        return text
    kept = data[-limit:].decode(errors="ignore")  # a character cut in two is left out
    dropped = len(data) - len(kept.encode())
    return f"[... {dropped} earlier bytes not kept ...]\n{kept}"


def head_of(text: str, limit: int) -> str:
    """The text's first `limit` bytes and a mark saying how many later ones were dropped."""
    data = text.encode()
    if len(data) <= limit + _MARKER_ROOM:
        return text
    kept = data[:limit].decode(errors="ignore")
    return f"{kept} [... {len(data) - len(kept.encode())} more bytes not kept]"


def _capped_error(text: str) -> str:
    """An error (JSON: type, message, traceback) within TEXT_LIMIT bytes: the message's head
    and the traceback's tail are kept."""
    if len(text.encode()) <= TEXT_LIMIT:
        return text
    try:
        error = json.loads(text)
    except ValueError:
        error = None
    if not isinstance(error, dict) or not all(isinstance(v, str) for v in error.values()):
        return json.dumps({"type": "", "message": head_of(text, TEXT_LIMIT // 8), "traceback": ""})
    limit = TEXT_LIMIT // 2
    while True:  # JSON escapes may take up to 12 bytes a character: shrink until it fits
        cut = {
            name: tail_of(value, limit) if name == "traceback" else head_of(value, limit // 8)
            for name, value in error.items()
        }
        encoded = json.dumps(cut)
        if len(encoded.encode()) <= TEXT_LIMIT + _MARKER_ROOM * 4 or limit < 256:
            return encoded
        limit //= 2


def decode_claimed(fields: Mapping[str, str]) -> Claimed:
    """The claimed record; StoreCorrupt when a field cannot be read."""
    run = decode_run(fields)
    try:
        policy = RunPolicy.from_fields(fields)
    except ValueError as exc:
        raise StoreCorrupt(str(exc), run.id) from None
    return Claimed(run, policy)


def encode(value: object) -> str:
    """A value as stored: times as epoch ms, JSON for dicts and lists, floats by repr."""
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime):
        return str(to_ms(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def pairs(fields: Mapping[str, object]) -> list[str]:
    """Field, value, field, value... for the fields that are not None."""
    out: list[str] = []
    for name, value in fields.items():
        if value is None:
            continue
        out += [name, encode(value)]
    return out


def settings_args(settings: FireSettings) -> tuple[str, ...]:
    """The settings as the enqueue script reads them (see its comment)."""
    fields: dict[str, object] = {
        "trigger": settings.trigger,
        "attempt": settings.attempt,
        "queue": settings.queue,
        "timeout_s": settings.timeout_s,
        **settings.policy.fields(),
    }
    outcome = "queue" if settings.outcome is RunStatus.QUEUED else str(settings.outcome)
    scheduled = "1" if settings.scheduled else "0"
    head = (str(settings.overlap), scheduled, outcome, settings.reason, settings.queue)
    return head + tuple(pairs(fields))


# The fields of a RunSummary, in its order; the first must be present on every run.
SUMMARY_FIELDS = (
    "id",
    "status",
    "scheduled_for",
    "enqueued_at",
    "started_at",
    "finished_at",
    "duration_s",
    "trigger",
    "attempt",
    "reason",  # free text: last (see run_rows.lua)
)
# Runs per run_rows call: a bounded argument list and a short hold on the server.
SUMMARY_BATCH = 5000


def summary(row: Sequence[str]) -> RunSummary | None:
    """A run_rows row as a RunSummary; None for a run forgotten meanwhile or unreadable."""
    if len(row) < len(SUMMARY_FIELDS) or not row[0]:
        return None  # the run was forgotten between the index read and this one
    try:
        return _summary(row)
    except ValueError:
        return None  # a record that cannot be read is left out of views


def _summary(row: Sequence[str]) -> RunSummary:
    v = [x or None for x in row]
    return RunSummary(
        id=str(v[0]),
        status=RunStatus(v[1] or "queued"),
        scheduled_ms=int(v[2] or 0),
        enqueued_ms=int(v[3]) if v[3] is not None else None,
        started_ms=int(v[4]) if v[4] is not None else None,
        finished_ms=int(v[5]) if v[5] is not None else None,
        duration_s=float(v[6]) if v[6] is not None else None,
        trigger=str(v[7] or "schedule"),
        attempt=int(v[8] or 1),
        reason=str(v[9]) if v[9] is not None else None,
    )
