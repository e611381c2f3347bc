"""Trigger, pause, resume and kill from the dashboard do what the CLI does, record for record."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from starlette.testclient import TestClient

from scheduler.cli import cli
from scheduler.store import Store
from tests.helpers import trigger
from tests.web.conftest import csrf_of

VOLATILE = {"id", "scheduled_for", "enqueued_at"}


def _cli(redis_url: str, jobs_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--redis-url", redis_url, "--jobs", str(jobs_dir), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_trigger_queues_a_manual_run_like_sched_trigger(
    client: TestClient, store: Store, redis_url: str, jobs_dir: Path
) -> None:
    csrf = csrf_of(client)
    response = client.post("/jobs/demo.tick/trigger", data={"csrf": csrf, "next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    ours = store.history(job="demo.tick")
    assert len(ours) == 1 and ours[0].trigger == "manual" and ours[0].status == "queued"
    assert ours[0].id.startswith("demo.tick@manual-")
    _cli(redis_url, jobs_dir, "trigger", "demo.tick")
    theirs = [r for r in store.history(job="demo.tick") if r.id != ours[0].id]
    mine = {k: v for k, v in store.raw_run(ours[0].id).items() if k not in VOLATILE}
    cli_fields = {k: v for k, v in store.raw_run(theirs[0].id).items() if k not in VOLATILE}
    assert mine == cli_fields
    # The page it returns to says what happened.
    assert f"queued {ours[0].id}" in client.get("/").text


def test_pause_and_resume_like_the_cli(client: TestClient, store: Store) -> None:
    csrf = csrf_of(client)
    client.post("/jobs/demo.tick/pause", data={"csrf": csrf})
    assert store.paused_jobs() == {"demo.tick"}
    page = client.get("/jobs/demo.tick").text
    assert "paused" in page and "/jobs/demo.tick/resume" in page
    client.post("/jobs/demo.tick/resume", data={"csrf": csrf})
    assert store.paused_jobs() == set()


def test_kill_a_queued_run_records_killed_by_operator(client: TestClient, store: Store) -> None:
    run_id = trigger(store, "demo.tick")
    csrf = csrf_of(client, f"/runs/{run_id}")
    response = client.post(f"/runs/{run_id}/kill", data={"csrf": csrf, "next": f"/runs/{run_id}"})
    assert response.status_code == 303
    run = store.get_run(run_id)
    assert run.status == "killed" and run.reason == "operator"
    assert "was queued: recorded killed (reason: operator)" in client.get(f"/runs/{run_id}").text


def test_actions_on_unknown_names_are_404(client: TestClient) -> None:
    csrf = csrf_of(client)
    assert client.post("/jobs/nope/trigger", data={"csrf": csrf}).status_code == 404
    assert client.post("/runs/nope@1/kill", data={"csrf": csrf}).status_code == 404
    assert client.post("/jobs/demo.tick/explode", data={"csrf": csrf}).status_code == 404


def test_redirects_stay_on_this_site(client: TestClient, store: Store) -> None:
    csrf = csrf_of(client)
    response = client.post("/jobs/demo.tick/pause", data={"csrf": csrf, "next": "//evil.example"})
    assert response.headers["location"] == "/"
