"""Every page renders from real records, and says what the CLI says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from scheduler.model import JobSpec, run_id_for
from scheduler.store import Store
from tests.helpers import trigger


def _fire(store: Store, spec: JobSpec, at: datetime, **kw: object) -> str:
    run_id = run_id_for(spec.name, at)
    store.enqueue(
        run_id=run_id,
        job=spec.name,
        scheduled_for=at,
        queue="default",
        **kw,  # type: ignore[arg-type]
    )
    return run_id


def test_overview_lists_every_job_with_schedule_in_words(
    client: TestClient, specs: dict[str, JobSpec]
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    for name in specs:
        assert f'href="/jobs/{name}"' in page.text
    assert "Every 5 minutes" in page.text
    assert "America/New_York" in page.text


def test_job_page_draws_the_timeline(
    client: TestClient, store: Store, specs: dict[str, JobSpec]
) -> None:
    spec = specs["demo.tick"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    fire = now - timedelta(minutes=now.minute % 5)
    _fire(store, spec, fire - timedelta(minutes=10))
    page = client.get("/jobs/demo.tick")
    assert page.status_code == 200, page.text
    assert "<svg" in page.text and 'class="timeline"' in page.text


def test_run_page_shows_every_field(client: TestClient, store: Store) -> None:
    run_id = trigger(store, "demo.tick")
    page = client.get("/runs/" + run_id)
    assert page.status_code == 200, page.text
    assert "queued" in page.text
    for name in ("scheduled_for", "enqueued_at", "attempt", "trigger", "queue"):
        assert f"<th>{name}</th>" in page.text


def test_workers_page(client: TestClient) -> None:
    page = client.get("/workers")
    assert page.status_code == 200
    assert "No live workers" in page.text
