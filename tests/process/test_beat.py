"""The scheduler loop against a real Redis: on time, never early, once per fire, catch-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.beat import LOG_EACH, Beat, BeatSettings
from scheduler.model import Catchup, JobSpec, RunStatus, Trigger, run_id_for
from scheduler.store import Store
from tests.helpers import wait_for


def spec(name: str = "tick", **kw: object) -> JobSpec:
    fields: dict[str, object] = {"every_s": 0.2, "timeout_s": 5.0, "overlap": "allow"}
    fields.update(kw)
    return JobSpec(name=name, path="jobs/x.py", line=1, **fields)  # type: ignore[arg-type]


@contextmanager
def running(beat: Beat) -> Iterator[Beat]:
    thread = threading.Thread(target=beat.run, daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        beat.stop()
        thread.join(5)
        assert not thread.is_alive()


def test_fires_on_time_never_early(store: Store) -> None:
    beat = Beat(store, {"tick": spec()}, BeatSettings(max_sleep_s=0.05))
    with running(beat):
        wait_for(lambda: len(store.history(job="tick", limit=10)) >= 5, 10, "5 fires")
    runs = store.history(job="tick", limit=100)
    for run in runs:
        assert run.enqueued_at is not None
        assert run.scheduled_for.timestamp() * 1000 % 200 == 0  # multiples of 0.2 s
        assert run.enqueued_at >= run.scheduled_for, "enqueued before its fire instant"
        assert run.enqueued_at - run.scheduled_for < timedelta(seconds=1)
        assert run.id == run_id_for("tick", run.scheduled_for)
        assert run.trigger is Trigger.SCHEDULE


def test_two_schedulers_enqueue_each_fire_once(redis_url: str) -> None:
    stores = [Store(redis_url), Store(redis_url)]
    beats = [Beat(s, {"tick": spec(every_s=0.1)}, BeatSettings(max_sleep_s=0.02)) for s in stores]
    with running(beats[0]), running(beats[1]):
        wait_for(lambda: len(stores[0].history(job="tick", limit=30)) >= 20, 15, "20 fires")
    runs = stores[0].history(job="tick", limit=1000)
    instants = sorted(r.scheduled_for for r in runs)
    assert len(instants) == len(set(instants))
    # No gaps: consecutive fires are exactly one interval apart.
    gaps = {b - a for a, b in zip(instants, instants[1:], strict=False)}
    assert gaps == {timedelta(seconds=0.1)}
    queued = stores[0].redis.lrange(stores[0].keys.queue("default"), 0, -1)
    assert len(queued) == len(set(queued)) == len(runs)
    for s in stores:
        s.close()


def test_restart_does_not_fire_twice(store: Store) -> None:
    first = Beat(store, {"tick": spec()}, BeatSettings(max_sleep_s=0.05))
    with running(first):
        wait_for(lambda: first.fired >= 3, 10, "3 fires")
    second = Beat(store, {"tick": spec()}, BeatSettings(max_sleep_s=0.05))
    with running(second):
        wait_for(lambda: second.fired >= 3, 10, "3 more fires")
    runs = store.history(job="tick", limit=1000)
    assert len(runs) == len({r.id for r in runs})
    assert len(runs) >= 6


NOW = datetime(2026, 11, 27, 10, 3, 30, tzinfo=UTC)
LAST = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "queued", "missed"),
    [
        (Catchup.NONE, [], ["10:01", "10:02", "10:03"]),
        (Catchup.LATEST, ["10:03"], ["10:01", "10:02"]),
        (Catchup.ALL, ["10:01", "10:02", "10:03"], []),
    ],
)
def test_catch_up_after_downtime(
    store: Store, policy: Catchup, queued: list[str], missed: list[str]
) -> None:
    job = spec("minutely", every_s=None, cron="* * * * *", catchup=policy)
    store.enqueue(
        run_id=run_id_for("minutely", LAST),
        job="minutely",
        scheduled_for=LAST,
        queue="default",
        outcome="missed",
    )
    beat = Beat(store, {"minutely": job}, clock=lambda: NOW)
    beat.start()
    runs = [r for r in store.history(job="minutely", limit=10) if r.scheduled_for > LAST]

    def hhmm(status: RunStatus) -> list[str]:
        return sorted(r.scheduled_for.strftime("%H:%M") for r in runs if r.status is status)

    assert hhmm(RunStatus.QUEUED) == queued
    assert hhmm(RunStatus.MISSED) == missed
    assert all(r.trigger is Trigger.CATCHUP for r in runs if r.status is RunStatus.QUEUED)
    assert beat.heap[0][0] == datetime(2026, 11, 27, 10, 4, tzinfo=UTC)


def test_catch_up_all_is_capped(store: Store) -> None:
    job = spec("often", every_s=1.0, catchup=Catchup.ALL, catchup_limit=5)
    start = NOW - timedelta(seconds=10_000)
    store.enqueue(
        run_id=run_id_for("often", start),
        job="often",
        scheduled_for=start,
        queue="default",
        outcome="missed",
    )
    beat = Beat(store, {"often": job}, clock=lambda: NOW)
    beat.start()
    assert store.queue_depth("default") == 5
    assert (
        len(store.history(job="often", statuses=[RunStatus.MISSED], limit=20_000)) == 10_000 - 5 + 1
    )


def test_a_clock_jumping_back_never_fires_again(store: Store) -> None:
    now = [datetime(2026, 11, 27, 10, 0, 0, 500_000, tzinfo=UTC)]
    beat = Beat(
        store, {"tick": spec(every_s=1.0)}, BeatSettings(max_sleep_s=0.001), clock=lambda: now[0]
    )
    beat.start()
    for _ in range(3):
        now[0] += timedelta(seconds=1)
        beat.step()
    fired = {r.scheduled_for for r in store.history(job="tick", limit=10)}
    assert len(fired) == 3
    now[0] -= timedelta(seconds=30)  # NTP steps the clock back
    restarted = Beat(
        store, {"tick": spec(every_s=1.0)}, BeatSettings(max_sleep_s=0.001), clock=lambda: now[0]
    )
    restarted.start()
    for _ in range(40):
        now[0] += timedelta(seconds=1)
        restarted.step()
    runs = store.history(job="tick", limit=100)
    assert len(runs) == len({r.id for r in runs})
    assert all(r.enqueued_at is not None for r in runs)
    # Nothing fired while the clock re-lived :33..:03; from :04 on it fires again, once each.
    instants = sorted(r.scheduled_for for r in runs)
    assert set(instants) >= fired
    assert len(instants) == 13
    assert {b - a for a, b in zip(instants, instants[1:], strict=False)} == {timedelta(seconds=1)}


def test_first_fires_of_one_schedule_follow_each_zone_and_last_fire(store: Store) -> None:
    # Jobs on one schedule share the work of their first fire; zones and last fires still count.
    ahead = NOW + timedelta(hours=30)  # fired before the clock was stepped back
    store.enqueue(
        run_id=run_id_for("ahead", ahead),
        job="ahead",
        scheduled_for=ahead,
        queue="default",
        outcome="missed",
    )
    nightly = {"every_s": None, "cron": "30 2 * * *"}
    jobs = {
        "utc": spec("utc", **nightly),
        "utc-too": spec("utc-too", **nightly),
        "berlin": spec("berlin", tz="Europe/Berlin", **nightly),
        "tokyo": spec("tokyo", tz="Asia/Tokyo", **nightly),
        "ahead": spec("ahead", **nightly),
        "hourly": spec("hourly", every_s=3600.0),
    }
    beat = Beat(store, jobs, clock=lambda: NOW)
    beat.start()
    assert {name: fire for fire, name in beat.heap} == {
        "utc": datetime(2026, 11, 28, 2, 30, tzinfo=UTC),
        "utc-too": datetime(2026, 11, 28, 2, 30, tzinfo=UTC),
        "berlin": datetime(2026, 11, 28, 1, 30, tzinfo=UTC),
        "tokyo": datetime(2026, 11, 27, 17, 30, tzinfo=UTC),
        "ahead": datetime(2026, 11, 29, 2, 30, tzinfo=UTC),
        "hourly": datetime(2026, 11, 27, 11, 0, tzinfo=UTC),
    }


def test_housekeeping_waits_for_a_gap_between_fires(store: Store) -> None:
    # Reaping and retention take tens of ms with many jobs: they must never run just before
    # a fire and delay it.
    gaps: list[float] = []

    class Recording(Beat):
        def _maintain(self) -> None:
            gaps.append((self.heap[0][0] - self.clock()).total_seconds())
            super()._maintain()

    settings = BeatSettings(max_sleep_s=0.05, maintenance_every_s=0.01, reap_every_s=2.0)
    beat = Recording(store, {"tick": spec(every_s=1.0)}, settings)
    with running(beat):
        wait_for(lambda: len(store.history(job="tick", limit=10)) >= 3, 10, "3 fires")
    assert len(gaps) >= 10
    assert min(gaps) > 0.25, f"housekeeping ran {min(gaps):.3f} s before a fire"


def burst(store: Store, n: int, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Fire n jobs due at one instant (10:00:00, stepped 5 ms after it); return the log."""
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    now = [at - timedelta(seconds=1)]
    policies = ["skip", "allow", "queue", "replace"]
    specs = {
        f"b{i}": spec(f"b{i}", every_s=60.0, overlap=policies[i % 4], timeout_s=30.0 + i % 3)
        for i in range(n)
    }
    store.pause("b1")
    beat = Beat(store, specs, clock=lambda: now[0])
    beat.start()
    now[0] = at + timedelta(milliseconds=5)
    caplog.set_level(logging.DEBUG, logger="sched.scheduler")
    beat.step()
    assert beat.fired == n
    assert beat.heap[0][0] == at + timedelta(minutes=1)
    runs = {r.job: r for r in store.history(since=at, limit=n + 1)}
    assert len(runs) == n and runs["b1"].status is RunStatus.SKIPPED
    assert all(runs[f"b{i}"].timeout_s == 30.0 + i % 3 for i in range(n))
    return [r for r in caplog.records if r.name == "sched.scheduler"]


def test_a_few_fires_due_together_log_a_line_each(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    records = burst(store, LOG_EACH, caplog)
    lines = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert len(lines) == LOG_EACH
    assert lines[0] == "fire b0 for 2026-11-27T10:00:00Z: run b0@20261127T100000Z queued (+5.0 ms)"
    assert lines[1].startswith("fire b1 for 2026-11-27T10:00:00Z: run b1@20261127T100000Z skipped")


def test_a_burst_of_fires_logs_one_summary_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    n = LOG_EACH + 1
    records = burst(store, n, caplog)
    lines = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert lines == [
        f"enqueued {n} runs due 2026-11-27T10:00:00Z: {n - 1} queued, 1 skipped (+5.0 to +5.0 ms)"
    ]
    each = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    assert len(each) == n and each[0].startswith("fire b0 for 2026-11-27T10:00:00Z")


def test_a_burst_another_scheduler_enqueued_is_told_apart(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    now = [at - timedelta(seconds=1)]
    n = LOG_EACH + 1
    specs = {f"b{i}": spec(f"b{i}", every_s=60.0) for i in range(n)}
    first, second = (Beat(store, specs, clock=lambda: now[0]) for _ in range(2))
    first.start()
    second.start()
    now[0] = at + timedelta(milliseconds=5)
    first.step()
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    second.step()
    assert (first.fired, second.fired) == (n, 0)
    assert [r.getMessage() for r in caplog.records if r.name == "sched.scheduler"] == [
        f"enqueued 0 runs due 2026-11-27T10:00:00Z; {n} fires were already enqueued"
    ]
