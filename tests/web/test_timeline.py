"""The job page's fires against runs: gaps and duplicates flagged, DST and down time marked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from scheduler import beat
from scheduler.model import JobSpec, RunStatus, run_id_for
from scheduler.store import RunSummary, Store
from scheduler.web import timeline
from tests.web.conftest import record

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _every_minute(tz: str = "UTC") -> JobSpec:
    return JobSpec(name="j", path="-", line=1, timeout_s=10, cron="* * * * *", tz=tz)


def _summary(at: datetime, status: str = "completed", **kw: object) -> RunSummary:
    ms = int(at.timestamp() * 1000)
    fields: dict[str, object] = {
        "id": run_id_for("j", at),
        "status": RunStatus(status),
        "scheduled_ms": ms,
        "enqueued_ms": ms,
        "started_ms": ms + 5 if status == "completed" else None,
        "finished_ms": ms + 1005 if status == "completed" else None,
        "duration_s": 1.0 if status == "completed" else None,
        "trigger": "schedule",
        "attempt": 1,
        "reason": None,
    }
    fields.update(kw)
    return RunSummary(**fields)  # type: ignore[arg-type]


def _build(spec: JobSpec, runs: list[RunSummary], minutes: int = 10) -> timeline.Timeline:
    since, until = T0, T0 + timedelta(minutes=minutes)
    fires = timeline.expected_fires(spec, since, until, 1000)
    return timeline.build(
        spec,
        fires,
        runs,
        since=since,
        until=until,
        now=until + timedelta(hours=1),
        oldest_ms=min(r.scheduled_ms for r in runs) if runs else None,
        last_fire_ms=max(r.scheduled_ms for r in runs) if runs else None,
    )


def test_fires_come_from_the_schedulers_function() -> None:
    spec = _every_minute("Europe/Berlin")
    fires = timeline.expected_fires(spec, T0, T0 + timedelta(hours=3), 1000)
    stepped = [beat.next_fire(spec, T0 - timedelta(microseconds=1))]
    while (nxt := beat.next_fire(spec, stepped[-1])) <= T0 + timedelta(hours=3):
        stepped.append(nxt)
    assert fires == stepped and len(fires) == 181


def test_a_fire_without_any_record_is_a_gap() -> None:
    spec = _every_minute()
    runs = [_summary(T0 + timedelta(minutes=m)) for m in range(11) if m != 4]
    tl = _build(spec, runs)
    assert [f.at_ms for f in tl.gaps] == [int((T0 + timedelta(minutes=4)).timestamp() * 1000)]
    assert tl.down == [(tl.gaps[0].at_ms, tl.gaps[0].at_ms)]
    assert all(f.state == "ran" for f in tl.fires if f.state != "gap")


def test_missed_and_skipped_fires_are_records_not_gaps() -> None:
    spec = _every_minute()
    runs = [_summary(T0 + timedelta(minutes=m)) for m in range(11)]
    runs[3] = _summary(T0 + timedelta(minutes=3), "missed")
    runs[5] = _summary(T0 + timedelta(minutes=5), "skipped", reason="paused")
    tl = _build(spec, runs)
    assert tl.gaps == [] and tl.counts == {"completed": 9, "missed": 1, "skipped": 1}
    assert len(tl.down) == 1  # the missed fire: no scheduler ran it


def test_two_first_attempts_of_one_fire_are_a_duplicate() -> None:
    spec = _every_minute()
    runs = [_summary(T0 + timedelta(minutes=m)) for m in range(11)]
    runs.append(_summary(T0 + timedelta(minutes=2), id="j@copy"))
    runs.append(_summary(T0 + timedelta(minutes=6), id="j@x#2", attempt=2, trigger="retry"))
    tl = _build(spec, runs)
    assert [len(f.runs) for f in tl.duplicates] == [2]
    assert tl.fires[6].state == "ran"  # a retry is the same fire's next attempt


def test_fires_before_the_oldest_kept_run_are_not_gaps() -> None:
    spec = _every_minute()
    tl = _build(spec, [_summary(T0 + timedelta(minutes=m)) for m in range(6, 11)])
    assert tl.gaps == []
    assert [f.state for f in tl.fires[:6]] == ["before"] * 6


def test_a_run_at_an_instant_the_schedule_does_not_give_is_flagged() -> None:
    spec = _every_minute()
    runs = [_summary(T0 + timedelta(minutes=m)) for m in range(11)]
    runs.append(_summary(T0 + timedelta(minutes=2, seconds=30), id="j@odd"))
    runs.append(_summary(T0 + timedelta(minutes=7, seconds=9), id="j@manual-1", trigger="manual"))
    tl = _build(spec, runs)
    assert [r.id for r in tl.unexpected] == ["j@odd"]
    assert [r.id for r in tl.manual] == ["j@manual-1"]


def test_dst_transitions_are_found_to_the_second() -> None:
    # Europe/Berlin, 2026-03-29 01:00Z: +01:00 -> +02:00; 2026-10-25 01:00Z: back.
    spring = timeline.transitions(
        "Europe/Berlin", datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)
    )
    assert [(t.at_ms, t.before, t.after) for t in spring] == [
        (int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp() * 1000), "UTC+01:00", "UTC+02:00")
    ]
    autumn = timeline.transitions(
        "America/New_York", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert [(t.before, t.after) for t in autumn] == [("UTC-04:00", "UTC-05:00")]
    assert timeline.transitions("UTC", T0, T0 + timedelta(days=400)) == []


def test_job_page_flags_a_gap_loudly(client: TestClient, store: Store) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    last = now - timedelta(minutes=now.minute % 5) - timedelta(minutes=5)
    fires = [last - timedelta(minutes=5 * i) for i in range(6)]
    for i, at in enumerate(fires):
        if i != 2:
            record(store, run_id_for("demo.tick", at), "demo.tick", at, "completed")
    store.redis.hset(store.keys.last_fire, "demo.tick", int(fires[0].timestamp() * 1000))
    window = {"from": fires[-1].isoformat(), "to": fires[0].isoformat()}
    page = client.get("/jobs/demo.tick", params=window)
    assert page.status_code == 200
    assert "6 fires expected" in page.text
    assert 'role="alert"' in page.text
    assert "1 fire with no record at all" in page.text
    assert 'class="flag-gap"' in page.text


def test_job_page_marks_dst(client: TestClient) -> None:
    page = client.get("/jobs/demo.nightly?from=2026-10-30T00:00Z&to=2026-11-04T00:00Z")
    assert page.status_code == 200, page.text
    assert "UTC-04:00 → UTC-05:00" in page.text and 'class="dst"' in page.text


def test_job_page_rejects_a_bad_window(client: TestClient) -> None:
    page = client.get("/jobs/demo.tick?window=forever")
    assert page.status_code == 400 and "expected auto or one of" in page.text
    assert client.get("/jobs/nope").status_code == 404


def test_the_default_window_fits_a_young_history(store: Store) -> None:
    from scheduler.web.views import auto_window

    spec = JobSpec(name="j", path="-", line=1, timeout_s=10, every_s=2.0)
    now = datetime.now(UTC)
    assert auto_window(store, spec, now) == now - timedelta(minutes=5)  # no history: 40 fires
    record(store, "j@1", "j", now - timedelta(minutes=20), "completed")
    since = auto_window(store, spec, now)
    assert now - timedelta(minutes=22) < since < now - timedelta(minutes=20)
    record(store, "j@0", "j", now - timedelta(days=3), "completed")
    assert auto_window(store, spec, now) == now - timedelta(days=1)
