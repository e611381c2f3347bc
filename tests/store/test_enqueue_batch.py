"""The enqueue script given many fires at once: each judged as if enqueued alone, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.model import RunStatus, run_id_for
from scheduler.policy import RunPolicy
from scheduler.store import ENQUEUE_BATCH, Fire, Store, fire_settings

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)
POLICIES = ("skip", "allow", "queue", "replace")


def fire(job: str, at: datetime, overlap: str = "skip", **kw: object) -> Fire:
    settings = fire_settings("default", overlap=overlap, timeout_s=30.0, **kw)  # type: ignore[arg-type]
    return Fire(run_id_for(job, at), job, at, settings)


def outcomes(store: Store, fires: list[Fire]) -> list[tuple[bool, str]]:
    """(created, status) of each fire; `stale` for one not after its job's last fire."""
    return [(r.created, r.status or "stale") for r in store.enqueue_many(fires)]


def script_calls(store: Store) -> int:
    stats = store.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def state(store: Store) -> dict[str, object]:
    """Every key of the namespace and its value, with the times Redis stamps left out."""
    out: dict[str, object] = {}
    for key in sorted(store.redis.keys(f"{store.keys.prefix}*")):
        name, kind = key[len(store.keys.prefix) :], store.redis.type(key)
        if kind == "hash":
            fields = store.redis.hgetall(key)
            for stamp in ("enqueued_at", "finished_at", "started_at"):
                fields.pop(stamp, None)
            out[name] = fields
        elif kind == "set":
            out[name] = sorted(store.redis.smembers(key))
        elif kind == "zset":
            out[name] = store.redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[name] = store.redis.lrange(key, 0, -1)
        else:
            out[name] = store.redis.get(key)
    return out


def test_a_batch_applies_every_overlap_policy(store: Store) -> None:
    store.enqueue_many([fire("running", T0, "replace")])
    run_id = store.wait_for_run("w", ["default"], 0.1)
    assert run_id is not None and store.claim("w", run_id, 10) is not None
    store.enqueue_many([fire(p, T0, p) for p in POLICIES])
    before = script_calls(store)

    batch = [fire(p, T1, p) for p in POLICIES] + [fire("running", T1, "replace"), fire("new", T1)]
    assert outcomes(store, batch) == [
        (True, "skipped"),
        (True, "queued"),
        (True, "skipped"),
        (True, "queued"),
        (True, "queued"),
        (True, "queued"),
    ]
    assert script_calls(store) == before + 1
    old = {p: store.get_run(run_id_for(p, T0)) for p in POLICIES}
    skip, queue = store.get_run(run_id_for("skip", T1)), store.get_run(run_id_for("queue", T1))
    assert (
        skip.reason == f"overlap=skip: run {old['skip'].id} of this job is still queued or running"
    )
    assert queue.reason == f"overlap=queue: run {old['queue'].id} is already waiting"
    assert old["replace"].status is RunStatus.SKIPPED
    assert old["replace"].reason == f"replaced by {run_id_for('replace', T1)}"
    assert store.raw_run(run_id)["kill_requested"] == "replaced"
    queued = store.redis.lrange(store.keys.queue("default"), 0, -1)
    assert queued == [
        old["skip"].id,
        old["allow"].id,
        old["queue"].id,
        run_id_for("allow", T1),
        run_id_for("replace", T1),
        run_id_for("running", T1),
        run_id_for("new", T1),
    ]


def test_a_paused_job_is_skipped_and_the_others_queued(store: Store) -> None:
    store.pause("b")
    assert outcomes(store, [fire("a", T0), fire("b", T0), fire("c", T0)]) == [
        (True, "queued"),
        (True, "skipped"),
        (True, "queued"),
    ]
    assert store.get_run(run_id_for("b", T0)).reason == "paused"
    assert store.last_fires()["b"] == T0  # a paused fire still counts as fired
    assert store.queue_depth("default") == 2


def test_a_fire_not_after_the_jobs_last_fire_is_refused(store: Store) -> None:
    store.enqueue_many([fire("a", T1)])
    result = outcomes(store, [fire("a", T0), fire("a", T1), fire("b", T0), fire("a", T2, "allow")])
    assert result == [(False, "stale"), (False, "queued"), (True, "queued"), (True, "queued")]
    assert store.redis.exists(store.keys.run(run_id_for("a", T0))) == 0
    assert store.last_fires() == {"a": T2, "b": T0}


def test_duplicates_inside_one_batch_are_judged_in_order(store: Store) -> None:
    batch = [
        fire("s", T0),
        fire("s", T0),  # the same run id: created once
        fire("s", T1),  # skip: the first is still queued
        fire("s", T0 - timedelta(minutes=1)),  # before the last fire: refused
        fire("q", T0, "queue"),
        fire("q", T1, "queue"),  # the job's active runs changed inside the batch
        fire("r", T0, "replace"),
        fire("r", T1, "replace"),
        fire("r", T2, "replace"),
    ]
    assert outcomes(store, batch) == [
        (True, "queued"),
        (False, "queued"),
        (True, "skipped"),
        (False, "stale"),
        (True, "queued"),
        (True, "skipped"),
        (True, "queued"),
        (True, "queued"),
        (True, "queued"),
    ]
    assert store.redis.lrange(store.keys.queue("default"), 0, -1) == [
        run_id_for("s", T0),
        run_id_for("q", T0),
        run_id_for("r", T2),
    ]
    assert store.get_run(run_id_for("r", T1)).reason == f"replaced by {run_id_for('r', T2)}"


def test_a_batch_leaves_redis_as_the_same_fires_enqueued_one_by_one(redis_url: str) -> None:
    one, many = Store(redis_url, namespace="one"), Store(redis_url, namespace="many")
    for s in (one, many):
        s.pause("p")
        s.enqueue_many([fire("q", T0, "queue"), fire("r", T0, "replace")])
    batch = [
        fire("r", T1, "replace"),
        fire("q", T1, "queue"),
        fire("p", T1),
        fire("m", T0, "allow", outcome=RunStatus.MISSED, reason="no scheduler was running"),
        fire("m", T1, "allow", trigger="catchup", policy=RunPolicy(retries=2, misfire_grace_s=1.5)),
        fire("x", T1, "allow", outcome=RunStatus.SKIPPED, reason="why"),
        fire("man", T0, "allow", trigger="manual", scheduled=False),
        fire("man", T0 - timedelta(hours=1), "allow", trigger="manual", scheduled=False),
        fire("r", T2, "replace"),
        fire("q", T0, "queue"),
        fire("s", T1),
        fire("s", T2),
    ]
    singly = [one.enqueue_many([f])[0] for f in batch]
    assert many.enqueue_many(batch) == singly
    assert state(many) == state(one)
    one.close()
    many.close()


def test_a_full_batch_is_one_script_call(store: Store) -> None:
    n = ENQUEUE_BATCH
    jobs = [(f"job{i}", POLICIES[i % 4]) for i in range(n)]
    assert all(r.status == "queued" for r in store.enqueue_many([fire(j, T0, p) for j, p in jobs]))
    before = script_calls(store)

    results = store.enqueue_many([fire(j, T1, p) for j, p in jobs])
    assert script_calls(store) == before + 1
    by_policy: dict[str, set[str]] = {p: set() for p in POLICIES}
    for (_, policy), result in zip(jobs, results, strict=True):
        assert result.created
        by_policy[policy].add(result.status)
    assert by_policy == {
        "skip": {"skipped"},
        "allow": {"queued"},
        "queue": {"skipped"},
        "replace": {"queued"},
    }
    # Queued: every first fire but those replaced, and the second fires of allow and replace.
    assert store.queue_depth("default") == n // 4 * 3 + n // 4 * 2
    assert store.redis.zcard(store.keys.all_runs) == 2 * n
    assert store.redis.zcard(store.keys.by_status(RunStatus.SKIPPED)) == n // 4 * 3


def test_more_fires_than_a_batch_take_several_calls(store: Store) -> None:
    n = 2 * ENQUEUE_BATCH + 1
    store.enqueue_many([fire("first", T0)])  # the script is loaded by now
    before = script_calls(store)
    results = store.enqueue_many([fire(f"job{i}", T0, "allow") for i in range(n)])
    assert script_calls(store) == before + 3
    assert [r.run_id for r in results] == [run_id_for(f"job{i}", T0) for i in range(n)]
    assert store.queue_depth("default") == n + 1
    missed = [
        (run_id_for("m", T0 + timedelta(seconds=i)), T0 + timedelta(seconds=i)) for i in range(n)
    ]
    assert store.record_missed("m", missed, queue="default", timeout_s=None, reason="down") == n
    assert store.redis.zcard(store.keys.by_status(RunStatus.MISSED)) == n


def test_fires_that_look_at_active_runs_are_held_after_redis_was_found_empty(
    store: Store,
) -> None:
    fires = [fire(p, T0, p) for p in POLICIES]
    results = store.enqueue_many(fires, hold_after_empty_s=2.0)  # no epoch mark: emptied
    held = {r.run_id.split("@")[0]: r.held_s for r in results}
    assert {p for p, s in held.items() if s is not None} == {"skip", "queue", "replace"}
    assert all(0 < (s or 0) <= 2.0 for p, s in held.items() if p != "allow")
    assert [r.status for r in results if r.held_s is None] == [RunStatus.QUEUED]
    assert store.last_fires() == {"allow": T0}  # nothing written for a held fire
    # The mark is set now; another caller (a second scheduler) is held until the end too.
    again = store.enqueue_many([fire("skip", T0)], hold_after_empty_s=2.0)[0]
    assert again.held_s is not None and again.held_s <= held["skip"]  # type: ignore[operator]
    store.redis.delete(store.keys.hold)  # the hold is over
    assert outcomes(store, fires[:1]) == [(True, "queued")]


def test_no_hold_without_the_callers_asking_or_with_the_mark_in_place(store: Store) -> None:
    assert outcomes(store, [fire("a", T0)]) == [(True, "queued")]  # a manual caller: hold 0
    assert not store.redis.exists(store.keys.epoch)  # ... which sets no mark
    assert store.claim_epoch()  # a new Redis: marked, nothing held
    assert outcomes(store, [fire("b", T0)]) == [(True, "queued")]
    assert store.enqueue_many([fire("c", T0)], hold_after_empty_s=2.0)[0].held_s is None
    store.redis.delete(store.keys.epoch)
    assert store.claim_epoch(hold_s=2.0)  # the reaper's check found it emptied: a hold
    assert store.enqueue_many([fire("d", T0)], hold_after_empty_s=2.0)[0].held_s is not None
    assert not store.claim_epoch(hold_s=2.0)  # marked already
