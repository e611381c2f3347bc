"""/api/v1 answers with exactly what the CLI prints with --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from scheduler.cli import cli
from scheduler.store import Store
from tests.helpers import trigger
from tests.web.conftest import record


def _cli_json(redis_url: str, jobs_dir: Path, *args: str) -> Any:
    result = CliRunner().invoke(
        cli, ["--redis-url", redis_url, "--jobs", str(jobs_dir), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _seed(store: Store) -> list[str]:
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [
        record(
            store,
            f"demo.tick@{i}",
            "demo.tick",
            now - timedelta(minutes=5 * i),
            status,
            duration_s=0.25 * i,
            exit_code=0 if status == "completed" else 1,
            output=f"run {i}\n",
            result={"n": i},
        )
        for i, status in enumerate(["completed", "failed", "completed", "timed-out"], start=1)
    ]
    ids.append(trigger(store, "demo.poll"))
    store.pause("demo.nightly")
    return ids


def _without_next(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The next fire is computed from "now", which moves between the two calls.
    return [{k: v for k, v in r.items() if not k.startswith("next_fire")} for r in rows]


def test_jobs_is_sched_list_json(
    client: TestClient, store: Store, redis_url: str, jobs_dir: Path
) -> None:
    _seed(store)
    api = client.get("/api/v1/jobs").json()
    cli_rows = _cli_json(redis_url, jobs_dir, "list", "--json")
    assert _without_next(api) == _without_next(cli_rows)
    assert [list(r) for r in api] == [list(r) for r in cli_rows]  # same keys, same order
    one = client.get("/api/v1/jobs/demo.nightly").json()
    assert one["paused"] is True
    assert _without_next([one]) == _without_next(
        [r for r in cli_rows if r["job"] == "demo.nightly"]
    )


def test_next_is_sched_next_json(client: TestClient, redis_url: str, jobs_dir: Path) -> None:
    start = "2025-11-01T12:00:00Z"
    api = client.get("/api/v1/jobs/demo.nightly/next", params={"n": 3, "from": start}).json()
    assert api == _cli_json(
        redis_url, jobs_dir, "next", "demo.nightly", "-n", "3", "--from", start, "--json"
    )
    assert api[1]["local"] == "2025-11-03T01:30:00-05:00"
    tokyo = {"n": 2, "from": start, "tz": "Asia/Tokyo"}
    args = ("next", "demo.nightly", "-n", "2", "--from", start, "--tz", "Asia/Tokyo", "--json")
    assert client.get("/api/v1/jobs/demo.nightly/next", params=tokyo).json() == _cli_json(
        redis_url, jobs_dir, *args
    )


@pytest.mark.parametrize(
    "query,args",
    [
        ({}, []),
        ({"job": "demo.tick"}, ["demo.tick"]),
        ({"status": ["failed", "timed-out"]}, ["--status", "failed", "--status", "timed-out"]),
        ({"since": "12m", "limit": 2}, ["--since", "12m", "--limit", "2"]),
    ],
)
def test_runs_is_sched_history_json(
    client: TestClient,
    store: Store,
    redis_url: str,
    jobs_dir: Path,
    query: dict[str, Any],
    args: list[str],
) -> None:
    _seed(store)
    api = client.get("/api/v1/runs", params=query).json()
    assert api == _cli_json(redis_url, jobs_dir, "history", "--json", *args)
    assert api


def test_run_is_sched_show_json(
    client: TestClient, store: Store, redis_url: str, jobs_dir: Path
) -> None:
    for run_id in _seed(store):
        api = client.get("/api/v1/runs/" + run_id).json()
        assert api == _cli_json(redis_url, jobs_dir, "show", run_id, "--json")


def test_workers_is_sched_workers_json(
    client: TestClient, store: Store, redis_url: str, jobs_dir: Path
) -> None:
    store.heartbeat("host-a:1", 30.0, info={"host": "host-a", "pid": 1, "queues": "default"})
    api = client.get("/api/v1/workers").json()
    assert api == _cli_json(redis_url, jobs_dir, "workers", "--json")
    assert api[0]["host"] == "host-a"


def test_errors_name_what_is_wrong(client: TestClient) -> None:
    missing = client.get("/api/v1/runs/nope@1")
    assert missing.status_code == 404 and "no run with id 'nope@1'" in missing.json()["error"]
    assert client.get("/api/v1/jobs/nope").status_code == 404
    bad = client.get("/api/v1/runs", params={"status": "done"})
    assert bad.status_code == 400 and "expected one of queued" in bad.json()["error"]
    since = client.get("/api/v1/runs", params={"since": "yesterday"})
    assert since.status_code == 400 and "2h or 30m" in since.json()["error"]
    limit = client.get("/api/v1/runs", params={"limit": "0"})
    assert limit.status_code == 400


def test_openapi_document_describes_every_route(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/jobs",
        "/api/v1/jobs/{job}",
        "/api/v1/jobs/{job}/next",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/workers",
    }
