"""The scheduler's lines about runs carry structured fields under `--log-format json`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.alerts import Alerter
from scheduler.beat import Beat, BeatSettings
from scheduler.cli_output import structured_fields
from scheduler.model import Catchup, JobSpec, run_id_for
from scheduler.store import Store
from tests.helpers import trigger, wait_for


def test_a_fire_is_logged_with_job_run_id_status_and_delay(redis_url: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "logged.py").write_text(
        'from scheduler import job\n\n@job(every="1s", overlap="allow")\ndef tick() -> None: ...\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_REDIS_URL=redis_url, SCHED_JOBS=str(jobs))
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "--log-format", "json", "scheduler"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def enqueued() -> dict[str, Any] | None:
        for line in log.read_text().splitlines():
            entry = json.loads(line)  # every line is JSON
            if entry.get("event") == "enqueued":
                return dict(entry)
        return None

    try:
        entry = wait_for(enqueued, 20, "a fire logged")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert entry["job"] == "logged.tick"
    assert entry["run_id"].startswith("logged.tick@")
    assert entry["status"] == "queued"
    assert isinstance(entry["delay_ms"], float) and 0 <= entry["delay_ms"] < 1000
    assert entry["message"].startswith("fire logged.tick for ")
    assert entry["run_id"] in entry["message"]


def test_missed_fires_are_logged_with_job_status_and_run_id(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    last = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    job = JobSpec(name="m", path="jobs/m.py", line=1, cron="* * * * *", catchup=Catchup.NONE)
    store.enqueue(
        run_id=run_id_for("m", last), job="m", scheduled_for=last, queue="default", outcome="missed"
    )
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    Beat(store, {"m": job}, clock=lambda: last + timedelta(minutes=3, seconds=5)).start()
    (record,) = [r for r in caplog.records if structured_fields(r).get("event") == "missed"]
    assert structured_fields(record) == {
        "event": "missed",
        "job": "m",
        "run_id": run_id_for("m", last + timedelta(minutes=3)),
        "status": "missed",
    }


def test_a_lost_run_is_logged_with_job_run_id_and_status(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = trigger(store, "gone")
    assert store.wait_for_run("w", ["default"], 1.0) == run_id
    assert store.claim("w", run_id, 0.05) is not None  # and its worker never renews the lease
    beat = Beat(store, {}, BeatSettings(lease_s=0.05))
    caplog.set_level(logging.INFO, logger="sched.scheduler")

    def lost() -> logging.LogRecord | None:
        beat._reap()
        records = [r for r in caplog.records if structured_fields(r).get("event") == "lost"]
        return records[0] if records else None

    record = wait_for(lost, 10, "the run reaped")
    assert structured_fields(record) == {
        "event": "lost",
        "job": "gone",
        "run_id": run_id,
        "status": "lost",
    }


def test_a_late_run_is_logged_once_with_its_delay(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    job = JobSpec(name="slow", path="jobs/s.py", line=1, cron="* * * * *", misfire_grace_s=1.0)
    fire_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    run_id = run_id_for("slow", fire_at)
    store.enqueue(run_id=run_id, job="slow", scheduled_for=fire_at, queue="nobody-serves-it")
    with Alerter({"slow": job}, global_on_late=["true"]) as alerter:
        beat = Beat(store, {"slow": job}, alerter=alerter)
        caplog.set_level(logging.INFO, logger="sched.scheduler")
        beat._reap()
        beat._reap()  # checked at every reap, logged once
    (record,) = [r for r in caplog.records if structured_fields(r).get("event") == "late"]
    fields = structured_fields(record)
    assert fields["job"] == "slow" and fields["run_id"] == run_id
    assert fields["status"] == "queued"
    assert isinstance(fields["delay_ms"], float) and 10_000 <= fields["delay_ms"] < 60_000
    assert "not started 1" in record.getMessage()
