"""Output people can read and scripts can trust: the published JSON Schemas, terminal width,
colour, zones, durations and structured log lines."""

from __future__ import annotations

import json
import logging
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from scheduler.cli import cli
from scheduler.cli_output import fit_table, log_event, log_formatter, worker_json
from scheduler.display import human_duration
from scheduler.model import RUN_FIELDS, RunStatus, run_id_for
from scheduler.store import Store

ROOT = Path(__file__).parent.parent.parent
SCHEMAS = ROOT / "docs" / "schema"
GOOD = ROOT / "tests" / "unit" / "fixtures" / "good"
LONG_REASON = "raised ValueError: " + "the upstream service answered with something long " * 4


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def valid(name: str, items: list[Any]) -> None:
    check = validator(name)
    assert items, "nothing to validate"
    for item in items:
        errors = [f"{list(e.path)}: {e.message}" for e in check.iter_errors(item)]
        assert not errors, errors


def sched(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture()
def runs(store: Store) -> Store:
    """One missed run, one failed run with every field a worker writes, one queued run."""
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    store.enqueue(
        run_id=run_id_for("nightly-backup", at),
        job="nightly-backup",
        scheduled_for=at,
        queue="default",
        outcome="missed",
        reason="down",
    )
    later = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    store.enqueue(
        run_id=run_id_for("nightly-backup", later),
        job="nightly-backup",
        scheduled_for=later,
        queue="default",
    )
    claimed = store.wait_for_run("w1", ["default"], 0.1)
    assert claimed is not None and store.claim("w1", claimed, 10)
    store.finish(
        "w1",
        claimed,
        "nightly-backup",
        RunStatus.FAILED,
        63.2,
        {
            "exit_code": 1,
            "reason": LONG_REASON,
            "output": "line 1\n",
            "error": {"type": "ValueError", "message": "boom", "traceback": "Tb..."},
        },
    )
    latest = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    store.enqueue(
        run_id=run_id_for("nightly-backup", latest),
        job="nightly-backup",
        scheduled_for=latest,
        queue="default",
    )
    return store


# -- the published schemas -------------------------------------------------------------------


def test_run_schema_lists_every_run_field() -> None:
    schema = json.loads((SCHEMAS / "run.schema.json").read_text())
    assert schema["required"] == list(RUN_FIELDS)
    assert list(schema["properties"]) == list(RUN_FIELDS)


def test_history_json_and_jsonl_match_the_run_schema(runs: Store) -> None:
    code, out = sched("--redis-url", runs.url, "history", "--json")
    assert code == 0, out
    items = json.loads(out)
    assert len(items) == 3
    valid("run", items)
    code, out = sched("--redis-url", runs.url, "history", "--jsonl")
    assert code == 0, out
    valid("run", [json.loads(line) for line in out.splitlines()])


def test_show_json_matches_the_run_schema(runs: Store) -> None:
    for run_id in ("nightly-backup@20261127T110000Z", "nightly-backup@20261127T120000Z"):
        code, out = sched("--redis-url", runs.url, "show", run_id, "--json")
        assert code == 0, out
        valid("run", [json.loads(out)])


def test_workers_json_is_typed_and_matches_the_worker_schema(runs: Store) -> None:
    info = {"host": "box", "pid": 4242, "queues": "default,heavy"}
    runs.heartbeat("box:4242:idle", 10, info=info)
    runs.heartbeat("box:4243:busy", 10, info=info | {"pid": 4243})
    run_id = runs.wait_for_run("box:4243:busy", ["default"], 0.1)
    assert run_id is not None and runs.claim("box:4243:busy", run_id, 10)
    code, out = sched("--redis-url", runs.url, "workers", "--json")
    assert code == 0, out
    rows = {row["id"]: row for row in json.loads(out)}
    valid("worker", list(rows.values()))
    idle, busy = rows["box:4242:idle"], rows["box:4243:busy"]
    assert idle["pid"] == 4242 and idle["queues"] == ["default", "heavy"]
    assert idle["current"] is None, "`current` is present when idle"
    assert busy["current"] == run_id
    assert idle["heartbeat_at"].endswith("Z")


def test_worker_json_of_a_bare_row() -> None:
    assert worker_json({"id": "w"}) == {
        "id": "w",
        "host": None,
        "pid": None,
        "queues": [],
        "current": None,
        "heartbeat_at": None,
    }
    valid("worker", [worker_json({"id": "w"})])


# -- tables, colour, zones, durations --------------------------------------------------------


def test_history_fits_the_terminal_and_cuts_only_the_reason(runs: Store) -> None:
    code, out = sched("--redis-url", runs.url, "history", env={"COLUMNS": "100"})
    assert code == 0, out
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), lines
    failed = next(line for line in lines if "failed" in line and "@" in line)
    assert "nightly-backup@20261127T110000Z" in failed, "the run id is never cut"
    assert failed.endswith("…") and "  raised ValueError" in failed


def test_history_to_a_pipe_is_not_cut(runs: Store) -> None:
    code, out = sched("--redis-url", runs.url, "history")
    assert code == 0
    assert LONG_REASON.strip() in out


def test_list_fits_the_terminal() -> None:
    code, out = sched("--jobs", str(GOOD), "list", env={"COLUMNS": "110"})
    assert code == 0, out
    assert all(len(line) <= 110 for line in out.splitlines()), out


def test_fit_table_keeps_other_columns_whole() -> None:
    rows = [["A", "TEXT", "B"], ["x" * 10, "y" * 50, "z" * 5]]
    lines = fit_table(rows, 30, shrink=1)
    assert all(len(line) <= 30 for line in lines)
    assert "x" * 10 in lines[1] and lines[1].endswith("z" * 5)


def _in_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run `sched ARGS` with its stdout on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "scheduler", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(30)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_colour_on_a_terminal_unless_no_color(runs: Store) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    args = ["--redis-url", runs.url, "history"]
    assert "\x1b[" in _in_a_terminal(args, env), "a terminal gets colour"
    assert "\x1b[" not in _in_a_terminal(args, env | {"NO_COLOR": "1"})
    piped = subprocess.run(
        [sys.executable, "-m", "scheduler", *args], env=env, capture_output=True, text=True
    )
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout


def test_a_local_zone_equal_to_utc_is_shown_once() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    utc = subprocess.run(
        [sys.executable, "-m", "scheduler", "--jobs", str(GOOD), "list"],
        env=env | {"TZ": "UTC"},
        capture_output=True,
        text=True,
    )
    assert utc.returncode == 0, utc.stderr
    assert "Z (" not in utc.stdout and "UTC (" not in utc.stdout, utc.stdout
    berlin = subprocess.run(
        [sys.executable, "-m", "scheduler", "--jobs", str(GOOD), "list"],
        env=env | {"TZ": "Europe/Berlin"},
        capture_output=True,
        text=True,
    )
    assert "Z)" in berlin.stdout, "another zone shows its time and UTC's"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.004, "4ms"), (2.0, "2.0s"), (63.2, "1m03s"), (7500, "2h05m")]
)
def test_durations_read_one_way(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_show_and_history_print_the_same_duration_and_show_has_milliseconds(
    runs: Store,
) -> None:
    run_id = "nightly-backup@20261127T110000Z"
    code, shown = sched("--redis-url", runs.url, "show", run_id, "--utc")
    assert code == 0, shown
    assert "duration_s: 1m03s" in shown
    assert "scheduled_for: 2026-11-27 11:00:00.000Z" in shown
    code, listed = sched("--redis-url", runs.url, "history", "--utc")
    line = next(line for line in listed.splitlines() if run_id in line)
    assert "1m03s" in line


# -- structured log lines --------------------------------------------------------------------


def test_json_log_lines_carry_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("sched.test")
    with caplog.at_level(logging.INFO, logger="sched.test"):
        log_event(
            logger,
            logging.INFO,
            "run_ended",
            "run %s: %s in %s",
            "j@x",
            "completed",
            "4ms",
            job="j",
            run_id="j@x",
            status="completed",
            duration_s=0.004,
            worker="w",
        )
        logger.info("a plain line")
    structured, plain = (json.loads(log_formatter("json").format(r)) for r in caplog.records)
    assert structured["message"] == "run j@x: completed in 4ms"
    assert structured["event"] == "run_ended" and structured["duration_s"] == 0.004
    assert structured["job"] == "j" and structured["worker"] == "w"
    assert plain["event"] is None and plain["message"] == "a plain line"
    assert log_formatter("human").format(caplog.records[0]).endswith("run j@x: completed in 4ms")


def test_log_event_refuses_an_unknown_field() -> None:
    with pytest.raises(ValueError, match="not a log field"):
        log_event(logging.getLogger("sched.test"), logging.INFO, "x", "m", colour="red")
