"""Failover through Redis Sentinel, for real: a primary, a replica and three sentinels.

All on loopback, from the redis-server binary sched ships with (its sentinel mode). Two
schedulers and two workers run a burst of fires on a redis+sentinel:// URL; then `SENTINEL
FAILOVER` (a planned switch), then SIGKILL of the new primary (an unplanned one). Counted:
duplicates (target 0), fires lost to asynchronous replication, reports delivered twice, process
exits, time to resume after each switch. The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from scheduler.embedded import find_server_binary
from scheduler.model import RunStatus
from scheduler.store import Store
from tests.helpers import stop_process, wait_for

HERE = Path(__file__).parent
MASTER = "sched-primary"
EVERY = timedelta(seconds=0.5)  # tests/deploy/jobs_sentinel/burst.py
JOB = "burst.burst"
MAX_LOST_FIRES = 6  # 3 s of fires


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Topology:
    """A primary, a replica, three sentinels and the sched processes, each with its log."""

    folder: Path
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def redis(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], socket_timeout=2, decode_responses=True)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{self.ports[f'sentinel{i}']}" for i in (1, 2, 3))
        return f"redis+sentinel://{hosts}/{MASTER}"

    def master_port(self) -> int | None:
        """The primary's port as a majority of the sentinels name it (None: no majority)."""
        seen = []
        for i in (1, 2, 3):
            try:
                addr = self.redis(f"sentinel{i}").sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            if addr:
                seen.append(int(addr[1]))
        best = max(set(seen), key=seen.count, default=None)
        return best if best is not None and seen.count(best) >= 2 else None

    def replicating(self, name: str) -> bool:
        """Whether server `name` is a replica whose link to its primary is up."""
        try:
            return bool(self.redis(name).info("replication").get("master_link_status") == "up")
        except redis.RedisError:
            return False

    def stop(self, name: str, timeout: float = 30) -> int:
        return stop_process(self.procs[name], timeout)


@pytest.fixture()
def topology(tmp_path: Path) -> Iterator[Topology]:
    names = ["a", "b", "sentinel1", "sentinel2", "sentinel3"]
    t = Topology(tmp_path, dict(zip(names, free_ports(len(names)), strict=True)))
    server = find_server_binary()
    for name, extra in (("a", []), ("b", ["--replicaof", "127.0.0.1", str(t.ports["a"])])):
        data = tmp_path / name
        data.mkdir()
        t.start(
            name,
            [server, "--port", str(t.ports[name]), "--bind", "127.0.0.1", "--dir", str(data)]
            + ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
            + ["--maxmemory-policy", "noeviction", *extra],
        )
    for i in (1, 2, 3):
        conf = tmp_path / f"sentinel{i}.conf"
        conf.write_text(
            f"port {t.ports[f'sentinel{i}']}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {t.ports['a']} 2\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        t.start(f"sentinel{i}", [server, str(conf), "--sentinel"])
    try:
        wait_for(lambda: t.master_port() == t.ports["a"], 30, "the sentinels to agree on a")

        wait_for(lambda: t.replicating("b"), 30, "the replica to sync")

        def sentinels_see_all() -> bool:
            try:
                s = t.redis("sentinel1")
                master = s.sentinel_master(MASTER)
                return bool(master["num-other-sentinels"] >= 2 and s.sentinel_slaves(MASTER))
            except redis.RedisError:
                return False

        wait_for(sentinels_see_all, 30, "the sentinels to find each other and the replica")
        yield t
    finally:
        for name in list(t.procs):
            t.stop(name, 10)


def sched_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(
        SCHED_REDIS_URL=url,
        SCHED_JOBS=str(HERE / "jobs_sentinel"),
        SCHED_LEASE="3s",
        SCHED_GRACE="0.5s",
        PYTHONPATH=os.environ.get("PYTHONPATH", str(HERE.parents[1])),
    )
    return env


def completed_after(store: Store, moment: datetime, n: int) -> bool:
    try:
        runs = store.history(job=JOB, statuses=[RunStatus.COMPLETED], limit=200)
    except Exception:  # the store is failing over too
        return False
    return len([r for r in runs if r.scheduled_for > moment]) >= n


@pytest.mark.timeout(240)
def test_sentinel_failover_then_sigkill_of_the_new_primary(topology: Topology) -> None:
    t = topology
    env = sched_env(t.url)
    sched = [sys.executable, "-m", "scheduler"]
    for name in ("scheduler1", "scheduler2"):
        t.start(name, [*sched, "scheduler"], env)
    for name in ("worker1", "worker2"):
        t.start(name, [*sched, "worker", "--workers", "2"], env)
    store = Store(t.url)
    start = datetime.now(UTC)
    wait_for(lambda: completed_after(store, start, 10), 60, "a first burst of runs")

    # 1. A planned switch: the sentinels promote b and make a its replica.
    t.redis("sentinel1").execute_command("SENTINEL", "FAILOVER", MASTER)
    switched = time.monotonic()
    wait_for(lambda: t.master_port() == t.ports["b"], 30, "b to be the primary")
    promoted_s = time.monotonic() - switched
    at = datetime.now(UTC)
    wait_for(lambda: completed_after(store, at, 4), 60, "runs after the failover")
    resume_planned_s = time.monotonic() - switched

    # 2. An unplanned one: the new primary is killed; a (its replica now) takes over.
    wait_for(lambda: t.replicating("a"), 30, "a to replicate b")
    t.procs["b"].kill()
    killed = time.monotonic()
    killed_at = datetime.now(UTC)
    wait_for(lambda: t.master_port() == t.ports["a"], 60, "a to be the primary again")
    promoted_after_kill_s = time.monotonic() - killed
    wait_for(lambda: completed_after(store, killed_at, 4), 60, "runs after the kill")
    resume_kill_s = time.monotonic() - killed
    end = datetime.now(UTC)
    wait_for(lambda: completed_after(store, end, 4), 60, "runs go on")

    exited = {n: p.returncode for n, p in t.procs.items() if n != "b" and p.poll() is not None}
    for name in ("scheduler1", "scheduler2", "worker1", "worker2"):
        assert t.stop(name) == 0, t.log(name)[-3000:]
    assert not exited, f"exited during the failovers: {exited}"

    runs = store.history(job=JOB, limit=100_000)
    instants = sorted(r.scheduled_for for r in runs)
    duplicates = len(instants) - len(set(instants))
    expected = int((instants[-1] - instants[0]) / EVERY) + 1
    lost_fires = expected - len(set(instants))
    gaps = [
        (f"{a:%H:%M:%S.%f}"[:-3], round((b - a).total_seconds(), 1))
        for a, b in zip(instants, instants[1:], strict=False)
        if b - a > EVERY
    ]
    twice = [r.id for r in runs if "late_report" in store.raw_run(r.id)]
    statuses = {str(s): len([r for r in runs if r.status is s]) for s in {r.status for r in runs}}
    sched_names = ("scheduler1", "scheduler2", "worker1", "worker2")
    tracebacks = [n for n in sched_names if "Traceback" in t.log(n)]
    print(
        f"figures: {len(runs)} runs over {(instants[-1] - instants[0]).total_seconds():.0f}s; "
        f"duplicates {duplicates}; fires missing {lost_fires}; reports twice {len(twice)}; "
        f"statuses {statuses}; planned failover: b primary after {promoted_s:.1f}s, runs "
        f"resumed after {resume_planned_s:.1f}s; SIGKILL of b: a primary after "
        f"{promoted_after_kill_s:.1f}s, runs resumed after {resume_kill_s:.1f}s; "
        f"tracebacks in {tracebacks}; gaps (start, seconds) {gaps}"
    )
    late = [line for n in sched_names for line in t.log(n).splitlines() if "late" in line]
    doubles = {run_id: store.raw_run(run_id)["late_report"] for run_id in twice}
    store.close()
    assert duplicates == 0, "a fire was enqueued twice"
    # A run claimed on the old primary in that second may be claimed again on the new one
    # (the claim was among the discarded writes): the first worker's report then comes late.
    assert len(twice) <= MAX_LOST_FIRES, f"reports delivered twice: {doubles} {late}"
    print(f"figures: reports twice: {doubles} {late}")
    assert not tracebacks, [t.log(n)[-3000:] for n in tracebacks]
    # Lost to the switches: the writes a client sent to the old primary in the second before
    # it saw the new one (FollowingPrimaryPool), and what the killed primary had not yet
    # replicated. Without the pool's check the first alone was about 10 s of fires.
    assert lost_fires <= MAX_LOST_FIRES, f"{lost_fires} fires lost: gaps {gaps}"
