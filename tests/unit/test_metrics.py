"""Prometheus metrics: observed through a real scrape of the HTTP endpoint, and rendered."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from scheduler.metrics import Metrics
from scheduler.model import Run, RunStatus

FIRE = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)


def make_run(job: str, status: RunStatus, duration_s: float | None = None, n: int = 0) -> Run:
    return Run(id=f"{job}@{n}", job=job, status=status, scheduled_for=FIRE, duration_s=duration_s)


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of a text exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


@pytest.fixture()
def metrics() -> Iterator[Metrics]:
    m = Metrics()
    yield m
    m.close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def test_a_scrape_shows_observed_runs_fires_and_gauges(metrics: Metrics) -> None:
    port = metrics.serve(0)
    assert port > 0
    metrics.observe_run(make_run("backup", RunStatus.COMPLETED, 42.0, n=1))
    metrics.observe_run(make_run("backup", RunStatus.COMPLETED, 0.02, n=2))
    metrics.observe_run(make_run("backup", RunStatus.TIMED_OUT, 3605.0, n=3))
    metrics.observe_run(make_run("report", RunStatus.LOST))  # no duration: counted only
    metrics.observe_fire("backup", 0.0021, "queued")
    metrics.observe_fire("backup", 0.0004, "skipped")
    metrics.observe_fire("report", 7200.0, "missed")
    metrics.set_gauges(queue_depths={"default": 3, "heavy": 0}, running=2, workers_alive=4)

    got = samples(scrape(port))

    assert got['sched_runs_total{job="backup",status="completed"}'] == 2
    assert got['sched_runs_total{job="backup",status="timed-out"}'] == 1
    assert got['sched_runs_total{job="report",status="lost"}'] == 1
    assert got['sched_run_duration_seconds_count{job="backup"}'] == 3
    assert got['sched_run_duration_seconds_sum{job="backup"}'] == pytest.approx(3647.02)
    assert got['sched_run_duration_seconds_bucket{job="backup",le="0.05"}'] == 1
    assert got['sched_run_duration_seconds_bucket{job="backup",le="60.0"}'] == 2
    assert got['sched_run_duration_seconds_bucket{job="backup",le="3600.0"}'] == 2
    assert got['sched_run_duration_seconds_bucket{job="backup",le="+Inf"}'] == 3
    assert 'sched_run_duration_seconds_count{job="report"}' not in got
    # The missed fire's 2 h is downtime, not latency: only queued and skipped are observed.
    assert got["sched_fire_delay_seconds_count"] == 2
    assert got['sched_fire_delay_seconds_bucket{le="0.0005"}'] == 1
    assert got['sched_fire_delay_seconds_bucket{le="0.0025"}'] == 2
    assert got['sched_skipped_fires_total{job="backup"}'] == 1
    assert got['sched_missed_fires_total{job="report"}'] == 1
    assert got['sched_queue_depth{queue="default"}'] == 3
    assert got['sched_queue_depth{queue="heavy"}'] == 0
    assert got["sched_running_runs"] == 2
    assert got["sched_workers_alive"] == 4


def test_close_stops_the_server_and_frees_the_port() -> None:
    metrics = Metrics()
    port = metrics.serve(0)
    assert "sched_running_runs 0.0" in scrape(port)
    threads = {t.name for t in threading.enumerate()}
    metrics.close()
    with pytest.raises(urllib.error.URLError):
        scrape(port)
    assert {t.name for t in threading.enumerate()} < threads  # its serving thread is gone
    metrics.close()  # a second close is harmless
    again = Metrics()
    assert again.serve(port) == port  # the port is free for a new server
    again.close()


def test_serving_twice_is_an_error(metrics: Metrics) -> None:
    port = metrics.serve(0)
    with pytest.raises(RuntimeError, match=f"already served on port {port}"):
        metrics.serve(0)


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.observe_fire("a", 0.001, "skipped")
    assert b'sched_skipped_fires_total{job="a"} 1.0' in first.render()
    assert b"sched_skipped_fires_total{" not in second.render()


def test_runs_that_are_not_final_are_not_counted(metrics: Metrics) -> None:
    metrics.observe_run(make_run("backup", RunStatus.QUEUED))
    metrics.observe_run(make_run("backup", RunStatus.RUNNING, 1.0))
    assert b"sched_runs_total{" not in metrics.render()
    assert b"sched_run_duration_seconds_count{" not in metrics.render()


def test_a_negative_fire_delay_counts_as_zero(metrics: Metrics) -> None:
    metrics.observe_fire("backup", -0.25, "queued")  # the clock stepped back
    got = samples(metrics.render().decode())
    assert got["sched_fire_delay_seconds_sum"] == 0
    assert got['sched_fire_delay_seconds_bucket{le="0.0005"}'] == 1


def test_an_unknown_fire_status_is_an_error(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="expected one of queued, skipped, missed"):
        metrics.observe_fire("backup", 0.1, "failed")


def test_a_queue_that_disappears_reads_zero(metrics: Metrics) -> None:
    metrics.set_gauges(queue_depths={"default": 5, "heavy": 2}, running=1, workers_alive=1)
    metrics.set_gauges(queue_depths={"default": 1}, running=0, workers_alive=1)
    got = samples(metrics.render().decode())
    assert got['sched_queue_depth{queue="default"}'] == 1
    assert got['sched_queue_depth{queue="heavy"}'] == 0
    assert got["sched_running_runs"] == 0
