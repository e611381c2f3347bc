"""`sched next`, `sched check`'s DST warnings and `sched simulate`, through click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli

JOBS = """
from scheduler import job

@job("0 2 * * *", tz="Europe/Berlin", name="nightly")
def nightly() -> None: ...

@job("*/30 * * * *", tz="Europe/Berlin", name="half-hourly", catchup="all", catchup_limit=2)
def half_hourly() -> None: ...

@job("30 2 * * *", name="utc-job")
def utc_job() -> None: ...
"""


@pytest.fixture()
def jobs(tmp_path: Path) -> Path:
    (tmp_path / "jobs.py").write_text(JOBS)
    return tmp_path


def sched(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# --- next --------------------------------------------------------------------------------------


def test_next_of_a_job_keeps_its_own_zone_when_tz_is_given(jobs: Path) -> None:
    code, out, _ = sched(
        "--jobs", str(jobs), "next", "nightly", "--tz", "Asia/Tokyo",
        "--from", "2027-01-10T12:00Z", "-n", "2",
    )  # fmt: skip
    assert code == 0
    # 02:00 in Berlin (01:00Z), shown in Tokyo; not 02:00 in Tokyo
    assert out.splitlines() == [
        "nightly fires in Europe/Berlin; times shown in Asia/Tokyo",
        "2027-01-11T10:00:00+09:00  (2027-01-11T01:00:00Z)",
        "2027-01-12T10:00:00+09:00  (2027-01-12T01:00:00Z)",
    ]


def test_next_json_of_a_job_names_both_zones(jobs: Path) -> None:
    code, out, _ = sched(
        "--jobs", str(jobs), "next", "nightly", "--tz", "UTC",
        "--from", "2027-01-10T12:00Z", "-n", "1", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == [
        {
            "job": "nightly",
            "at": "2027-01-11T01:00:00Z",
            "local": "2027-01-11T01:00:00+00:00",
            "tz": "UTC",
            "job_tz": "Europe/Berlin",
        }
    ]


def test_next_of_an_expression_still_fires_in_tz() -> None:
    code, out, _ = sched(
        "next", "0 2 * * *", "--tz", "Asia/Tokyo", "--from", "2027-01-10T12:00Z", "-n", "1"
    )
    assert (code, out.strip()) == (0, "2027-01-11T02:00:00+09:00  (2027-01-10T17:00:00Z)")


# --- check -------------------------------------------------------------------------------------


def test_check_warns_about_fixed_time_jobs_in_a_dst_gap_or_repeated_hour(jobs: Path) -> None:
    code, out, err = sched("--jobs", str(jobs), "check")
    assert code == 0
    assert "3 jobs OK" in out
    where = f"nightly ({jobs / 'jobs.py'}:4)"
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 2, err  # the interval job and the UTC job get none
    assert re.fullmatch(
        rf"warning: {re.escape(where)}: 0 2 \* \* \* Europe/Berlin: "
        r"20\d\d-03-\d\d 02:00 does not exist; runs at 03:00 CEST",
        lines[0],
    ), lines[0]
    assert re.fullmatch(
        rf"warning: {re.escape(where)}: 0 2 \* \* \* Europe/Berlin: "
        r"20\d\d-10-\d\d 02:00 happens twice; runs once, at 02:00 CEST",
        lines[1],
    ), lines[1]


# --- simulate ----------------------------------------------------------------------------------


def test_simulate_the_dst_weekend_while_down_from_01_to_04(jobs: Path) -> None:
    code, out, _ = sched(
        "--jobs", str(jobs), "simulate", "nightly", "half-hourly",
        "--from", "2027-03-28T00:00+01:00", "--to", "2027-03-28T05:00+02:00",
        "--down", "2027-03-28T01:00+01:00..2027-03-28T04:00+02:00",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines()[:2] == [
        "nightly  0 2 * * *  Europe/Berlin  overlap=skip catchup=latest",
        "  2027-03-28 03:00 CEST  completed  (catchup, attempt 1)  started 2027-03-28 04:00 CEST"
        "  ended 2027-03-28 04:00 CEST  [DST: 2027-03-28 02:00 does not exist; runs at 03:00 CEST]",
    ]
    assert "  2027-03-28 01:00 CET  missed  - no scheduler was running (catchup=all)" in out
    assert out.splitlines()[-1] == "  8 runs: 5 completed, 3 missed"  # catchup_limit=2


def test_simulate_json_gives_run_objects(jobs: Path) -> None:
    code, out, _ = sched(
        "--jobs", str(jobs), "simulate", "half-hourly",
        "--from", "2027-01-01T00:00Z", "--to", "2027-01-01T01:00Z",
        "--duration", "half-hourly=45m", "--json",
    )  # fmt: skip
    assert code == 0
    runs = json.loads(out)
    assert [(r["scheduled_for"], r["status"]) for r in runs] == [
        ("2027-01-01T00:30:00Z", "completed"),  # until 01:15Z
        ("2027-01-01T01:00:00Z", "skipped"),
    ]
    assert (
        runs[1]["reason"]
        == f"overlap=skip: run {runs[0]['id']} of this job is still queued or running"
    )
    assert set(runs[0]) >= {"id", "job", "scheduled_for", "status", "reason", "started_at"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--down", "2027-01-01T00:00Z"], "expected ISO..ISO"),
        (["--down", "2027-01-01T02:00Z..2027-01-01T01:00Z"], "the end is not after the start"),
        (["--duration", "nightly"], "expected JOB=DURATION"),
        (["--duration", "nightly=soon"], "--duration nightly"),
        (["--duration", "nope=5m"], "'nope' is not a job"),
        (["--fail", "nope"], "'nope' is not a job"),
        (["--to", "2026-01-01T00:00Z"], "is not after --from"),
    ],
)
def test_simulate_rejects_bad_options(jobs: Path, args: list[str], message: str) -> None:
    base = ["--jobs", str(jobs), "simulate", "--from", "2027-01-01T00:00Z"]
    if "--to" not in args:
        base += ["--to", "2027-01-02T00:00Z"]
    result = CliRunner().invoke(cli, base + args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
