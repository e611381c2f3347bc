"""What a job's definition decides about its runs: fire times, stored policy, retries.

Pure functions over model types, shared by the scheduler loop, the workers, the store and the
CLI (`sched next` and `sched list` load this, not redis or prometheus).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from scheduler import cron
from scheduler.model import PENDING, RETRYABLE, Catchup, JobSpec, Overlap, RunStatus

__all__ = [
    "CATCH_UP_SCAN",
    "OverlapOutcome",
    "PENDING",
    "RETRYABLE",
    "Retry",
    "RunPolicy",
    "catch_up_split",
    "missed_reason",
    "next_fire",
    "overlap_outcome",
    "retry_plan",
    "run_policy",
]


def next_fire(spec: JobSpec, after: datetime) -> datetime:
    """The job's first fire strictly after `after`; the one code path of `sched next` too."""
    return cron.next_fire(spec.cron, spec.every_s, spec.tz, after)


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """What is stored on each run for the transitions that follow (retries, misfire grace)."""

    retries: int = 0
    retry_backoff_s: float = 60.0
    retry_on: tuple[str, ...] = RETRYABLE
    misfire_grace_s: float | None = None

    def fields(self) -> dict[str, object]:
        """The stored fields; the retry ones only for a job that retries."""
        retries = bool(self.retries)
        return {
            "retries": self.retries or None,
            "retry_backoff_s": self.retry_backoff_s if retries else None,
            "retry_on": ",".join(self.retry_on) if retries else None,
            "misfire_grace_s": self.misfire_grace_s,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> RunPolicy:
        """Read the stored fields back; ValueError naming the field that does not parse."""
        grace = fields.get("misfire_grace_s")
        retry_on = fields.get("retry_on")
        return cls(
            retries=_number(int, fields, "retries", 0),
            retry_backoff_s=_number(float, fields, "retry_backoff_s", 60.0),
            retry_on=tuple(retry_on.split(",")) if retry_on else RETRYABLE,
            misfire_grace_s=_number(float, fields, "misfire_grace_s", 0.0) if grace else None,
        )


T = TypeVar("T", int, float)


def _number(kind: Callable[[str], T], fields: Mapping[str, str], name: str, default: T) -> T:
    raw = fields.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"field {name} is {raw!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"field {name} is {raw!r}, not a finite number")
    return value


def run_policy(spec: JobSpec) -> RunPolicy:
    """The policy a job's runs carry."""
    return RunPolicy(
        retries=spec.retries,
        retry_backoff_s=spec.retry_backoff_s,
        retry_on=tuple(spec.retry_on),
        misfire_grace_s=spec.misfire_grace_s,
    )


@dataclass(frozen=True)
class Retry:
    """The next attempt of a run: its id, its backoff delay and its attempt number."""

    run_id: str
    delay_ms: int
    attempt: int


# The longest backoff before a retry, however many attempts came before.
MAX_RETRY_DELAY_S = 7 * 24 * 3600.0


def retry_plan(run_id: str, attempt: int, policy: RunPolicy, status: RunStatus) -> Retry | None:
    """The retry a run earns by ending with `status`, from the policy stored on it.

    The delay doubles with each attempt from `retry_backoff_s`, with equal jitter (half fixed,
    half random) so that runs failing together do not retry in lockstep; it stops doubling at
    MAX_RETRY_DELAY_S.
    """
    if attempt > policy.retries or str(status) not in policy.retry_on:
        return None
    base = min(policy.retry_backoff_s * 2 ** min(max(attempt - 1, 0), 40), MAX_RETRY_DELAY_S)
    delay = base / 2 + random.uniform(0, base / 2)
    root = run_id.split("#", 1)[0]
    return Retry(f"{root}#{attempt + 1}", int(delay * 1000), attempt + 1)


# --- the decisions sched simulate replays ------------------------------------------------------

CATCH_UP_SCAN = 10_000
"""The scheduler looks at most this many of the newest fires missed while it was down."""


Fire = TypeVar("Fire")


def catch_up_split(
    catchup: Catchup, catchup_limit: int, fires: Sequence[Fire]
) -> tuple[list[Fire], list[Fire]]:
    """The fires missed while no scheduler ran, split by the catch-up policy into those that
    run now (trigger `catchup`) and those recorded `missed`, each oldest first."""
    limit = catchup_limit if catchup is Catchup.ALL else 1
    keep = [] if catchup is Catchup.NONE else list(fires[-limit:])
    return keep, list(fires[: len(fires) - len(keep)])


def missed_reason(catchup: Catchup, cause: str | None = None) -> str:
    """The reason a fire dropped by catch-up is recorded with; `cause`, when it was not made
    in time for another reason than no scheduler running (a jump of the clock)."""
    return f"{cause or 'no scheduler was running'} (catchup={catchup})"


@dataclass(frozen=True)
class OverlapOutcome:
    """What enqueueing a scheduled fire does, given its job's active runs."""

    status: RunStatus  # QUEUED or SKIPPED
    reason: str = ""
    stop: tuple[str, ...] = ()  # running runs asked to stop (they end `killed`, `replaced`)
    drop: tuple[str, ...] = ()  # queued runs set `skipped`, reason `replaced by <id>`


def overlap_outcome(
    overlap: Overlap, active: Sequence[tuple[str, RunStatus]], paused: bool = False
) -> OverlapOutcome:
    """The ENQUEUE script's decision for a scheduled fire, given the job's active runs (id and
    status, oldest first). The decision itself is taken atomically in Redis; this is the same
    rule for `sched simulate`, and tests/store/test_overlap_rule.py runs the script over every
    policy and state to keep the two the same."""
    if paused:
        return OverlapOutcome(RunStatus.SKIPPED, "paused")
    if overlap is Overlap.SKIP and active:
        running = active[0][0]
        return OverlapOutcome(
            RunStatus.SKIPPED, f"overlap=skip: run {running} of this job is still queued or running"
        )
    if overlap is Overlap.QUEUE:
        for other, status in active:
            if status is RunStatus.QUEUED:
                return OverlapOutcome(
                    RunStatus.SKIPPED, f"overlap=queue: run {other} is already waiting"
                )
    if overlap is Overlap.REPLACE:
        stop = tuple(i for i, s in active if s is RunStatus.RUNNING)
        drop = tuple(i for i, s in active if s is RunStatus.QUEUED)
        return OverlapOutcome(RunStatus.QUEUED, stop=stop, drop=drop)
    return OverlapOutcome(RunStatus.QUEUED)
