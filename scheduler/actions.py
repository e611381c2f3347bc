"""What an operator does to runs, the same from the CLI and the dashboard."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scheduler.model import JobSpec, Overlap, Trigger
from scheduler.policy import run_policy

if TYPE_CHECKING:
    from scheduler.store import Store


def trigger(store: Store, spec: JobSpec) -> str:
    """Queue a manual run of `spec` now (overlap allowed, the job's own policy); its id."""
    now = datetime.now(UTC)
    run_id = f"{spec.name}@manual-{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    store.enqueue(
        run_id=run_id,
        job=spec.name,
        scheduled_for=now,
        queue=spec.queue,
        overlap=Overlap.ALLOW,
        trigger=Trigger.MANUAL,
        timeout_s=spec.timeout_s,
        advance_last_fire=False,
        policy=run_policy(spec),
    )
    return run_id
