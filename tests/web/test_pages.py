"""Every page renders from real records, and says what the CLI says."""

from __future__ import annotations

import html
import re
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


def test_history_pages_show_every_run_once_even_with_equal_fire_times(
    client: TestClient, store: Store
) -> None:
    from tests.web.conftest import record

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    expected = set()
    for i in range(70):
        # Three runs per instant (a fire and two retries): page boundaries fall inside them.
        at = base + timedelta(minutes=i // 3)
        expected.add(record(store, f"demo.tick@{i:03d}", "demo.tick", at, "completed"))
    seen: list[str] = []
    url = "/jobs/demo.tick?limit=20"
    for _ in range(10):
        page = client.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<td class="id"><a href="[^"]+">(demo\.tick@\d+)</a>', page.text)
        more = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if not more:
            break
        url = html.unescape(more.group(1))
    assert len(seen) == len(set(seen)) == 70
    assert set(seen) == expected


def test_overview_filters_by_name_and_last_status(client: TestClient, store: Store) -> None:
    from tests.web.conftest import record

    record(store, "demo.tick@1", "demo.tick", datetime.now(UTC), "failed")
    record(store, "demo.poll@1", "demo.poll", datetime.now(UTC), "completed")
    failed = client.get("/", params={"status": "failed"}).text
    assert 'href="/jobs/demo.tick"' in failed and 'href="/jobs/demo.poll"' not in failed
    never = client.get("/", params={"status": "never"}).text
    assert 'href="/jobs/demo.nightly"' in never and 'href="/jobs/demo.tick"' not in never
    named = client.get("/", params={"name": "POLL"}).text
    assert "1 of 4 jobs" in named and 'href="/jobs/demo.poll"' in named


def test_overview_counts_runs_per_status_in_the_window(client: TestClient, store: Store) -> None:
    from tests.web.conftest import record

    now = datetime.now(UTC)
    record(store, "demo.tick@1", "demo.tick", now - timedelta(minutes=30), "failed")
    record(store, "demo.tick@2", "demo.tick", now - timedelta(hours=3), "failed")
    one_hour = client.get("/", params={"window": "1h"}).text
    day = client.get("/", params={"window": "24h"}).text
    count = r'<span class="st st-failed">failed</span> <b>(\d+)</b>'
    assert re.search(count, one_hour).group(1) == "1"  # type: ignore[union-attr]
    assert re.search(count, day).group(1) == "2"  # type: ignore[union-attr]


def test_workers_page_lists_live_workers(client: TestClient, store: Store) -> None:
    store.heartbeat("host-a:41", 30.0, info={"host": "host-a", "pid": 41, "queues": "default,x"})
    page = client.get("/workers").text
    assert "host-a:41" in page and "default,x" in page and "idle" in page
    assert "1 live" in page
