"""Bad data in Redis never crashes a loop: a run record that cannot be used is set aside.

Hypothesis writes run records whose fields are valid or garbage, each where a real record
would be (queued in a queue, running with an expired lease, ended in the feed, a worker's
copy restored), and drives them through claim, finish with a retry, reap, lose_runs_of,
restore, the ended feed, the reads that judge an expired lease, and history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.errors import StoreCorrupt
from scheduler.model import RunStatus, to_ms
from scheduler.policy import retry_plan
from scheduler.store import RedisStore, Store

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
GOOD = {
    "scheduled_for": str(to_ms(T0)),
    "enqueued_at": str(to_ms(T0)),
    "attempt": "1",
    "trigger": "schedule",
    "queue": "default",
    "timeout_s": "30.0",
    "retries": "2",
    "retry_backoff_s": "0.01",
    "retry_on": "failed,lost",
    "misfire_grace_s": "100000000.0",
}
GARBAGE = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["abc", "", "1.5", "-1", "1e400", "nan", "0x10", "{", "99999999999999999"]),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
FIELDS = sorted({*GOOD, "error", "result", "exit_code", "pid", "cpu_s", "status"})


@st.composite
def records(draw: st.DrawFn) -> dict[str, str]:
    """A queued run's fields, each kept, dropped or replaced by garbage."""
    fields = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=4)):
        if draw(st.booleans()):
            fields[name] = draw(GARBAGE)
        else:
            fields.pop(name, None)
    return fields


@pytest.fixture()
def fresh(store: Store) -> Iterator[RedisStore]:
    assert isinstance(store, RedisStore)
    yield store


def _put(store: RedisStore, run_id: str, fields: dict[str, str], status: str) -> None:
    k = store.keys
    store.redis.flushdb()
    store.redis.hset(k.run(run_id), mapping={"id": run_id, "job": "j", **fields, "status": status})
    for index in (k.all_runs, k.by_job("j"), k.by_status(status)):
        store.redis.zadd(index, {run_id: to_ms(T0)})
    store.redis.sadd(k.active("j"), run_id)


def _set_aside_or_usable(store: RedisStore, run_id: str) -> str:
    """The status the record ended with; a set-aside one names its field and is indexed."""
    raw = store.raw_run(run_id)
    if raw.get("status") == "failed" and raw.get("reason", "").startswith("unusable record"):
        assert "field " in raw["reason"]
        assert store.redis.zscore(store.keys.by_status(RunStatus.FAILED), run_id) is not None
        assert not store.redis.sismember(store.keys.active("j"), run_id)
    return raw.get("status", "")


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(fields=records())
def test_claim_finish_retry_and_history_survive_any_record(
    fresh: RedisStore, fields: dict[str, str]
) -> None:
    store, run_id = fresh, "j@1"
    _put(store, run_id, fields, "queued")
    store.redis.rpush(store.keys.queue("default"), run_id)
    assert store.wait_for_run("w", ["default"], 0.1) == run_id
    claimed = store.claim("w", run_id, 10)
    if claimed is None:
        assert _set_aside_or_usable(store, run_id) in ("failed", "missed")
    else:
        plan = retry_plan(claimed.run.id, claimed.run.attempt, claimed.policy, RunStatus.FAILED)
        done, status = store.finish("w", run_id, "j", RunStatus.FAILED, 0.1, {"exit_code": 1}, plan)
        assert done and status == "failed"
        if plan is not None:
            assert store.get_run(plan.run_id).status is RunStatus.QUEUED
    for run in store.history(limit=10):  # never raises: unreadable records are left out
        assert run.id.startswith("j@")
    store.take_ended()
    store.last_runs(["j"])
    store.summaries([run_id, f"{run_id}#2"])


@FUZZ
@given(fields=records())
def test_reap_survives_any_record(fresh: RedisStore, fields: dict[str, str]) -> None:
    store, run_id = fresh, "j@1"
    _put(store, run_id, {**fields, "worker": "gone", "started_at": str(to_ms(T0))}, "running")
    store.redis.zadd(store.keys.running, {run_id: 0})
    store.reap(10)
    assert store.raw_run(run_id)["status"] in ("lost", "failed")
    store.promote_due()
    store.history(limit=10)


def test_a_bad_record_is_set_aside_once_and_the_worker_goes_on(fresh: RedisStore) -> None:
    store = fresh
    _put(store, "j@1", {**GOOD, "scheduled_for": "abc"}, "queued")
    store.redis.rpush(store.keys.queue("default"), "j@1")
    assert store.wait_for_run("w", ["default"], 0.1) == "j@1"
    assert store.claim("w", "j@1", 10) is None
    raw = store.raw_run("j@1")
    assert raw["status"] == "failed"
    assert raw["reason"] == "unusable record: field scheduled_for is 'abc', which cannot be read"
    assert "worker" not in raw and "started_at" not in raw  # set aside before anything else
    assert store.inbox_head("w") is None
    with pytest.raises(StoreCorrupt, match="field scheduled_for is 'abc'"):
        store.get_run("j@1")
    assert store.history() == []  # left out, logged
    assert store.reap(10) == []


@FUZZ
@given(fields=records(), started=GARBAGE)
def test_lose_runs_of_and_reads_of_an_expired_run_survive_any_record(
    fresh: RedisStore, fields: dict[str, str], started: str
) -> None:
    store, run_id = fresh, "j@1"
    _put(store, run_id, {**fields, "worker": "w", "started_at": started}, "running")
    store.redis.zadd(store.keys.running, {run_id: 0})  # its lease ran out long ago
    # Read while nothing reaped it: judged when read, or left out when unreadable.
    for run in store.history(limit=10):
        assert run.status is RunStatus.LOST and run.reason
    store.history(statuses=[RunStatus.LOST])
    store.last_runs(["j"])
    store.summaries([run_id])
    counts = store.status_counts(None, None)
    assert counts["running"] + counts["lost"] == 1
    with contextlib.suppress(StoreCorrupt):
        store.get_run(run_id)
    with contextlib.suppress(StoreCorrupt):
        assert store.live_output(run_id)[0] == "lost"
    # Its worker is seen dead: lost now, whatever the fields say.
    assert store.lose_runs_of("w", "its worker died") == [run_id]
    assert store.raw_run(run_id)["status"] == "lost"
    store.promote_due()
    store.take_ended()


@FUZZ
@given(fields=records(), status=st.sampled_from(["completed", "failed", "lost", "running"]))
def test_restore_of_any_copy_writes_a_usable_record_or_nothing(
    fresh: RedisStore, fields: dict[str, str], status: str
) -> None:
    store, run_id = fresh, "j@1"
    store.redis.flushdb()
    copy: dict[str, object] = {"id": run_id, "job": "j", **fields, "status": status}
    if "scheduled_for" not in copy:
        copy["scheduled_for"] = str(to_ms(T0))
    if store.restore(copy):
        run = store.get_run(run_id)  # readable: the copy passed the script's checks
        assert run.status == status and status != "running"
        assert [r.id for r in store.take_ended()] == [run_id]
    else:
        assert store.redis.exists(store.keys.run(run_id)) == 0
        assert store.take_ended() == []


@pytest.mark.parametrize("value", ["abc", "", "nan", "1e400", "{"])
def test_a_damaged_clock_never_stops_heartbeats_reaps_or_reads(
    fresh: RedisStore, value: str
) -> None:
    store = fresh
    store.enqueue(run_id="j@1", job="j", scheduled_for=T0, queue="default")
    assert store.wait_for_run("w", ["default"], 0.1) == "j@1"
    assert store.claim("w", "j@1", 0.5) is not None
    store.redis.hset(store.keys.clock, mapping={"last": value, "resumed": value})
    assert store.heartbeat("w", 0.5, "j@1").held
    store.redis.hset(store.keys.clock, mapping={"last": value, "resumed": value})
    store.reap(0.5)
    store.redis.hset(store.keys.clock, mapping={"last": value, "resumed": value})
    store.redis.zadd(store.keys.running, {"j@1": 0})
    assert store.get_run("j@1").status in (RunStatus.RUNNING, RunStatus.LOST)


@pytest.mark.parametrize("value", ["abc", "", "nan", "{"])
def test_a_damaged_last_fire_is_overwritten_not_a_crash(fresh: RedisStore, value: str) -> None:
    store = fresh
    store.redis.hset(store.keys.last_fire, "j", value)
    done = store.enqueue(run_id="j@1", job="j", scheduled_for=T0, queue="default")
    assert (done.created, done.status) == (True, RunStatus.QUEUED)
    assert store.last_fires() == {"j": T0}
