"""5. History: query time over 1,000,000 stored runs, and Redis memory per run.

A Lua bulk loader writes run hashes and the four indexes exactly as the store's scripts do
(`idx:all`, `idx:job:<job>`, `idx:status:<status>`, each scored by `scheduled_for`), with
key names taken from `scheduler.store.Keys`, and the long texts in the run's side key when
the store has one (`Keys.out`, the fields of `codec.SIDE_FIELDS`): 1,000 jobs with 1,000
runs each (the default retention), every fifth job per-minute, 90% completed, 5% failed, the
rest timed-out, killed, skipped or missed, with a short output line and, for failures, a
traceback.

Then `Store.history(...)` is timed in-process and the whole `sched history` call as a child
process, for `--limit 50`, `--status failed` and `JOB --since 1h`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Config,
    Result,
    child_env,
    median,
    progress,
    redis_server,
    stop_process,
    workdir,
)

N_JOBS = 1000
QUERY_JOB = "bench.job0"  # per-minute: 60 runs in the last hour
LOADER = """
local run_prefix, all_key, job_prefix, status_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local start, count, now, njobs = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8])
local output, err = ARGV[9], ARGV[10]
-- The store's side key of long texts, when it has one: its prefix and the fields it holds.
local out_prefix, side = ARGV[11], {}
for name in string.gmatch(ARGV[12], '[^,]+') do side[name] = true end
local intervals = {60, 300, 900, 3600, 86400}
local function key_of(id) return run_prefix .. id end
local function civil(z)  -- days since 1970-01-01 -> y, m, d (H. Hinnant's algorithm)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return y, m, d
end
local function stamp(ms)
  local s = math.floor(ms / 1000)
  local y, m, d = civil(math.floor(s / 86400))
  local r = s % 86400
  return string.format('%04d%02d%02dT%02d%02d%02dZ', y, m, d, math.floor(r / 3600),
    math.floor(r / 60) % 60, r % 60)
end
for i = start, start + count - 1 do
  local j = i % njobs
  local every = intervals[(j % #intervals) + 1]
  local fire = (math.floor(now / 1000 / every) - math.floor(i / njobs)) * every * 1000
  local job = 'bench.job' .. j
  local id = job .. '@' .. stamp(fire)
  local r = (i * 7919) % 1000
  local dur = 40 + (i * 31) % 900
  local f = {'id', id, 'job', job, 'scheduled_for', fire, 'enqueued_at', fire + 2,
    'attempt', 1, 'trigger', 'schedule', 'queue', 'default', 'timeout_s', '60.0'}
  local texts = {}
  local function add(...)
    local kv = {...}
    for n = 1, #kv, 2 do
      local into = (out_prefix ~= '' and side[kv[n]]) and texts or f
      into[#into + 1] = kv[n]
      into[#into + 1] = kv[n + 1]
    end
  end
  local status = 'completed'
  if r >= 995 then
    status = 'missed'
    add('reason', 'no scheduler was running (catchup=latest)', 'finished_at', fire + 2)
  elseif r >= 980 then
    status = 'skipped'
    add('reason', 'overlap=skip: run ' .. job .. '@x of this job is still running',
      'finished_at', fire + 2)
  else
    add('started_at', fire + 4, 'finished_at', fire + 4 + dur,
      'duration_s', string.format('%.3f', dur / 1000), 'worker', 'worker-host-1:41234',
      'pid', 100000 + i % 30000, 'max_rss_kb', 30000 + i % 5000, 'cpu_s', '0.031',
      'output', output)
    if r < 900 then
      add('exit_code', 0, 'result', '{"rows": 42}')
    elseif r < 950 then
      status = 'failed'
      add('exit_code', 1, 'reason', 'raised RuntimeError: upstream answered 503', 'error', err)
    elseif r < 970 then
      status = 'timed-out'
      add('exit_code', 124, 'reason', 'deadline of 1m passed: JobTimeout raised', 'error', err)
    else
      status = 'killed'
      add('signal', 'SIGKILL', 'reason', 'killed by SIGKILL')
    end
  end
  add('status', status)
  redis.call('HSET', key_of(id), unpack(f))
  if #texts > 0 then redis.call('HSET', out_prefix .. id, unpack(texts)) end
  redis.call('ZADD', all_key, fire, id)
  redis.call('ZADD', job_prefix .. job, fire, id)
  redis.call('ZADD', status_prefix .. status, fire, id)
end
return count
"""
OUTPUT = "fetched 42 rows from upstream\nwrote report-2026-11-27.csv (3.1 KiB)\n"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/jobs/reports.py", line 41, in nightly_report\n'
    "    rows = fetch(url, timeout=10)\n"
    '  File "/srv/app/jobs/reports.py", line 17, in fetch\n'
    '    raise RuntimeError(f"upstream answered {resp.status}")\n'
    "RuntimeError: upstream answered 503\n"
)


def bulk_load(store: Any, n: int, chunk: int = 20_000) -> None:
    """Write n run records and their index entries (Lua, `chunk` runs per call)."""
    k = store.keys
    error = json.dumps(
        {"type": "RuntimeError", "message": "upstream answered 503", "traceback": TRACEBACK}
    )
    now_ms = int(time.time() * 1000)
    script = store.redis.register_script(LOADER)
    prefixes = [k.run(""), k.all_runs, k.by_job(""), k.by_status("")]
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        args = [*prefixes, start, count, now_ms, N_JOBS, OUTPUT, error]
        script(keys=[], args=[*args, *side_key_args(k)])


def side_key_args(keys: Any) -> list[str]:
    """LOADER's last two arguments: the side key's prefix and its fields, comma-separated."""
    prefix, fields = _side_key_layout(keys)
    return [prefix, ",".join(fields)]


def _side_key_layout(keys: Any) -> tuple[str, tuple[str, ...]]:
    """Where the store keeps a run's long texts: its side key's prefix and fields, or ("", ())
    for a store that keeps them in the record (before 2026-12-01)."""
    try:
        from scheduler.store.codec import SIDE_FIELDS
    except ImportError:
        return "", ()
    out = getattr(keys, "out", None)
    return (out(""), tuple(SIDE_FIELDS)) if out is not None else ("", ())


def _time_in_process(store: Any, queries: dict[str, dict[str, Any]], reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kwargs in queries.items():
        store.history(**kwargs)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            runs = store.history(**kwargs)
            times.append(1000 * (time.perf_counter() - t0))
        out[name] = {"ms": median(times), "all_ms": times, "rows": len(runs)}
    return out


def _time_cli(url: str, queries: dict[str, list[str]], reps: int) -> dict[str, Any]:
    sched = Path(sys.executable).with_name("sched")
    base = [str(sched)] if sched.exists() else [sys.executable, "-m", "scheduler"]
    out: dict[str, Any] = {}
    for name, extra in queries.items():
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            subprocess.run(
                [*base, "--redis-url", url, "history", *extra],
                env=child_env(),
                stdout=subprocess.DEVNULL,
                check=True,
            )
            times.append(1000 * (time.perf_counter() - t0))
        out[name] = {"ms": median(times), "all_ms": times}
    return out


def _memory_layout(store: Any, n: int) -> dict[str, Any]:
    """Where the bytes go: run hashes by status (encoding, MEMORY USAGE) and the indexes."""
    k = store.keys
    out: dict[str, Any] = {"hashes": {}}
    for status in ("completed", "failed", "skipped"):
        ids = store.redis.zrange(k.by_status(status), 0, 0)
        if ids:
            key = k.run(ids[0])
            out["hashes"][status] = {
                "encoding": store.redis.object("encoding", key),
                "bytes": store.redis.memory_usage(key, samples=0),
                "fields": store.redis.hlen(key),
            }
    indexes = [k.all_runs] + [k.by_status(s) for s in ("completed", "failed")]
    index_bytes = sum(int(store.redis.memory_usage(key, samples=0) or 0) for key in indexes)
    sizes = sum(int(store.redis.zcard(key)) for key in indexes)
    out["zset_bytes_per_entry"] = index_bytes / max(sizes, 1)
    out["hash_max_listpack_value"] = store.redis.config_get("hash-max-*-value")
    return out


# -- Redis bytes per stored run, whatever keys a run has -----------------------------------------

OUT_JOB = "bench.output"
OUT_JOB_FILE = f"""from benchmarks import tasks
from scheduler import job


@job("@yearly", name={OUT_JOB!r}, timeout="60s", overlap="allow")
def output() -> None:
    tasks.kib_of_output()
"""


def stored_run_memory(n1: int, n2: int) -> dict[str, Any]:
    """Bytes one completed run with 1 KiB of output adds to Redis, however the store lays it out.

    A real `sched worker` runs n1 runs of a job printing 1 KiB, then n2 - n1 more; the
    `used_memory` delta between the two points over n2 - n1 is what one more run costs
    (record, any side keys, index entries; the worker's own keys cancel out). Then every key
    whose name holds the last run's id (SCAN), with its type, encoding and MEMORY USAGE,
    and the sorted sets that list it: where the bytes are.
    """
    import redis

    from scheduler.model import Overlap, Trigger
    from scheduler.store import Store
    from scheduler.store.records import Fire, fire_settings

    settings = fire_settings(
        "default", overlap=Overlap.ALLOW, trigger=Trigger.MANUAL, timeout_s=60.0, scheduled=False
    )
    with workdir("mem") as folder, redis_server(folder) as server:
        jobs = folder / "jobs"
        jobs.mkdir()
        (jobs / "bench.py").write_text(OUT_JOB_FILE)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = Store(server.url)
        log = folder / "worker.log"
        argv = [sys.executable, "-m", "scheduler", "--jobs", str(jobs), "--redis-url", server.url]
        with open(log, "ab") as fh:
            worker = subprocess.Popen(
                [*argv, "worker"],
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        try:
            used = []
            done = 0
            for target in (n1, n2):
                now = datetime.now(UTC)
                ids = [f"{OUT_JOB}@mem-{i}" for i in range(done, target)]
                store.enqueue_many([Fire(i, OUT_JOB, now, settings) for i in ids])
                _wait_completed(client, store.keys.by_status("completed"), target, worker, log)
                used.append(int(client.info("memory")["used_memory"]))
                done = target
            last = f"{OUT_JOB}@mem-{n2 - 1}"
            run = store.get_run(last)
            layout = _keys_of_run(client, last)
        finally:
            stop_process(worker)
            store.close()
    return {
        "runs": n2 - n1,
        "used_memory": used,
        "bytes_per_run": (used[1] - used[0]) / (n2 - n1),
        "output_bytes": len(run.output or ""),
        "status": str(run.status),
        **layout,
    }


def _wait_completed(client: Any, key: str, n: int, worker: Any, log: Path) -> None:
    deadline = time.monotonic() + 60 + n / 20
    while int(client.zcard(key)) < n:
        if worker.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{client.zcard(key)} of {n} runs completed:\n{tail}")
        time.sleep(0.05)


def _keys_of_run(client: Any, run_id: str) -> dict[str, Any]:
    pattern = "*" + "".join(f"[{c}]" if c in "*?[]\\" else c for c in run_id) + "*"
    keys = []
    for key in sorted(client.scan_iter(match=pattern, count=1000)):
        kind = client.type(key)
        keys.append(
            {
                "key": key,
                "name": key.replace(run_id, "<id>"),
                "type": kind,
                "encoding": client.object("encoding", key),
                "bytes": int(client.memory_usage(key, samples=0) or 0),
                "fields": int(client.hlen(key)) if kind == "hash" else None,
                # The record itself is the hash with the run's status; the rest are side keys.
                "record": kind == "hash" and bool(client.hexists(key, "status")),
            }
        )
    indexes = [
        key
        for key in client.scan_iter(count=1000, _type="zset")
        if client.zscore(key, run_id) is not None
    ]
    return {"keys": keys, "indexes": sorted(indexes)}


def run(cfg: Config) -> Result:
    from scheduler.model import RunStatus
    from scheduler.store import Store

    n = cfg.pick(1_000_000, 50_000, 5_000)
    reps = cfg.pick(7, 3, 1)
    result = Result("history")
    since = datetime.now(UTC) - timedelta(hours=1)
    in_process: dict[str, dict[str, Any]] = {
        "--limit 50": {"limit": 50},
        "--status failed": {"statuses": [RunStatus.FAILED], "limit": 50},
        f"{QUERY_JOB} --since 1h": {"job": QUERY_JOB, "since": since, "limit": 50},
    }
    cli = {
        "--limit 50": ["--limit", "50"],
        "--status failed": ["--status", "failed"],
        f"{QUERY_JOB} --since 1h": [QUERY_JOB, "--since", "1h"],
    }
    with workdir("hist") as folder, redis_server(folder) as server:
        store = Store(server.url)
        before = int(store.redis.info("memory")["used_memory"])
        progress(f"history: loading {n:,} run records")
        t0 = time.perf_counter()
        bulk_load(store, n)
        load_s = time.perf_counter() - t0
        used = int(store.redis.info("memory")["used_memory"]) - before
        stored = int(store.redis.zcard(store.keys.all_runs))
        progress(f"history: {stored:,} runs stored in {load_s:.1f} s; timing queries")
        times = _time_in_process(store, in_process, reps)
        cli_times = _time_cli(server.url, cli, reps)
        layout = _memory_layout(store, stored)
        store.close()
    result.raw = {
        "runs": stored,
        "load_s": load_s,
        "used_memory_bytes": used,
        "in_process": times,
        "cli": cli_times,
        "memory_layout": layout,
        "side_key_prefix": _side_key_layout(store.keys)[0],
    }
    n1, n2 = cfg.pick((200, 1000), (100, 400), (10, 40))
    progress(f"history: Redis bytes per stored run, {n2} runs of 1 KiB output by a sched worker")
    result.raw["stored_run"] = stored_run_memory(n1, n2)
    _rows(result, stored, used, times, cli_times)
    return result


def _rows(result: Result, n: int, used: int, times: dict[str, Any], cli: dict[str, Any]) -> None:
    for name, t in times.items():
        c = cli[name]["ms"]
        result.add(
            f"{n:,} runs: `history {name}`, in-process",
            t["ms"],
            "ms",
            comparison=f"{t['rows']} rows; Store.history()",
            target="< 50 ms",
            met=t["ms"] < 50,
        )
        result.add(
            f"{n:,} runs: `sched history {name}`, whole CLI call",
            c,
            "ms",
            fmt="{:.0f}",
            comparison=f"in-process part {t['ms']:.1f} ms",
            target="< 300 ms",
            met=c < 300,
        )
    layout = result.raw["memory_layout"]
    done = layout["hashes"].get("completed", {})
    result.add(
        f"Redis memory per stored run, the {n:,}-run mix",
        used / max(n, 1),
        "bytes",
        fmt="{:.0f}",
        comparison=(
            f"{used / 2**20:,.0f} MiB (INFO memory delta of the bulk load, "
            f"{'side keys' if result.raw.get('side_key_prefix') else 'no side key'}); a "
            f"completed run's record {done.get('bytes')} B ({done.get('encoding')}), index "
            f"entry {layout['zset_bytes_per_entry']:.0f} B x 3"
        ),
        target="report",
    )
    mem = result.raw["stored_run"]
    keys = "; ".join(f"{k['name']} {k['bytes']} B ({k['encoding']})" for k in mem["keys"])
    result.add(
        "Redis bytes per stored run (completed, 1 KiB output)",
        mem["bytes_per_run"],
        "bytes",
        fmt="{:.0f}",
        comparison=(
            f"used_memory delta over {mem['runs']:,} runs by a sched worker; keys of a run: "
            f"{keys}; in {len(mem['indexes'])} sorted sets"
        ),
        target="<= 800",
        met=mem["bytes_per_run"] <= 800,
    )
    record = next((k for k in mem["keys"] if k["record"]), None)
    side = sum(k["bytes"] for k in mem["keys"] if not k["record"])
    result.add(
        "Redis bytes of a run's record, side keys apart (same runs)",
        record["bytes"] if record else None,
        "bytes",
        fmt="{:.0f}",
        comparison=(
            f"MEMORY USAGE of {record['name'] if record else '?'} "
            f"({record['encoding'] if record else '?'}, {record['fields'] if record else 0} "
            f"fields); side keys {side} B; the output itself {mem['output_bytes']:,} B"
        ),
        target="<= 800",
        met=record is not None and record["bytes"] <= 800,
    )
