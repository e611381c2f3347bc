"""Beat.replace against a real Redis, on an injected clock: definitions swapped between steps.

Each scenario walks the clock through a few fire instants, swaps the definitions at a chosen
moment, and reads back from Redis which fire instants were enqueued for each job.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scheduler.alerts import Alerter
from scheduler.beat import Beat, BeatSettings
from scheduler.cli_output import structured_fields
from scheduler.loader import load_jobs
from scheduler.model import JobSpec, run_id_for
from scheduler.reload import Definitions
from scheduler.store import Store
from tests.helpers import wait_for

T0 = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def spec(name: str, cron: str = "* * * * *", **kw: object) -> JobSpec:
    fields: dict[str, object] = {"cron": cron, "timeout_s": 5.0, "overlap": "allow"}
    fields.update(kw)
    return JobSpec(name=name, path="jobs/x.py", line=1, **fields)  # type: ignore[arg-type]


class Clocked:
    """A Beat on a clock the test moves."""

    def __init__(self, store: Store, specs: dict[str, JobSpec], at: datetime = T0) -> None:
        self.at = at
        self.store = store
        settings = BeatSettings(max_sleep_s=0.0001, late_after_s=3600)
        self.beat = Beat(store, specs, settings, clock=lambda: self.at)
        self.beat.start()

    def walk(self, until: datetime, step: timedelta = timedelta(seconds=10)) -> None:
        """Move the clock to `until` in steps, letting the loop fire what falls due."""
        while self.at < until:
            self.at = min(self.at + step, until)
            self.beat.step()
            self.beat.step()  # a second step sees fires that came due with the first

    def fired(self, job: str) -> list[str]:
        """The HH:MM of every enqueued fire of `job`, oldest first."""
        runs = self.store.history(job=job, limit=1000)
        return sorted(r.scheduled_for.strftime("%H:%M") for r in runs)


def test_a_changed_cron_takes_its_next_fire_from_the_new_schedule(store: Store) -> None:
    c = Clocked(store, {"a": spec("a"), "b": spec("b")})
    c.walk(T0 + 2 * MINUTE)  # 10:02:30: 10:01 and 10:02 fired
    before = dict((name, fire) for fire, name in c.beat.heap)
    c.beat.replace({"a": spec("a", "*/5 * * * *"), "b": spec("b")})
    after = dict((name, fire) for fire, name in c.beat.heap)
    assert after["a"] == datetime(2026, 11, 27, 10, 5, tzinfo=UTC)
    assert after["b"] == before["b"]  # unchanged: its heap entry is kept as it was
    c.walk(T0 + 11 * MINUTE)  # 10:11:30
    assert c.fired("a") == ["10:01", "10:02", "10:05", "10:10"]
    assert c.fired("b") == [f"10:{m:02d}" for m in range(1, 12)]


def test_a_changed_interval_and_zone(store: Store) -> None:
    c = Clocked(store, {"hourly": spec("hourly", "0 * * * *", tz="UTC")})
    c.walk(T0 + 60 * MINUTE, step=MINUTE)  # 11:00:30: 11:00 fired
    # The same cron in a zone 30 minutes off UTC fires at :30 UTC from now on.
    c.beat.replace({"hourly": spec("hourly", "0 * * * *", tz="Asia/Kolkata")})
    c.walk(T0 + 180 * MINUTE, step=MINUTE)  # 13:00:30
    assert c.fired("hourly") == ["11:00", "11:30", "12:30"]


def test_an_added_job_fires_from_now_without_catching_up(store: Store) -> None:
    c = Clocked(store, {"a": spec("a")})
    c.walk(T0 + 2 * MINUTE)
    c.beat.replace({"a": spec("a"), "new": spec("new")})
    c.walk(T0 + 4 * MINUTE)
    assert c.fired("new") == ["10:03", "10:04"]
    assert c.fired("a") == ["10:01", "10:02", "10:03", "10:04"]


def test_a_removed_job_leaves_the_heap_and_fires_no_more(store: Store) -> None:
    c = Clocked(store, {"a": spec("a"), "gone": spec("gone"), "manual": spec("manual")})
    c.walk(T0 + 2 * MINUTE)
    # "gone" is removed; "manual" stays defined but without a schedule.
    c.beat.replace({"a": spec("a"), "manual": spec("manual", cron=None)})
    assert sorted(name for _, name in c.beat.heap) == ["a"]
    assert set(c.beat.all_specs) == {"a", "manual"}
    c.walk(T0 + 5 * MINUTE)
    assert c.fired("gone") == ["10:01", "10:02"]
    assert c.fired("manual") == ["10:01", "10:02"]
    assert c.fired("a") == ["10:01", "10:02", "10:03", "10:04", "10:05"]


def test_a_renamed_job_fires_once_per_instant_under_its_new_name(store: Store) -> None:
    c = Clocked(store, {"old": spec("old")})
    c.walk(T0 + 2 * MINUTE)
    c.beat.replace({"new": spec("new")})
    c.walk(T0 + 4 * MINUTE)
    assert c.fired("old") == ["10:01", "10:02"]
    assert c.fired("new") == ["10:03", "10:04"]


def test_a_job_removed_and_put_back_never_fires_an_instant_twice(store: Store) -> None:
    c = Clocked(store, {"a": spec("a", "* * * * *")})
    c.walk(T0 + 2 * MINUTE)  # 10:02:30
    c.beat.replace({})
    c.at = T0 + 2 * MINUTE - timedelta(seconds=40)  # the clock stepped back to 10:01:50
    c.beat.replace({"a": spec("a", "* * * * *")})
    c.walk(T0 + 3 * MINUTE)
    assert c.fired("a") == ["10:01", "10:02", "10:03"]


def test_a_swap_landing_exactly_on_a_fire_instant_makes_it_once(store: Store) -> None:
    at = datetime(2026, 11, 27, 10, 2, tzinfo=UTC)
    jobs = {
        "kept": spec("kept"),  # unchanged
        "changed": spec("changed", "*/2 * * * *"),  # 10:02 is in both schedules
        "moved": spec("moved", "*/2 * * * *"),  # 10:02 is in the old one only
        "added": None,  # 10:02 is in its schedule
    }
    new = {
        "kept": spec("kept"),
        "changed": spec("changed", "0-58/2 * * * *"),
        "moved": spec("moved", "1-59/2 * * * *"),
        "added": spec("added"),
    }
    old = {name: s for name, s in jobs.items() if s is not None}
    for swap_first in (True, False):
        store.redis.flushall()
        c = Clocked(store, old, at=at - MINUTE + timedelta(seconds=1))  # 10:01:01
        c.walk(at - timedelta(seconds=1))  # 10:01:59
        c.at = at  # exactly 10:02:00.000000
        if swap_first:
            c.beat.replace(new)
            c.beat.step()
        else:
            c.beat.step()
            c.beat.replace(new)
        c.walk(at + 2 * MINUTE, step=timedelta(seconds=1))  # to 10:04:00
        order = "swap, then step" if swap_first else "step, then swap"
        assert c.fired("kept") == ["10:02", "10:03", "10:04"], order
        assert c.fired("changed") == ["10:02", "10:04"], order
        if swap_first:  # the old schedule's 10:02 was not made yet: the new one rules
            assert c.fired("moved") == ["10:03"], order
        else:
            assert c.fired("moved") == ["10:02", "10:03"], order
        # Added at its fire instant: that fire is made, whichever came first.
        assert c.fired("added") == ["10:02", "10:03", "10:04"], order


def test_other_settings_change_without_moving_the_next_fire(store: Store) -> None:
    c = Clocked(store, {"a": spec("a", timeout_s=5.0, queue="default")})
    c.walk(T0 + MINUTE)
    entry = list(c.beat.heap)
    c.beat.replace({"a": spec("a", timeout_s=9.0, queue="heavy")})
    assert c.beat.heap == entry
    c.walk(T0 + 2 * MINUTE)
    runs = sorted(store.history(job="a", limit=10), key=lambda r: r.scheduled_for)
    assert [(r.timeout_s, r.queue) for r in runs] == [(5.0, "default"), (9.0, "heavy")]


def write_jobs(folder: Path, body: str) -> None:
    (folder / "reloaded.py").write_text("from scheduler import job\n\n" + body)


def test_the_loop_swaps_in_a_changed_jobs_folder_and_publishes_it(
    store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    write_jobs(folder, '@job(every="0.2s", overlap="allow")\ndef fast() -> None: ...\n')
    definitions = Definitions(folder, load_jobs(folder), who="scheduler", every_s=0.05)
    beat = Beat(store, definitions.specs, BeatSettings(max_sleep_s=0.02), definitions=definitions)
    thread = threading.Thread(target=beat.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(store.history(job="reloaded.fast", limit=3)) >= 3, 10, "fast fires")
        published = wait_for(lambda: store.loaded().get(beat.process), 10, "set_loaded")
        assert published["digest"] == definitions.digest
        # fast is removed, slow added: the loop's next poll swaps them.
        write_jobs(folder, '@job(every="0.3s", overlap="allow")\ndef slow() -> None: ...\n')
        wait_for(lambda: store.history(job="reloaded.slow", limit=1), 15, "the new job fires")
        fast_after = len(store.history(job="reloaded.fast", limit=1000))
        wait_for(lambda: len(store.history(job="reloaded.slow", limit=3)) >= 3, 10, "3 fires")
        assert len(store.history(job="reloaded.fast", limit=1000)) == fast_after
        assert store.loaded()[beat.process]["digest"] == definitions.digest != published["digest"]
    finally:
        beat.stop()
        thread.join(5)
    slow = sorted(r.scheduled_for for r in store.history(job="reloaded.slow", limit=100))
    assert len(slow) == len(set(slow))
    assert {b - a for a, b in zip(slow, slow[1:], strict=False)} == {timedelta(seconds=0.3)}


def test_a_removed_job_is_no_longer_checked_for_lateness(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    job = JobSpec(name="slow", path="jobs/s.py", line=1, cron="* * * * *", misfire_grace_s=1.0)
    fire_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    store.enqueue(
        run_id=run_id_for("slow", fire_at), job="slow", scheduled_for=fire_at, queue="nobody"
    )
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    with Alerter({"slow": job}, global_on_late=["true"]) as alerter:
        beat = Beat(store, {"slow": job}, alerter=alerter)
        beat.replace({})
        beat._reap()
        assert alerter.specs == {}
    assert not [r for r in caplog.records if structured_fields(r).get("event") == "late"]
    with Alerter({"slow": job}, global_on_late=["true"]) as alerter:
        Beat(store, {"slow": job}, alerter=alerter)._reap()  # the job still defined: late
    assert [r for r in caplog.records if structured_fields(r).get("event") == "late"]
