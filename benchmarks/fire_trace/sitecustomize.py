"""Stamps along one fire's path, for `python -m benchmarks.fire --trace` (never imported otherwise).

The fire benchmark puts this folder first on PYTHONPATH of the `sched scheduler` and `sched
worker` it starts, with BENCH_FIRE_TRACE naming a file and BENCH_FIRE_TRACE_JOB the measured
job. Each process (the scheduler, the worker, the fork server and the horses it forks, which
inherit PYTHONPATH) wraps a few functions and appends `event run_id time.time() pid` lines to
that file (O_APPEND, one write per line):

  scheduler: beat_enqueue (the beat is about to call the store), enqueued (ENQUEUE returned)
  worker:    popped (BLMOVE returned the id), claimed (CLAIM returned), take_start /
             take_done (the ready horse from the fork server), order_sent (order written)
  horse:     order_read (the ready horse has its order)

The job's own first line is in the run's output (benchmarks.tasks.record_fire).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

TRACE = os.environ.get("BENCH_FIRE_TRACE")
JOB = os.environ.get("BENCH_FIRE_TRACE_JOB", "")
_current: list[str] = [""]


def _stamp(event: str, run_id: str) -> None:
    if not run_id.startswith(f"{JOB}@") or TRACE is None:
        return
    line = f"{event} {run_id} {time.time():.6f} {os.getpid()}\n".encode()
    fd = os.open(TRACE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _wrap(owner: Any, name: str, hook: Callable[..., Any]) -> None:
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return hook(original, *args, **kwargs)

    setattr(owner, name, wrapped)


def _install() -> None:
    from scheduler import horse
    from scheduler.forkserver import ForkServer
    from scheduler.store.redis_store import RedisStore
    from scheduler.worker import Worker

    def enqueue_many(original: Any, store: Any, fires: Any, **kw: Any) -> Any:
        for fire in fires:
            _stamp("beat_enqueue", fire.run_id)
        out = original(store, fires, **kw)
        for fire in fires:
            _stamp("enqueued", fire.run_id)
        return out

    def wait_for_run(original: Any, *args: Any, **kw: Any) -> Any:
        run_id = original(*args, **kw)
        if run_id:
            _stamp("popped", run_id)
        return run_id

    def claim(original: Any, store: Any, worker: str, run_id: str, *a: Any, **kw: Any) -> Any:
        out = original(store, worker, run_id, *a, **kw)
        _stamp("claimed", run_id)
        return out

    def start(original: Any, worker: Any, order: bytes) -> Any:
        _current[0] = str(json.loads(order)["env"].get("SCHED_RUN_ID", ""))
        out = original(worker, order)
        _stamp("order_sent", _current[0])
        return out

    def take(original: Any, *args: Any, **kw: Any) -> Any:
        _stamp("take_start", _current[0])
        out = original(*args, **kw)
        _stamp("take_done", _current[0])
        return out

    def await_order(original: Any, *args: Any, **kw: Any) -> Any:
        order = original(*args, **kw)
        if isinstance(order, dict):
            _stamp("order_read", str(order.get("env", {}).get("SCHED_RUN_ID", "")))
        return order

    _wrap(RedisStore, "enqueue_many", enqueue_many)
    _wrap(RedisStore, "wait_for_run", wait_for_run)
    _wrap(RedisStore, "claim", claim)
    _wrap(Worker, "_start", start)
    _wrap(ForkServer, "take", take)
    _wrap(horse, "_await_order", await_order)


if TRACE:
    _install()
