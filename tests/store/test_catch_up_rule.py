"""The scheduler's catch-up after downtime splits the missed fires as policy.catch_up_split.

`sched simulate` replays catch-up with policy.catch_up_split; this starts a real Beat on a
real Redis after a gap and checks that what it records (missed, or a run with trigger
catchup) is the split that function makes, for every catch-up policy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler import cron
from scheduler.beat import Beat
from scheduler.model import Catchup, JobSpec, Overlap, RunStatus, Trigger, run_id_for
from scheduler.policy import catch_up_split
from scheduler.store import Store

T0 = datetime(2027, 3, 28, 0, 0, tzinfo=UTC)  # 01:00 in Berlin, an hour before the gap


@pytest.mark.parametrize(
    ("catchup", "limit"), [(Catchup.NONE, 100), (Catchup.LATEST, 100), (Catchup.ALL, 3)]
)
def test_the_beat_catches_up_as_catch_up_split(store: Store, catchup: Catchup, limit: int) -> None:
    spec = JobSpec(
        name="j", path="x", line=1, cron="*/20 * * * *", tz="Europe/Berlin",
        catchup=catchup, catchup_limit=limit, overlap=Overlap.ALLOW,
    )  # fmt: skip
    # (the last run before the gap is still queued: allow keeps overlap out of the way)
    store.enqueue(run_id=run_id_for("j", T0), job="j", scheduled_for=T0, queue="default")
    now = T0 + timedelta(hours=3, minutes=5)
    Beat(store, {"j": spec}, clock=lambda: now).start()
    fires = cron.fires_between(spec.cron, None, spec.tz, T0, now, 10_000)
    assert len(fires) == 9  # 01:20, 01:40 CET; 03:00 .. 05:00 CEST
    keep, dropped = catch_up_split(catchup, limit, fires)
    for fire in fires:
        run = store.get_run(run_id_for("j", fire))
        if fire in keep:
            assert (run.status, run.trigger) == (RunStatus.QUEUED, Trigger.CATCHUP), fire
        else:
            assert fire in dropped
            assert run.status is RunStatus.MISSED, fire
