"""The records that cross the store's port: what callers hand in and get back. No I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from scheduler.model import RUN_FIELDS, KillCause, Overlap, Run, RunStatus, Trigger
from scheduler.policy import RunPolicy


@dataclass(frozen=True)
class Retention:
    """How much history to keep per job."""

    # Runs that ran (or were queued to run), per job.
    keep_runs: int = 1000
    max_age_s: float = 30 * 24 * 3600
    # Skipped and missed fires, per job, kept apart: they never push out runs that ran.
    keep_not_run: int = 1000
    # Runs of the whole deployment (every job): beyond it the oldest finished runs go, at
    # most `trim_batch` per pass, so 100,000 jobs with the limits above cannot fill a Redis.
    keep_total: int = 1_000_000
    trim_batch: int = 10_000


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat learned: whether the worker still holds its run, and why to stop it."""

    held: bool
    kill_requested: KillCause | None = None


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: whether it created the run, and the run's status.

    `status` is None for a stale fire (not after the job's last fire) and for a held one
    (`held_s` set: Redis was found empty, see Store.enqueue_many): nothing was created.
    """

    run_id: str
    created: bool
    status: RunStatus | None
    # Send the fire again after this many seconds: it was held, nothing was written.
    held_s: float | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A run this worker holds now: its record as claimed, and the policy stored on it."""

    run: Run
    policy: RunPolicy

    def fields(self) -> dict[str, object]:
        """The record as stored (to write it back if Redis loses it)."""
        out: dict[str, object] = {}
        for name in RUN_FIELDS:
            value = getattr(self.run, name)
            if name == "result" and value is not None:
                value = json.dumps(value)
            out[name] = value
        out.update(self.policy.fields())
        return {name: value for name, value in out.items() if value is not None}


# The outcomes an enqueue may record instead of queueing the run.
_RECORDED = (RunStatus.MISSED, RunStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class FireSettings:
    """How to enqueue a fire (see fire_settings); shared by every fire of a job definition."""

    queue: str
    overlap: Overlap = Overlap.SKIP
    trigger: Trigger = Trigger.SCHEDULE
    attempt: int = 1
    timeout_s: float | None = None
    policy: RunPolicy = RunPolicy()
    scheduled: bool = True
    # QUEUED to queue the run, or MISSED / SKIPPED to record it so with `reason`.
    outcome: RunStatus = RunStatus.QUEUED
    reason: str = ""

    @property
    def reads_active(self) -> bool:
        """Whether the script needs the job's active runs: overlap queue/replace, to be queued."""
        return self.overlap in _READS_ACTIVE and self.outcome is RunStatus.QUEUED


_READS_ACTIVE = (Overlap.QUEUE, Overlap.REPLACE)


def fire_settings(
    queue: str,
    *,
    overlap: Overlap = Overlap.SKIP,
    trigger: Trigger = Trigger.SCHEDULE,
    attempt: int = 1,
    timeout_s: float | None = None,
    policy: RunPolicy | None = None,
    scheduled: bool = True,
    outcome: RunStatus = RunStatus.QUEUED,
    reason: str = "",
) -> FireSettings:
    """How to enqueue a fire; the arguments of Store.enqueue() other than the fire itself.

    A `scheduled` fire must come after the job's last fire, advances it and honours pause
    (a manual run is not scheduled). With `outcome` MISSED or SKIPPED the run is recorded
    with that status and `reason` instead of being queued.
    """
    if outcome not in (RunStatus.QUEUED, *_RECORDED):
        raise ValueError(f"outcome {outcome!r}: expected queued, missed or skipped")
    return FireSettings(
        queue,
        Overlap(overlap),
        Trigger(trigger),
        attempt,
        timeout_s,
        policy or RunPolicy(),
        scheduled,
        RunStatus(outcome),
        reason,
    )


class Fire(NamedTuple):
    """One fire to enqueue: the run's id, its job and instant, and fire_settings()."""

    run_id: str
    job: str
    scheduled_for: datetime
    settings: FireSettings


class RunSummary(NamedTuple):
    """The few fields of a run that views over thousands of runs draw (times in epoch ms)."""

    id: str
    status: RunStatus
    scheduled_ms: int
    enqueued_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    duration_s: float | None
    trigger: str
    attempt: int
    reason: str | None
