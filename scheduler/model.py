"""Data first: job specifications, run records and the enums of docs/runs.md. No I/O."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any


class RunStatus(StrEnum):
    """The status of one run; the values are the strings of docs/runs.md."""

    QUEUED = "queued"
    """Enqueued, waiting for a worker."""
    RUNNING = "running"
    """A horse is executing it."""
    COMPLETED = "completed"
    """The function returned or the program exited 0."""
    FAILED = "failed"
    """Exception, non-zero exit, or unusable result (the reason says which)."""
    TIMED_OUT = "timed-out"
    """The deadline passed: killed by the alarm or by the parent's backstop."""
    KILLED = "killed"
    """Died from a signal not sent for its deadline, or stopped by an operator or shutdown."""
    LOST = "lost"
    """Its worker vanished; found by lease expiry."""
    SKIPPED = "skipped"
    """Not started because of the overlap policy (or because the job was paused)."""
    MISSED = "missed"
    """Its fire time passed while no scheduler could enqueue it and catch-up dropped it."""

    @property
    def final(self) -> bool:
        """True once the run can no longer change status."""
        return self not in PENDING


# A run is pending while it may still change status: queued or running.
PENDING = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class KillCause(StrEnum):
    """Why a worker stopped a horse that had not ended by itself; the run's reason says it."""

    DEADLINE = "deadline"
    """Still running at its deadline + grace."""
    SHUTDOWN = "shutdown"
    """A cold shutdown of its worker."""
    OPERATOR = "operator"
    """`sched kill`, or the dashboard's kill."""
    REPLACED = "replaced"
    """A newer fire of an `overlap="replace"` job."""


class Overlap(StrEnum):
    """What a new fire does while an earlier run of the same job is queued or running."""

    SKIP = "skip"
    ALLOW = "allow"
    QUEUE = "queue"
    REPLACE = "replace"


class Catchup(StrEnum):
    """What happens to fire times that passed while no scheduler was running."""

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


DEFAULT_TZ = "UTC"
"""The zone of a job that names none, when SCHED_TZ does not name one either."""
DEFAULT_TIMEOUT_S = 3600.0
"""The timeout of a job that names none, unless its load is given another."""
RETRYABLE: tuple[str, ...] = (
    RunStatus.FAILED.value,
    RunStatus.TIMED_OUT.value,
    RunStatus.LOST.value,
)
"""The statuses a retry can follow, and the default `retry_on` of a job."""
DEFAULT_RETRY_BACKOFF_S = 60.0
"""The delay before a job's first retry when it names none; it doubles for each next one."""
DEFAULT_QUEUE = "default"
"""The queue of a job that names none, and the one workers take when told none."""


class Trigger(StrEnum):
    """Why a run exists."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    CATCHUP = "catchup"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job as defined in the jobs folder, validated.

    The defaults of the fields an option fills are that option's (scheduler/options.py).
    """

    name: str
    path: str
    line: int
    timeout_s: float = DEFAULT_TIMEOUT_S
    tz: str = DEFAULT_TZ
    cron: str | None = None
    every_s: float | None = None
    func: Callable[[], object] | None = field(default=None, compare=False, repr=False)
    argv: tuple[str, ...] | None = None
    overlap: Overlap = Overlap.SKIP
    catchup: Catchup = Catchup.LATEST
    catchup_limit: int = 100
    retries: int = 0
    retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S
    misfire_grace_s: float | None = None
    queue: str = DEFAULT_QUEUE
    description: str = ""
    # Hook URLs may carry credentials: kept out of repr() and so out of logs.
    on_failure: str | tuple[str, ...] | None = field(default=None, repr=False)
    on_late: str | tuple[str, ...] | None = field(default=None, repr=False)
    expected_duration_s: float | None = None
    retry_on: tuple[str, ...] = RETRYABLE
    memory_limit_bytes: int | None = None
    # A monitor's check URL, which lets anyone ping it: kept out of repr() like the hooks.
    ping_url: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """`command` for an external program, `python` for a function."""
        return "command" if self.argv is not None else "python"

    @property
    def schedule(self) -> str:
        """The schedule as written: the cron expression or `every <seconds>s`."""
        if self.cron is not None:
            return self.cron
        if self.every_s is not None:
            return f"every {format_seconds(self.every_s)}"
        return "manual"

    @property
    def where(self) -> str:
        """`path:line` of the definition."""
        return f"{self.path}:{self.line}"


def format_seconds(seconds: float) -> str:
    """Render a duration compactly: 90 -> '1m30s', 0.5 -> '0.5s', 3600 -> '1h'."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes:02d}m" if hours else f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs:02d}s" if parts else f"{secs}s")
    return "".join(parts)


# The fields of a run record, in the order docs/runs.md lists them.
RUN_FIELDS = (
    "id",
    "job",
    "scheduled_for",
    "enqueued_at",
    "started_at",
    "finished_at",
    "duration_s",
    "status",
    "reason",
    "exit_code",
    "signal",
    "attempt",
    "trigger",
    "worker",
    "pid",
    "max_rss_kb",
    "cpu_s",
    "output",
    "error",
    "queue",
    "timeout_s",
    "result",
    "retry_of",
    "retry",
)


@dataclass(frozen=True, slots=True)
class Run:
    """One fire of a job (or one manual trigger) and what became of it."""

    id: str
    job: str
    status: RunStatus
    scheduled_for: datetime
    trigger: Trigger = Trigger.SCHEDULE
    attempt: int = 1
    queue: str = DEFAULT_QUEUE
    timeout_s: float | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    reason: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    worker: str | None = None
    pid: int | None = None
    max_rss_kb: int | None = None
    cpu_s: float | None = None
    output: str | None = None
    error: dict[str, str] | None = None
    result: Any = None
    retry_of: str | None = None
    """The attempt this one retries (attempt 2 and later)."""
    retry: str | None = None
    """The next attempt, when this one earned a retry."""

    def to_json(self) -> dict[str, Any]:
        """The run as a JSON object with docs/runs.md's field names and ISO-8601 UTC times."""
        out: dict[str, Any] = {}
        for name in RUN_FIELDS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = iso(value)
            elif isinstance(value, StrEnum):
                value = str(value)
            out[name] = value
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Run:
        """Build a run from the flat string fields stored in Redis."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = fields.get(f.name)
            if raw is None or raw == "":
                continue
            kwargs[f.name] = _decode_field(f.name, raw)
        return cls(**kwargs)


_TIME_FIELDS = {"scheduled_for", "enqueued_at", "started_at", "finished_at"}
_INT_FIELDS = {"attempt", "exit_code", "pid", "max_rss_kb"}
_FLOAT_FIELDS = {"duration_s", "cpu_s", "timeout_s"}
_JSON_FIELDS = {"error", "result"}


def _decode_field(name: str, raw: str) -> Any:
    if name in _TIME_FIELDS:
        return from_ms(int(raw))
    if name in _INT_FIELDS:
        return int(raw)
    if name in _FLOAT_FIELDS:
        return float(raw)
    if name in _JSON_FIELDS:
        return json.loads(raw)
    if name == "status":
        return RunStatus(raw)
    if name == "trigger":
        return Trigger(raw)
    return raw


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a Z, milliseconds only when there are some."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return int(round(moment.timestamp() * 1000))


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of a millisecond timestamp."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def run_id_for(job: str, fire_at: datetime) -> str:
    """The deterministic id of a scheduled fire: the same job and instant give the same id."""
    return f"{job}@{_stamp(fire_at)}"


@lru_cache(maxsize=256)
def _stamp(fire_at: datetime) -> str:
    # Cached: thousands of jobs due at one instant share it.
    stamp = fire_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    ms = to_ms(fire_at) % 1000
    if ms:
        stamp += f".{ms:03d}"
    return f"{stamp}Z"
