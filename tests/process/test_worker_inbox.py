"""A run id left in a worker's own inbox (a reply lost after it was moved) is still run."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus
from scheduler.store import Store
from tests.helpers import trigger

JOBS = Path(__file__).parent / "jobs"

# A worker process whose reply to a queue move was lost: the id is in its inbox, and the
# worker knows only that a reply went missing (as after a connection error).
WORKER = """
import sys
from scheduler.loader import load_jobs
from scheduler.store import Store
from scheduler.worker import Worker, WorkerSettings

url, namespace, jobs = sys.argv[1:4]
store = Store(url, namespace)
worker = Worker(store, load_jobs(jobs), jobs=jobs, settings=WorkerSettings(idle_wait_s=0.1))
assert store.wait_for_run(worker.id, ["default"], 1.0) is not None  # moved, never claimed
worker._check_inbox = True
sys.exit(worker.run(max_runs=1))
"""


def test_an_id_stranded_in_the_inbox_is_claimed_after_a_lost_reply(
    redis_server: EmbeddedRedis,
) -> None:
    namespace = f"inbox-{uuid.uuid4().hex[:6]}"
    store = Store(redis_server.url, namespace)
    run_id = trigger(store, "returns")
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, redis_server.url, namespace, str(JOBS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert store.get_run(run_id).status is RunStatus.COMPLETED
    store.close()
