"""The dashboard in-process over the session's real Redis, with a small jobs folder."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from scheduler.loader import load_jobs
from scheduler.model import JobSpec, to_ms
from scheduler.store import Store
from scheduler.web.app import create_app

JOBS = """
from scheduler import job, command

@job("*/5 * * * *", timeout="30s")
def tick():
    return {"ok": True}

@job("30 1 * * *", tz="America/New_York", timeout="1m")
def nightly():
    pass

@job(every="1m", timeout="10s")
def poll():
    pass

command("echo", "0 * * * *", ["echo", "hello"], timeout="10s")
"""


@pytest.fixture()
def jobs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "demo.py").write_text(textwrap.dedent(JOBS))
    return folder


@pytest.fixture()
def specs(jobs_dir: Path) -> dict[str, JobSpec]:
    return load_jobs(jobs_dir)


def make_client(store: Store, specs: dict[str, JobSpec], **kw: object) -> TestClient:
    app = create_app(store, specs, allowed_hosts={"testserver"}, **kw)  # type: ignore[arg-type]
    return TestClient(app, follow_redirects=False)


@pytest.fixture()
def client(store: Store, specs: dict[str, JobSpec]) -> Iterator[TestClient]:
    with make_client(store, specs) as c:
        yield c


def csrf_of(client: TestClient, path: str = "/") -> str:
    """Open a page (which sets the CSRF cookie) and read the token from its forms."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "no CSRF field on the page"
    return found.group(1)


def record(store: Store, run_id: str, job: str, at: datetime, status: str, **fields: object) -> str:
    """Write a finished run record the way a worker's report is written back (RESTORE)."""
    ms = to_ms(at)
    store.restore(
        {
            "id": run_id,
            "job": job,
            "scheduled_for": ms,
            "status": status,
            "attempt": 1,
            "trigger": "schedule",
            "queue": "default",
            **fields,
        }
    )
    return run_id
