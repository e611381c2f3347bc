"""Parsing and output of the read commands, through click's CliRunner."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.model import RUN_FIELDS, RunStatus, run_id_for
from scheduler.store import Store

FIXTURES = Path(__file__).parent.parent / "unit" / "fixtures"
GOOD = FIXTURES / "good"
BAD = FIXTURES / "bad"


def sched(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_check_ok_prints_a_summary() -> None:
    code, out = sched("--jobs", str(GOOD), "check")
    assert code == 0
    assert "jobs OK in" in out


def test_check_lists_every_problem_and_exits_2() -> None:
    code, out = sched("--jobs", str(BAD), "check")
    assert code == 2
    assert "invalid cron '61 2 * * *': minute 61 is outside 0-59" in out
    assert "unknown option 'timout'" in out
    assert "duplicate job name" in out
    assert out.count("bad/") >= 10, "every problem names its file"


def test_next_fixed_time_fires_once_on_fall_back_day() -> None:
    code, out = sched(
        "next", "30 1 * * *", "--tz", "America/New_York", "--from", "2025-11-01T12:00Z", "-n", "2"
    )
    assert code == 0
    assert out.splitlines() == [
        "2025-11-02T01:30:00-04:00  (2025-11-02T05:30:00Z)",
        "2025-11-03T01:30:00-05:00  (2025-11-03T06:30:00Z)",
    ]


def test_next_json_skips_the_missing_hour() -> None:
    code, out = sched(
        "next",
        "0 */2 * * *",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2025-03-29T22:30Z",
        "-n",
        "2",
        "--json",
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["at"] for r in rows] == ["2025-03-29T23:00:00Z", "2025-03-30T02:00:00Z"]
    assert rows[1]["local"] == "2025-03-30T04:00:00+02:00"


def test_next_of_a_job_uses_its_zone() -> None:
    code, out = sched(
        "--jobs", str(GOOD), "next", "nightly-backup", "--from", "2025-03-29T12:00Z", "-n", "1"
    )
    assert code == 0
    assert out.strip() == "2025-03-30T03:00:00+02:00  (2025-03-30T01:00:00Z)"


def test_next_rejects_a_bad_expression() -> None:
    code, out = sched("next", "61 2 * * *")
    assert code == 2
    assert "minute 61 is outside 0-59" in out


def test_next_unknown_job() -> None:
    code, out = sched("--jobs", str(GOOD), "next", "no-such-job")
    assert code == 2
    assert "neither a cron expression nor a job" in out


@pytest.fixture()
def recorded(store: Store) -> Store:
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    store.enqueue(
        run_id=run_id_for("nightly-backup", at),
        job="nightly-backup",
        scheduled_for=at,
        queue="default",
        outcome="missed",
        reason="down",
    )
    run_id = store.wait_for_run("w", ["default"], 0.01)
    assert run_id is None
    later = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    store.enqueue(
        run_id=run_id_for("nightly-backup", later),
        job="nightly-backup",
        scheduled_for=later,
        queue="default",
    )
    claimed = store.wait_for_run("w", ["default"], 0.1)
    assert claimed is not None and store.claim("w", claimed, 10)
    store.finish(
        "w",
        claimed,
        "nightly-backup",
        RunStatus.FAILED,
        2.5,
        {
            "exit_code": 1,
            "reason": "raised ValueError: boom",
            "output": "line 1\n",
            "error": {"type": "ValueError", "message": "boom", "traceback": "Tb..."},
        },
    )
    return store


def test_history_json_has_every_run_field(recorded: Store) -> None:
    code, out = sched("--redis-url", recorded.url, "history", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [r["status"] for r in runs] == ["failed", "missed"]
    assert set(runs[0]) >= set(RUN_FIELDS)
    assert runs[0]["scheduled_for"] == "2026-11-27T11:00:00Z"
    assert runs[0]["duration_s"] == 2.5


def test_history_filters_by_status(recorded: Store) -> None:
    code, out = sched("--redis-url", recorded.url, "history", "--status", "missed")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("RUN")
    assert len(lines) == 3 and "missed" in lines[1]
    assert lines[2] == "1 run: 1 missed"


def test_history_rejects_an_unknown_status(recorded: Store) -> None:
    code, out = sched("--redis-url", recorded.url, "history", "--status", "done")
    assert code == 2
    assert "'done' is not one of" in out


def test_show_prints_traceback_and_output(recorded: Store) -> None:
    run_id = run_id_for("nightly-backup", datetime(2026, 11, 27, 11, 0, tzinfo=UTC))
    code, out = sched("--redis-url", recorded.url, "show", run_id)
    assert code == 0
    assert "status: failed" in out
    assert "--- error: ValueError: boom" in out
    assert "line 1" in out
    code, out = sched("--redis-url", recorded.url, "show", run_id, "--json")
    assert json.loads(out)["error"]["type"] == "ValueError"


def test_show_unknown_run_suggests_history(recorded: Store) -> None:
    code, out = sched("--redis-url", recorded.url, "show", "nope@1")
    assert code == 1
    assert "sched history" in out


def test_list_json_shows_last_status(recorded: Store) -> None:
    code, out = sched("--jobs", str(GOOD), "--redis-url", recorded.url, "list", "--json")
    assert code == 0
    rows = {r["job"]: r for r in json.loads(out)}
    assert rows["nightly-backup"]["last_status"] == "failed"
    assert rows["nightly-backup"]["tz"] == "Europe/Berlin"
    assert rows["pg-dump"]["kind"] == "command"


def test_unreachable_redis_names_the_url_without_password() -> None:
    code, out = sched("--redis-url", "redis://u:hunter2@127.0.0.1:1/0", "history")
    assert code == 1
    assert "redis://u:***@127.0.0.1:1/0" in out
    assert "hunter2" not in out


def test_history_counts_per_status_and_jsonl(recorded: Store) -> None:
    code, out = sched("--redis-url", recorded.url, "history", "--utc")
    assert code == 0
    assert out.splitlines()[-1] == "2 runs: 1 failed, 1 missed"
    assert "2026-11-27 11:00:00Z" in out
    assert "2.5s" in out
    code, out = sched("--redis-url", recorded.url, "history", "--jsonl")
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["failed", "missed"]


def test_history_until(recorded: Store) -> None:
    code, out = sched(
        "--redis-url", recorded.url, "history", "--until", "2026-11-27T10:30:00Z", "--json"
    )
    assert code == 0
    assert [r["status"] for r in json.loads(out)] == ["missed"]


def test_list_describes_schedules_and_shows_paused(recorded: Store) -> None:
    recorded.pause("nightly-backup")
    code, out = sched("--jobs", str(GOOD), "--redis-url", recorded.url, "list")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("nightly-backup"))
    assert "(paused)" in line and "At 03:00" in line and "Europe/Berlin" in line
    assert "overlap=queue catchup=all retries=2" in line
    # In local time and UTC; once when the local zone is UTC (test_output checks both cases).
    assert re.search(r"\d\d:\d\d:\d\dZ\)?", line), "next fire in UTC too"
    code, out = sched("--jobs", str(GOOD), "--redis-url", recorded.url, "list", "--json")
    row = next(r for r in json.loads(out) if r["job"] == "nightly-backup")
    assert row["paused"] is True and row["description"] == "At 03:00"
    assert row["next_fire_local"].endswith(("+01:00", "+02:00"))


def test_every_command_has_an_example_in_its_help() -> None:
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        code, out = sched(name, "--help")
        assert code == 0
        assert "Example:" in out, f"`sched {name} --help` has no example"
