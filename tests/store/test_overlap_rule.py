"""The ENQUEUE script and policy.overlap_outcome take the same decision in every state.

The decision is taken atomically in Redis; `sched simulate` replays it with
policy.overlap_outcome. This runs the real script over every overlap policy and every state
of the job's active runs (none, queued, running, both, paused) and compares, so that a
change to either side fails here instead of making simulate say something the scheduler
does not do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.model import Overlap, RunStatus, run_id_for
from scheduler.policy import overlap_outcome
from scheduler.store import Store

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
STATES = ["none", "queued", "running", "running+queued", "paused"]


def enqueue(store: Store, at: datetime, overlap: str) -> str:
    run_id = run_id_for("j", at)
    store.enqueue(run_id=run_id, job="j", scheduled_for=at, queue="default", overlap=overlap)
    return run_id


def make_state(store: Store, state: str) -> list[tuple[str, RunStatus]]:
    """Bring job 'j' into `state`; return its active runs (id, status), oldest first."""
    active: list[tuple[str, RunStatus]] = []
    if state == "paused":
        store.pause("j")
    if "running" in state:
        run_id = enqueue(store, T0, "allow")
        assert store.wait_for_run("w1", ["default"], 1.0) == run_id
        assert store.claim("w1", run_id, 30) is not None
        active.append((run_id, RunStatus.RUNNING))
    if "queued" in state:
        at = T0 + timedelta(minutes=1)
        active.append((enqueue(store, at, "allow"), RunStatus.QUEUED))
    return active


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("overlap", list(Overlap))
def test_the_script_decides_as_overlap_outcome(store: Store, overlap: Overlap, state: str) -> None:
    active = make_state(store, state)
    new_id = enqueue(store, T0 + timedelta(minutes=2), str(overlap))
    run = store.get_run(new_id)
    # the script names any one active run when it skips; the rule names the first
    expected = [
        overlap_outcome(overlap, [a, *[b for b in active if b != a]], state == "paused")
        for a in active
    ] or [overlap_outcome(overlap, [], state == "paused")]
    assert run.status in {e.status for e in expected}
    if run.status is RunStatus.SKIPPED:
        assert run.reason in {e.reason for e in expected}
    rule = expected[0]
    for other, _ in active:
        before = store.get_run(other)
        if other in rule.stop:
            fields = store.redis.hgetall(store.keys.run(other))
            assert fields.get("kill_requested") == "replaced"
        elif other in rule.drop:
            assert (before.status, before.reason) == (RunStatus.SKIPPED, f"replaced by {new_id}")
        else:
            assert before.status in (RunStatus.QUEUED, RunStatus.RUNNING)
            assert "kill_requested" not in store.redis.hgetall(store.keys.run(other))
