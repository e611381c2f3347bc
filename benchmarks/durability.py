"""7. Durability: what `?wait_replicas=1` costs, on a primary with one replica on loopback.

The Redis URL may ask that every fire and every report be held by N replicas before it
counts (`?wait_replicas=1&wait_timeout_ms=...`, scheduler/urls.py): the store then sends WAIT
after those writes. This benchmark starts a primary and a replica (redis-server on 127.0.0.1,
TCP, no persistence: replication needs TCP), and measures, with the knob at 0 and at 1 on the
same pair (so the replica's own cost is in both):
- runs/s of no-op jobs through `sched worker` (as in scaling.py: enqueue when ready, last
  `finished_at`), with its CPU split and the server's count of WAIT commands per run;
- fire -> first line of a per-second job (`sched scheduler` + `sched worker`, as fire.py).
The WAIT count says whether the store honours the knob: 0 per run means it sends none.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import fire, scaling, throughput
from benchmarks.common import Config, Result, median, progress, stop_process, summary, workdir
from benchmarks.schedules import generate

WAIT_TIMEOUT_MS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    from scheduler.embedded import find_server_binary

    folder.mkdir(parents=True, exist_ok=True)
    argv = [find_server_binary(), "--bind", "127.0.0.1", "--port", str(port)]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(folder), "--protected-mode", "no"]
    with open(folder / "redis.log", "ab") as log:
        return subprocess.Popen(
            [*argv, *extra], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


@contextmanager
def primary_and_replica(folder: Path) -> Iterator[tuple[str, int]]:
    """A primary with one replica in sync, on loopback: (primary URL, primary pid)."""
    import redis

    ports = _free_port(), _free_port()
    procs = [_server(folder / "primary", ports[0])]
    procs.append(_server(folder / "replica", ports[1], "--replicaof", "127.0.0.1", str(ports[0])))
    url = f"redis://127.0.0.1:{ports[0]}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if int(client.info("replication").get("connected_slaves", 0)) >= 1:
                    break
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not connect to the primary: see {folder}")
            time.sleep(0.1)
        # A WAIT that returns 1 says the replica acknowledges writes.
        client.set("bench:probe", "1")
        if int(client.execute_command("WAIT", 1, 5000)) < 1:
            raise RuntimeError("the replica does not acknowledge writes (WAIT 1 returned 0)")
        client.delete("bench:probe")
        yield url, procs[0].pid
    finally:
        client.close()
        for proc in reversed(procs):
            stop_process(proc)


def _url(base: str, replicas: int) -> str:
    if replicas == 0:
        return base
    return f"{base}?wait_replicas={replicas}&wait_timeout_ms={WAIT_TIMEOUT_MS}"


def run(cfg: Config) -> Result:
    n = cfg.pick(2000, 200, 20)
    reps = cfg.pick(3, 1, 1)
    fires = cfg.pick(30, 5, 1)
    n_others = cfg.pick(1000, 100, 10)
    result = Result("durability")
    others = generate(n_others, quiet_s=4 * fires + 900, prefix="other", portable=True)
    samples: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    delays: dict[int, list[float]] = {0: [], 1: []}
    with workdir("dur") as folder, primary_and_replica(folder) as (base, pid):
        for rep in range(reps):
            for replicas in (0, 1):
                progress(f"durability {rep + 1}/{reps}: wait_replicas={replicas}, {n} no-op jobs")
                url = _url(base, replicas)
                sample = scaling.measure(
                    url, pid, folder, n, 1, throughput.JOB, throughput.JOB_FILE
                )
                samples[replicas].append(sample)
                progress(
                    f"durability: wait_replicas={replicas}: {sample['per_s']:.0f}/s, "
                    f"{sample['wait_commands_per_run']:.2f} WAIT per run"
                )
        for replicas in (0, 1):
            progress(f"durability: wait_replicas={replicas}, fire -> first line, {fires} fires")
            _flush(base)
            where = folder / f"fire-{replicas}"
            where.mkdir()
            runs = fire._ours(_url(base, replicas), where, others, fires)
            delays[replicas] = [1000 * s["delay_s"] for s in runs]
    result.raw = {"samples": samples, "fire_ms": delays, "wait_timeout_ms": WAIT_TIMEOUT_MS}
    _rows(result, samples, delays)
    return result


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def _rows(
    result: Result, samples: dict[int, list[dict[str, Any]]], delays: dict[int, list[float]]
) -> None:
    rate = {k: median([s["per_s"] for s in v]) or 0.0 for k, v in samples.items()}
    waits = {k: median([s["wait_commands_per_run"] for s in v]) or 0.0 for k, v in samples.items()}
    cpu = {
        k: median([sum(s["cpu_ms_per_run"].values()) for s in v]) or 0.0 for k, v in samples.items()
    }
    n = samples[0][0]["n"]
    pairs = zip(samples[1], samples[0], strict=True)
    paired = "/".join(f"{a['per_s'] / b['per_s']:.2f}" for a, b in pairs)
    redis = {
        k: median([s["cpu_ms_per_run"]["redis"] for s in v]) or 0.0 for k, v in samples.items()
    }
    result.add(
        f"{n:,} no-op jobs, 1 worker, wait_replicas=1 (1 replica, loopback)",
        rate[1],
        "runs/s",
        fmt="{:.0f}",
        comparison=(
            f"wait_replicas=0 on the same pair {rate[0]:.0f}/s ({100 * rate[1] / rate[0]:.0f} %; "
            f"each repetition {paired}); WAIT per run {waits[1]:.2f} vs {waits[0]:.2f}; CPU/run "
            f"incl. redis {cpu[1]:.2f} vs {cpu[0]:.2f} ms, of it the primary's "
            f"{redis[1]:.2f} vs {redis[0]:.2f}"
        ),
        target="report",
    )
    ms = {k: summary(v) for k, v in delays.items()}
    result.add(
        f"median fire -> first line, wait_replicas=1 ({ms[1]['n']} fires)",
        ms[1]["median"],
        "ms",
        comparison=(
            f"wait_replicas=0 {ms[0]['median']:.1f} ms; p99 {ms[1]['p99']:.1f} vs "
            f"{ms[0]['p99']:.1f} ms"
        ),
        target="report",
    )
