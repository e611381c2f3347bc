"""History read a page at a time while fires keep adding runs: each run once, none skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.model import run_id_for
from scheduler.store import Fire, RedisStore, Store, fire_settings

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
SETTINGS = fire_settings("default", overlap="allow", timeout_s=30.0)


def _fire(store: Store, job: str, at: datetime) -> str:
    run_id = run_id_for(job, at)
    store.enqueue_many([Fire(run_id, job, at, SETTINGS)])
    return run_id


def test_runs_added_between_two_pages_are_not_read_twice(store: Store) -> None:
    assert isinstance(store, RedisStore)
    ids = [_fire(store, "j", T0 + timedelta(seconds=i)) for i in range(250)]
    read = store._scored_ids(store.keys.by_job("j"), "+inf", "-inf")
    first = [next(read)[1] for _ in range(100)]  # the first page, newest first
    newer = [_fire(store, "j", T0 + timedelta(hours=1, seconds=i)) for i in range(3)]
    rest = [run_id for _, run_id in read]
    seen = first + rest
    assert len(seen) == len(set(seen)), "a run read twice"
    assert set(seen) == set(ids)  # the newer runs are above the read's start: not in it
    assert not set(newer) & set(seen)


def test_runs_sharing_a_score_across_pages_are_each_read_once(store: Store) -> None:
    assert isinstance(store, RedisStore)
    at = T0 + timedelta(minutes=5)
    ids = [_fire(store, f"job{i}", at) for i in range(350)]  # one instant: one score
    ids += [_fire(store, "other", T0 + timedelta(seconds=i)) for i in range(20)]
    seen = [run_id for _, run_id in store._scored_ids(store.keys.all_runs, "+inf", "-inf")]
    assert len(seen) == len(set(seen)) == len(ids)
    assert set(seen) == set(ids)


def test_history_lists_a_run_once_while_runs_are_added(store: Store) -> None:
    ids = [_fire(store, "j", T0 + timedelta(seconds=i)) for i in range(300)]
    runs = store.iter_history(job="j", limit=None)
    first = [next(runs).id for _ in range(150)]
    _fire(store, "j", T0 + timedelta(hours=2))
    rest = [run.id for run in runs]
    assert len(first + rest) == len(set(first + rest)) == 300
    assert set(first + rest) == set(ids)
