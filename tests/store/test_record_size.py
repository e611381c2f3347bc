"""History that fits: a run's record stays small and compact in a real Redis, its long texts
(output, error, result, a long reason, live output) in its side key, read back whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.model import RunStatus, run_id_for
from scheduler.store import Fire, RedisStore, Retention, Store, fire_settings
from scheduler.store.codec import TEXT_LIMIT

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
WORKER = "host-a:4242:9f3b1c2d"
OUTPUT = ("a line of output from the job, 42 bytes.\n" * 25)[:1024]
TRACEBACK = "Traceback (most recent call last):\n" + (
    '  File "/srv/app/jobs/reports.py", line 120, in nightly\n    raise ValueError(total)\n' * 40
)
ERROR = json.dumps({"type": "ValueError", "message": "boom " * 30, "traceback": TRACEBACK})
SKIP_REASON = (
    "overlap=skip: run reports.nightly@20261130T020000Z of this job is still queued or running"
)
# Redis's compact hash encodings (6.x calls it ziplist, 7.x listpack).
COMPACT = {"listpack", "ziplist"}
RECORD_MAX = 800


def _raw(store: Store) -> RedisStore:
    assert isinstance(store, RedisStore)
    return store


def _started(store: Store, job: str, at: datetime, worker: str = WORKER) -> str:
    run_id = run_id_for(job, at)
    settings = fire_settings("default", overlap="allow", timeout_s=30.0)
    store.enqueue_many([Fire(run_id, job, at, settings)])
    assert store.wait_for_run(worker, ["default"], 0.1) == run_id
    assert store.claim(worker, run_id, 30) is not None
    return run_id


def _finished(store: Store, at: datetime, status: RunStatus, fields: dict[str, object]) -> str:
    run_id = _started(store, "reports.nightly", at)
    store.heartbeat(WORKER, 30, run_id, 4242, (len(OUTPUT), OUTPUT))
    store.finish(WORKER, run_id, "reports.nightly", status, 0.25, fields)
    return run_id


def _record(store: Store, run_id: str) -> tuple[int, str]:
    """MEMORY USAGE (every field counted, not sampled) and encoding of the run's record."""
    r = _raw(store).redis
    key = _raw(store).keys.run(run_id)
    return int(r.memory_usage(key, samples=0) or 0), str(r.object("encoding", key))


def test_a_run_record_stays_compact_and_under_800_bytes(store: Store) -> None:
    completed = _finished(
        store,
        T0,
        RunStatus.COMPLETED,
        {
            "exit_code": 0,
            "pid": 4242,
            "max_rss_kb": 23456,
            "cpu_s": 0.031,
            "output": OUTPUT,
            "output_bytes": len(OUTPUT),
            "result": json.dumps({"rows": 1200, "file": "/backups/x" * 20}),
        },
    )
    failed = _finished(
        store,
        T0 + timedelta(seconds=1),
        RunStatus.FAILED,
        {
            "exit_code": 1,
            "reason": "raised ValueError: " + "boom " * 30,
            "error": ERROR,
            "output": OUTPUT,
            "output_bytes": len(OUTPUT),
        },
    )
    at = T0 + timedelta(seconds=2)
    skipped = run_id_for("reports.nightly", at)
    skip = fire_settings("default", outcome=RunStatus.SKIPPED, reason=SKIP_REASON)
    store.enqueue_many([Fire(skipped, "reports.nightly", at, skip)])
    lost = _started(store, "reports.nightly", T0 + timedelta(seconds=3), "host-b:77:00aa11bb")
    store.heartbeat("host-b:77:00aa11bb", 30, lost, 77, (len(OUTPUT), OUTPUT))
    running = _record(store, lost)  # with its live output
    assert store.lose_runs_of("host-b:77:00aa11bb", "its worker host-b:77:00aa11bb died") == [lost]

    sizes = {
        "completed, 1 KiB output": _record(store, completed),
        "failed with a traceback": _record(store, failed),
        "skipped": _record(store, skipped),
        "running, live output": running,
        "lost": _record(store, lost),
    }
    for what, (size, encoding) in sizes.items():
        assert encoding in COMPACT, f"{what}: {encoding} ({size} bytes)"
        assert size <= RECORD_MAX, f"{what}: {size} bytes"

    # Read back whole, in one place.
    run = store.get_run(completed)
    assert run.output == OUTPUT and run.result == {"rows": 1200, "file": "/backups/x" * 20}
    run = store.get_run(failed)
    assert run.error == json.loads(ERROR) and run.reason == "raised ValueError: " + "boom " * 30
    assert run.output == OUTPUT
    assert store.get_run(skipped).reason == SKIP_REASON
    assert store.get_run(lost).status is RunStatus.LOST
    assert store.live_output(lost) == (RunStatus.LOST, 0, "")
    assert {r.id: r.reason for r in store.history(limit=10)}[skipped] == SKIP_REASON
    # Summaries read the record alone: the reason's short copy, cut at a character.
    rows = {row.id: row for row in store.summaries([skipped, failed]) if row}
    assert rows[skipped].reason == SKIP_REASON.encode()[:61].decode() + "\u2026"
    assert len(str(rows[failed].reason).encode()) <= 64


def test_live_output_lives_beside_the_record_and_goes_when_the_run_ends(store: Store) -> None:
    run_id = _started(store, "reports.nightly", T0)
    for total in (1000, 2000, 3000):
        store.heartbeat(WORKER, 30, run_id, 4242, (total, OUTPUT))
        assert _record(store, run_id)[1] in COMPACT
        assert store.live_output(run_id) == (RunStatus.RUNNING, total, OUTPUT)
    store.finish(WORKER, run_id, "reports.nightly", RunStatus.COMPLETED, 1.0, {"exit_code": 0})
    assert store.live_output(run_id) == (RunStatus.COMPLETED, 0, "")
    raw = store.raw_run(run_id)
    assert "live_output" not in raw and "live_total" not in raw


def test_output_past_the_cap_is_cut_with_a_marker(store: Store) -> None:
    huge = "x" * 100 + "é" * 50_000 + "the end\n"  # 100,108 bytes of UTF-8
    traceback = "Traceback\n" + "  frame\n" * 20_000 + "ValueError: last\n"
    error = json.dumps({"type": "ValueError", "message": "m" * 100_000, "traceback": traceback})
    run_id = _finished(
        store, T0, RunStatus.FAILED, {"output": huge, "error": error, "reason": "r" * 100_000}
    )
    run = store.get_run(run_id)
    assert run.output is not None and run.output.endswith("é" * 1000 + "the end\n")
    head, body = run.output.split("\n", 1)
    assert head == f"[... {len(huge.encode()) - len(body.encode())} earlier bytes not kept ...]"
    assert TEXT_LIMIT - 4 < len(body.encode()) <= TEXT_LIMIT
    assert run.error is not None and run.error["traceback"].endswith("ValueError: last\n")
    assert len(json.dumps(run.error).encode()) <= TEXT_LIMIT + 400
    assert "more bytes not kept" in run.error["message"]
    assert run.reason is not None and run.reason.startswith("r" * 1000)
    assert run.reason.endswith(f"[... {100_000 - TEXT_LIMIT} more bytes not kept]")
    assert _record(store, run_id)[1] in COMPACT


def test_retention_forgets_the_side_key_with_the_record(store: Store) -> None:
    first = _finished(store, T0, RunStatus.COMPLETED, {"output": OUTPUT})
    second = _finished(store, T0 + timedelta(seconds=1), RunStatus.COMPLETED, {"output": OUTPUT})
    raw = _raw(store)
    assert raw.redis.exists(raw.keys.out(first), raw.keys.out(second)) == 2
    assert store.trim(["reports.nightly"], Retention(keep_runs=1)) == 1
    assert raw.redis.exists(raw.keys.run(first), raw.keys.out(first)) == 0
    assert store.get_run(second).output == OUTPUT
    assert store.trim(["reports.nightly"], Retention(keep_total=0, keep_runs=5)) == 1
    assert [k for k in raw.redis.keys("*") if ":out:" in k or ":run:" in k] == []


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.FAILED])
def test_a_record_of_the_previous_version_reads_whole(store: Store, status: RunStatus) -> None:
    """Before the side key, a record kept its output, error, result and live output itself."""
    raw = _raw(store)
    run_id = run_id_for("reports.nightly", T0)
    ms = int(T0.timestamp() * 1000)
    fields = {
        "id": run_id,
        "job": "reports.nightly",
        "scheduled_for": ms,
        "enqueued_at": ms + 2,
        "started_at": ms + 5,
        "status": str(status),
        "trigger": "schedule",
        "attempt": 1,
        "queue": "default",
        "worker": WORKER,
        "timeout_s": "30.0",
    }
    if status is RunStatus.RUNNING:
        fields |= {"live_total": 5000, "live_output": OUTPUT}
        raw.redis.zadd(raw.keys.running, {run_id: raw.server_time_ms() + 30_000})
        raw.redis.sadd(raw.keys.active("reports.nightly"), run_id)
    else:
        fields |= {
            "finished_at": ms + 900,
            "duration_s": "0.895",
            "exit_code": 1,
            "reason": "raised ValueError: " + "boom " * 30,
            "error": ERROR,
            "output": OUTPUT,
            "output_bytes": 1024,
            "result": json.dumps("x" * 100),
        }
    raw.redis.hset(raw.keys.run(run_id), mapping=fields)
    indexes = (raw.keys.all_runs, raw.keys.by_job("reports.nightly"), raw.keys.by_status(status))
    for index in indexes:
        raw.redis.zadd(index, {run_id: ms})

    [listed] = store.history(limit=5)
    assert listed == store.get_run(run_id)
    if status is RunStatus.RUNNING:
        assert store.live_output(run_id) == (RunStatus.RUNNING, 5000, OUTPUT)
        # The new version's report lands on it: the old live output goes, the output is kept.
        recorded, _ = store.finish(
            WORKER, run_id, "reports.nightly", RunStatus.COMPLETED, 1.0, {"output": OUTPUT}
        )
        assert recorded
        assert "live_output" not in raw.redis.hkeys(raw.keys.run(run_id))
        assert store.live_output(run_id) == (RunStatus.COMPLETED, len(OUTPUT), OUTPUT)
    else:
        assert listed.output == OUTPUT and listed.error == json.loads(ERROR)
        assert listed.reason == "raised ValueError: " + "boom " * 30
        assert listed.result == "x" * 100
        assert store.live_output(run_id) == (RunStatus.FAILED, 1024, OUTPUT)
        assert store.summaries([run_id])[0] is not None
    assert store.trim(["reports.nightly"], Retention(keep_runs=0)) == 1
    assert not raw.redis.exists(raw.keys.run(run_id))
