"""sched simulate's engine: fires, down windows, overlap, workers, misfire grace, retries, DST.

Instants are UTC ('...Z'); comments give the Berlin wall time. Berlin springs forward on
2027-03-28 at 01:00Z (02:00 CET -> 03:00 CEST).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.model import Catchup, JobSpec, Overlap, RunStatus, Trigger
from scheduler.simulate import (
    SimRun,
    Simulation,
    Window,
    describe,
    describe_fast,
    simulate,
    simulate_fast,
    write_json,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def spec(name: str, cron: str, **kw: object) -> JobSpec:
    return JobSpec(name=name, path="jobs/x.py", line=1, cron=cron, **kw)  # type: ignore[arg-type]


def table(runs: list[SimRun]) -> list[tuple[str, str, str, str]]:
    """(scheduled_for, status, trigger, reason) per run."""
    return [
        (r.as_json()["scheduled_for"], str(r.status), str(r.trigger), r.reason)  # type: ignore[misc]
        for r in runs
    ]


def test_a_year_of_a_per_minute_job_completes_every_fire() -> None:
    job = spec("minutely", "* * * * *", tz="Europe/Berlin")
    runs = simulate(Simulation([job], at("2027-01-01T00:00Z"), at("2028-01-01T00:00Z")))
    assert len(runs) == 525_600
    assert Counter(r.status for r in runs) == {RunStatus.COMPLETED: 525_600}
    assert all(r.started_us == r.scheduled_us for r in runs[::997])


def test_the_dst_weekend_down_from_01_to_04_follows_each_catch_up_policy() -> None:
    """Down from 01:00 CET to 04:00 CEST on the spring-forward night."""
    jobs = [
        spec("latest", "0 2 * * *", tz="Europe/Berlin", catchup=Catchup.LATEST),
        spec("none", "0 2 * * *", tz="Europe/Berlin", catchup=Catchup.NONE),
        spec("all", "*/30 * * * *", tz="Europe/Berlin", catchup=Catchup.ALL, catchup_limit=2),
    ]
    down = [Window(at("2027-03-28T01:00+01:00"), at("2027-03-28T04:00+02:00"))]
    runs = simulate(Simulation(jobs, at("2027-03-28T00:00Z"), at("2027-03-28T03:00Z"), down))
    by_job = {job.name: table([r for r in runs if r.job == job.name]) for job in jobs}
    # 02:00 does not exist: the fixed-time fire is at 03:00 CEST (01:00Z), inside the window
    assert by_job["latest"] == [("2027-03-28T01:00:00Z", "completed", "catchup", "")]
    assert by_job["none"] == [
        ("2027-03-28T01:00:00Z", "missed", "schedule", "no scheduler was running (catchup=none)")
    ]
    missed = "no scheduler was running (catchup=all)"
    assert by_job["all"] == [
        ("2027-03-28T00:30:00Z", "missed", "schedule", missed),  # 01:30 CET
        ("2027-03-28T01:00:00Z", "missed", "schedule", missed),  # 03:00 CEST: 02:xx do not exist
        ("2027-03-28T01:30:00Z", "completed", "catchup", ""),  # 03:30 CEST
        ("2027-03-28T02:00:00Z", "completed", "catchup", ""),  # 04:00 CEST, the restart itself
        ("2027-03-28T02:30:00Z", "completed", "schedule", ""),  # 04:30 CEST
        ("2027-03-28T03:00:00Z", "completed", "schedule", ""),
    ]
    (latest,) = [r for r in runs if r.job == "latest"]
    assert latest.started_us == int(at("2027-03-28T02:00Z").timestamp()) * 1_000_000
    assert latest.dst == "2027-03-28 02:00 does not exist; runs at 03:00 CEST"


def test_overlap_policies_given_a_duration() -> None:
    jobs = [
        spec(policy, "*/5 * * * *", overlap=Overlap(policy))
        for policy in ("skip", "allow", "queue", "replace")
    ]
    sim = Simulation(
        jobs,
        at("2027-01-01T00:00Z"),
        at("2027-01-01T00:10Z"),
        duration_s={job.name: 420 for job in jobs},  # 7 minutes, so each fire meets the last
        workers=10,
    )
    runs = simulate(sim)
    statuses = {job.name: [str(r.status) for r in runs if r.job == job.name] for job in jobs}
    assert statuses == {
        "skip": ["completed", "skipped"],
        "allow": ["completed", "completed"],
        "queue": ["completed", "completed"],  # nothing is waiting while a worker is free
        "replace": ["killed", "completed"],
    }
    (killed,) = [r for r in runs if r.status is RunStatus.KILLED]
    assert (killed.reason, killed.finished_us) == ("replaced", killed.scheduled_us + 300_000_000)


def test_one_worker_makes_overlap_queue_skip_a_second_waiting_run() -> None:
    job = spec("q", "* * * * *", overlap=Overlap.QUEUE)
    other = spec("busy", "* * * * *", overlap=Overlap.ALLOW)
    sim = Simulation(
        [other, job],
        at("2027-01-01T00:00Z"),
        at("2027-01-01T00:03Z"),
        duration_s={"busy": 150, "q": 1},
        workers=1,
    )
    mine = [r for r in simulate(sim) if r.job == "q"]
    # busy's first run holds the only worker until 00:03:30; q's first run waits meanwhile
    assert [str(r.status) for r in mine] == ["completed", "skipped", "skipped"]
    assert mine[1].reason == f"overlap=queue: run {mine[0].id} is already waiting"
    assert mine[0].started_us == int(at("2027-01-01T00:03:30Z").timestamp()) * 1_000_000


def test_a_catch_up_run_that_starts_past_its_misfire_grace_is_missed() -> None:
    job = spec("graced", "0 * * * *", misfire_grace_s=600.0)
    down = [Window(at("2027-01-01T00:30Z"), at("2027-01-01T01:20Z"))]
    runs = simulate(Simulation([job], at("2027-01-01T00:30Z"), at("2027-01-01T02:00Z"), down))
    assert [(str(r.status), str(r.trigger)) for r in runs] == [
        ("missed", "catchup"),
        ("completed", "schedule"),
    ]
    assert runs[0].reason.startswith("not started within misfire_grace 600.0s of its fire time")


def test_failing_runs_retry_with_the_workers_backoff() -> None:
    job = spec("flaky", "0 * * * *", retries=2, retry_backoff_s=60.0)
    sim = Simulation(
        [job], at("2027-01-01T00:30Z"), at("2027-01-01T01:00Z"), failing=frozenset({"flaky"})
    )
    runs = simulate(sim)
    assert [(r.attempt, str(r.trigger), str(r.status)) for r in runs] == [
        (1, "schedule", "failed"),
        (2, "retry", "failed"),
        (3, "retry", "failed"),
    ]
    first, second, third = (r.started_us or 0 for r in runs)
    assert 30e6 <= second - first <= 60e6  # 60 s backoff, half of it jitter
    assert 60e6 <= third - second <= 120e6  # doubled


def test_describe_folds_plain_fires_and_counts_statuses() -> None:
    job = spec("nightly", "0 2 * * *", tz="Europe/Berlin")
    runs = simulate(Simulation([job], at("2027-03-20T00:00Z"), at("2027-03-31T00:00Z")))
    lines = describe(runs, [job])
    assert lines[0] == "nightly  0 2 * * *  Europe/Berlin  overlap=skip catchup=latest"
    assert (
        lines[1]
        == "  2027-03-20 02:00 CET .. 2027-03-27 02:00 CET  8 fires, each completed on time"
    )
    assert lines[2] == (
        "  2027-03-28 03:00 CEST  completed  ended 2027-03-28 03:00 CEST"
        "  [DST: 2027-03-28 02:00 does not exist; runs at 03:00 CEST]"
    )
    assert (
        lines[3]
        == "  2027-03-29 02:00 CEST .. 2027-03-31 02:00 CEST  3 fires, each completed on time"
    )
    assert lines[-1] == "  12 runs: 12 completed"


def test_simulated_fires_are_the_schedulers_next_fires() -> None:
    from scheduler.policy import next_fire

    job = spec("x", "*/7 1-3 * * *", tz="America/New_York")
    start, end = at("2027-11-06T00:00Z"), at("2027-11-08T00:00Z")
    runs = simulate(Simulation([job], start, end))
    stepped, t = [], next_fire(job, start)
    while t <= end:
        stepped.append(int(t.timestamp()) * 1_000_000)
        t = next_fire(job, t)
    assert [r.scheduled_us for r in runs] == stepped
    assert all(r.trigger is Trigger.SCHEDULE for r in runs)
    assert timedelta(0) < end - start


def test_run_ids_and_times_are_the_schedulers_own() -> None:
    from scheduler.model import iso, run_id_for

    jobs = [spec("x", "*/20 * * * * *", tz="Europe/Berlin"), spec("y", "0 0 L * *")]
    runs = simulate(Simulation(jobs, at("2027-03-28T00:59Z"), at("2027-03-31T00:00:30Z")))
    for run in runs[:200] + runs[-5:]:
        moment = datetime.fromtimestamp(run.scheduled_us / 1e6, UTC)
        assert run.id == run_id_for(run.job, moment)
        assert run.as_json()["scheduled_for"] == iso(moment)


def test_run_ids_of_an_interval_job_with_fractions() -> None:
    from scheduler.model import run_id_for

    job = JobSpec(name="fast", path="x", line=1, every_s=0.25)
    runs = simulate(Simulation([job], at("2027-01-01T00:00Z"), at("2027-01-01T00:00:02Z")))
    assert len(runs) == 8
    for run in runs:
        moment = datetime.fromtimestamp(run.scheduled_us / 1e6, UTC)
        assert run.id == run_id_for(run.job, moment)


@pytest.mark.parametrize(
    ("cron", "overlap", "catchup", "duration_s", "grace"),
    [
        ("* * * * *", Overlap.SKIP, Catchup.LATEST, 30.0, None),  # each run ends before the next
        ("* * * * *", Overlap.SKIP, Catchup.ALL, 90.0, None),  # each run meets the next fire
        ("* * * * *", Overlap.QUEUE, Catchup.ALL, 60.0, None),  # ends as the next fire comes
        ("*/7 * * * *", Overlap.REPLACE, Catchup.ALL, 500.0, 120.0),
        ("30 2 * * *", Overlap.ALLOW, Catchup.NONE, 0.0, None),  # in the repeated hour
        ("*/20 * * * * *", Overlap.SKIP, Catchup.LATEST, 0.0, 0.0),
    ],
)
def test_the_fast_path_gives_what_the_straightforward_one_does(
    cron: str, overlap: Overlap, catchup: Catchup, duration_s: float, grace: float | None
) -> None:
    """Over Berlin's autumn DST weekend (03:00 CEST -> 02:00 CET on 2027-10-31), down over
    the repeated hour and after it, with a duration: the same JSON and the same text."""
    job = spec(
        "j", cron, tz="Europe/Berlin", overlap=overlap, catchup=catchup, catchup_limit=3,
        misfire_grace_s=grace,
    )  # fmt: skip
    down = [
        Window(at("2027-10-31T02:10+02:00"), at("2027-10-31T02:40+01:00")),
        Window(at("2027-10-31T05:00+01:00"), at("2027-10-31T05:03:30+01:00")),
    ]
    sim = Simulation(
        [job], at("2027-10-29T00:00Z"), at("2027-11-03T00:00Z"), down, {"j": duration_s}
    )
    runs = simulate(sim)
    fast = simulate_fast(sim)
    assert fast.count() == len(runs)
    out = io.StringIO()
    write_json(fast, out)
    assert out.getvalue() == "[\n" + ",\n".join(json.dumps(r.as_json()) for r in runs) + "\n]\n"
    assert describe_fast(fast, [job]) == describe(runs, [job])
    assert any(r.dst for r in runs) and any(str(r.status) != "completed" for r in runs)


def test_the_fast_path_of_several_jobs() -> None:
    jobs = [spec("a", "*/5 * * * *"), spec("b", "*/3 * * * *", tz="Europe/Berlin")]
    down = [Window(at("2027-03-28T00:50Z"), at("2027-03-28T01:20Z"))]
    sim = Simulation(jobs, at("2027-03-27T22:00Z"), at("2027-03-28T03:00Z"), down, {"a": 400})
    runs, fast = simulate(sim), simulate_fast(sim)
    out = io.StringIO()
    write_json(fast, out)
    assert out.getvalue() == "[\n" + ",\n".join(json.dumps(r.as_json()) for r in runs) + "\n]\n"
    assert describe_fast(fast, jobs) == describe(runs, jobs)
