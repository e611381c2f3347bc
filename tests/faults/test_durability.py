"""The durability knob, for real: `?wait_replicas=1` on a primary with one replica on loopback.

With the knob, a fire (an enqueue) or a report (finish, restore, lost, killed, refused) counts
as done only once the replica holds it: the store sends WAIT after the write in the same round
trip and raises StoreUnavailable when the replica did not acknowledge it in time, so the caller
sends it again, as after any outage. Faulted with real signals: SIGSTOP of the replica (WAIT
times out), SIGKILL of the primary and REPLICAOF NO ONE on the replica (a failover).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from scheduler.embedded import find_server_binary
from scheduler.errors import StoreUnavailable
from scheduler.model import RunStatus, run_id_for
from scheduler.policy import Retry
from scheduler.store import Fire, RedisStore, Store, fire_settings
from tests.faults.conftest import Cluster
from tests.helpers import wait_for

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
NOT_ACKNOWLEDGED = "replicas did not acknowledge"
OUTAGE = re.compile(r"(scheduler|worker \S+): Redis unavailable since ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pair:
    """A primary and its replica, redis-server processes of this test's own."""

    folder: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *extra: str) -> None:
        data = self.folder / name
        data.mkdir(parents=True, exist_ok=True)
        self.ports[name] = port = _free_port()
        argv = [find_server_binary(), "--bind", "127.0.0.1", "--port", str(port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(data), *extra]
        with (data / "redis.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def url(self, name: str = "primary", wait: int | None = 1, timeout_ms: int = 300) -> str:
        query = f"?wait_replicas={wait}&wait_timeout_ms={timeout_ms}" if wait is not None else ""
        return f"redis://127.0.0.1:{self.ports[name]}/0{query}"

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], socket_timeout=5, decode_responses=True)

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.procs[name].pid, sig)

    def in_sync(self) -> bool:
        """The replica's link is up and it holds every write the primary took."""
        try:
            primary = self.client("primary").info("replication")
            replica = self.client("replica").info("replication")
        except redis.RedisError:
            return False
        return bool(
            replica.get("master_link_status") == "up"
            and replica.get("slave_repl_offset") == primary.get("master_repl_offset")
        )


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path / "redis")
    p.start("primary")
    p.start("replica", "--replicaof", "127.0.0.1", str(p.ports["primary"]))
    try:
        wait_for(p.in_sync, 30, "the replica to sync")
        yield p
    finally:
        for proc in p.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped server cannot take SIGTERM
                proc.terminate()
        for proc in p.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _fire(store: Store, job: str, at: datetime) -> tuple[str, bool, RunStatus | None]:
    run_id = run_id_for(job, at)
    settings = fire_settings("default", overlap="allow", timeout_s=30.0)
    [done] = store.enqueue_many([Fire(run_id, job, at, settings)])
    return run_id, done.created, done.status


def _waits(client: redis.Redis) -> int:
    """How many WAIT commands the server has run since its statistics were reset."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_wait_is_sent_after_fires_and_reports_only_when_the_url_asks(pair: Pair) -> None:
    primary = pair.client("primary")
    for wait, expected in ((None, 0), (0, 0), (1, 3)):
        store = Store(pair.url(wait=wait))
        assert isinstance(store, RedisStore) and store.durability.replicas == (wait or 0)
        primary.config_resetstat()
        run_id, created, _ = _fire(store, f"knob{wait}", T0)
        assert created
        assert store.wait_for_run("w", ["default"], 0.1) == run_id
        assert store.claim("w", run_id, 10) is not None
        store.finish("w", run_id, f"knob{wait}", RunStatus.COMPLETED, 0.1, {"output": "x" * 100})
        assert _waits(primary) == expected, f"wait_replicas={wait}"  # enqueue, claim, finish
        store.close()


def test_a_write_the_replica_did_not_acknowledge_is_refused_and_counts_once_when_sent_again(
    pair: Pair,
) -> None:
    store = Store(pair.url(wait=1, timeout_ms=200))
    assert isinstance(store, RedisStore)
    pair.signal("replica", signal.SIGSTOP)
    with pytest.raises(StoreUnavailable, match=NOT_ACKNOWLEDGED):
        _fire(store, "job", T0)
    # The primary took it; only the replica is missing it: sending it again must not add a run.
    pair.signal("replica", signal.SIGCONT)
    wait_for(pair.in_sync, 20, "the replica to catch up")
    run_id, created, status = _fire(store, "job", T0)
    assert (created, status) == (False, RunStatus.QUEUED)
    assert store.queue_depth("default") == 1
    assert store.wait_for_run("w", ["default"], 0.1) == run_id
    assert store.claim("w", run_id, 10) is not None

    retry = Retry(f"{run_id}#2", 60_000, 2)
    report = ("w", run_id, "job", RunStatus.FAILED, 0.5, {"reason": "raised ValueError: x"})
    pair.signal("replica", signal.SIGSTOP)
    with pytest.raises(StoreUnavailable, match=NOT_ACKNOWLEDGED):
        store.finish(*report, retry)
    pair.signal("replica", signal.SIGCONT)
    wait_for(pair.in_sync, 20, "the replica to catch up")
    assert store.finish(*report, retry) == (True, RunStatus.FAILED)
    runs = store.history(job="job", limit=10)
    assert sorted((r.id, r.status) for r in runs) == [
        (run_id, RunStatus.FAILED),
        (f"{run_id}#2", RunStatus.QUEUED),
    ]
    assert int(store.redis.zcard(store.keys.delayed)) == 1  # one retry, not two
    store.close()


def test_a_claim_counts_only_once_the_replica_holds_it_so_a_failover_cannot_run_it_twice(
    pair: Pair,
) -> None:
    store = Store(pair.url(wait=1, timeout_ms=200))
    run_id, _, _ = _fire(store, "job", T0)
    assert store.wait_for_run("w", ["default"], 0.1) == run_id
    pair.signal("replica", signal.SIGSTOP)
    with pytest.raises(StoreUnavailable, match=NOT_ACKNOWLEDGED):
        store.claim("w", run_id, 10)  # not acknowledged: the worker must not start it
    pair.signal("replica", signal.SIGCONT)
    wait_for(pair.in_sync, 20, "the replica to catch up")
    claimed = store.claim("w", run_id, 10)  # asked again: it went through, and answers again
    assert claimed is not None and claimed.run.id == run_id
    assert store.claim("w2", run_id, 10) is None  # and to nobody else
    # A failover now: the promoted replica knows the run is taken, so no worker takes it again.
    pair.signal("primary", signal.SIGKILL)
    pair.procs["primary"].wait(10)
    pair.client("replica").replicaof("NO", "ONE")
    after = Store(pair.url("replica", wait=0))
    run = after.get_run(run_id)
    assert (run.status, run.worker) == (RunStatus.RUNNING, "w")
    assert after.claim("w2", run_id, 10) is None
    for s in (store, after):
        s.close()


def test_a_fire_acknowledged_by_the_replica_survives_the_primary_and_one_without_is_lost(
    pair: Pair,
) -> None:
    durable, plain = Store(pair.url(wait=1)), Store(pair.url(wait=0))
    kept, _, _ = _fire(durable, "job", T0)  # acknowledged by the replica
    assert durable.wait_for_run("w", ["default"], 0.1) == kept
    assert durable.claim("w", kept, 10) is not None
    assert durable.finish("w", kept, "job", RunStatus.COMPLETED, 0.1, {"output": "y" * 200})[0]
    # The replica is cut off (it follows a primary that is not there): it gets nothing more.
    pair.client("replica").replicaof("127.0.0.1", str(_free_port()))
    lost, created, _ = _fire(plain, "job", T0 + timedelta(seconds=1))
    assert created  # counted as done without the knob
    with pytest.raises(StoreUnavailable, match=NOT_ACKNOWLEDGED):
        _fire(durable, "job", T0 + timedelta(seconds=2))  # with it: not done, sent again
    pair.signal("primary", signal.SIGKILL)
    pair.procs["primary"].wait(10)
    pair.client("replica").replicaof("NO", "ONE")
    after = Store(pair.url("replica", wait=0))
    run = after.get_run(kept)
    assert (run.status, run.output) == (RunStatus.COMPLETED, "y" * 200)
    ids = {r.id for r in after.history(job="job", limit=10)}
    assert lost not in ids, "the fire counted without the knob should be lost with the primary"
    assert ids == {kept}
    for s in (durable, plain, after):
        s.close()


JOBS = """
from scheduler import job


@job(every="1s", name="tick", overlap="allow", catchup="latest", timeout="10s")
def tick():
    import os
    with open({path!r}, "a") as out:
        out.write(os.environ["SCHED_RUN_ID"] + "\\n")
"""


def _completed(store: Store, after: datetime) -> int:
    runs = store.history(job="tick", statuses=[RunStatus.COMPLETED], since=after, limit=100)
    return len(runs)


def test_a_stopped_replica_holds_fires_and_reports_until_it_answers_then_each_counts_once(
    pair: Pair, cluster: Cluster, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.txt"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "tick.py").write_text(JOBS.format(path=str(ran)))
    url = pair.url(wait=1, timeout_ms=300)
    store = Store(url)
    cluster.start("s", str(jobs), "scheduler", url=url)
    cluster.start("w", str(jobs), "worker", url=url)
    wait_for(lambda: _completed(store, T0) >= 2, 30, "ticks before the fault")

    pair.signal("replica", signal.SIGSTOP)
    wait_for(lambda: NOT_ACKNOWLEDGED in cluster.log("s"), 20, "the scheduler to see it")
    wait_for(lambda: NOT_ACKNOWLEDGED in cluster.log("w"), 20, "the worker to see it")
    time.sleep(3)  # the fault itself: fires and reports keep coming for 3 s
    assert all(proc.poll() is None for proc in cluster.procs.values()), "a process exited"
    pair.signal("replica", signal.SIGCONT)
    back = datetime.now(UTC)
    wait_for(lambda: _completed(store, back) >= 2, 30, "ticks after the replica answers")
    wait_for(lambda: "Redis available again" in cluster.log("w"), 20, "the worker's reports")
    assert all(proc.poll() is None for proc in cluster.procs.values()), "a process exited"
    for name in ("s", "w"):
        assert len(OUTAGE.findall(cluster.log(name))) == 1, cluster.log(name)
        assert cluster.stop(name) == 0

    executed = ran.read_text().split()
    assert len(executed) == len(set(executed)), "a run executed twice"
    runs = store.history(job="tick", limit=1000)
    assert len({r.id for r in runs}) == len(runs)
    assert len({r.scheduled_for for r in runs}) == len(runs), "two runs for one fire"
    completed = {r.id for r in runs if r.status is RunStatus.COMPLETED}
    assert completed == set(executed), "a report lost or recorded for a run never executed"
    store.close()
