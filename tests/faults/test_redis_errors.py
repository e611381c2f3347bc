"""Every Redis error is an outage, never a crash: OOM, READONLY, UNBLOCKED, MASTERDOWN, BUSY,
NOSCRIPT, timeouts, a reply cut mid-way.

Real sched processes against a redis-server of each test's own, faulted by real commands
(CONFIG SET maxmemory, REPLICAOF, a long script from a second client, SCRIPT FLUSH, DEBUG
SLEEP) or by a proxy that cuts a reply. In each, the scheduler and the worker keep
running, a run in progress keeps its horse and its report reaches Redis once it accepts
writes again, and each process logs the outage once, not once per failed call.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import redis

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus
from scheduler.store import RedisStore, Store
from scheduler.store.scripts import load
from tests.faults.conftest import Cluster
from tests.helpers import alive, final, trigger, wait_for

OUTAGE = re.compile(
    r"(?P<who>scheduler|worker \S+): Redis unavailable since \S+ \((?P<what>[^:]+):"
)
BACK = "Redis available again"


_CLIENTS: list[redis.Redis] = []


def admin(cluster: Cluster) -> redis.Redis:
    """A plain client for the test's own commands to the server (CONFIG, REPLICAOF, ...)."""
    client = redis.Redis.from_url(cluster.url, decode_responses=True, socket_timeout=10)
    _CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def raw(store: Store) -> RedisStore:
    assert isinstance(store, RedisStore)
    return store


def running_horse(store: Store, run_id: str) -> int:
    def pid() -> int | None:
        run = store.get_run(run_id)
        return run.pid if run.status is RunStatus.RUNNING else None

    return wait_for(pid, 20, f"{run_id} to be running")


def outages(cluster: Cluster, name: str) -> list[str]:
    return [m.group("what") for m in OUTAGE.finditer(cluster.log(name))]


def logged_outage(cluster: Cluster, name: str, what: str) -> None:
    wait_for(lambda: what in cluster.log(name), 20, f"{name} to log {what!r}")


def assert_one_outage_each(cluster: Cluster, *names: str) -> None:
    """Each process (a `sched worker --workers 2` log holds two) logged the outage once."""
    for name in names:
        text = cluster.log(name)
        assert cluster.procs[name].poll() is None, f"{name} exited:\n{text}"
        who = [m.group("who") for m in OUTAGE.finditer(text)]
        assert who and len(who) == len(set(who)), text
        assert "Traceback" not in text, text


def ticks_after(store: Store, moment: datetime, n: int) -> bool:
    runs = store.history(job="tick", statuses=[RunStatus.COMPLETED], limit=50)
    return len([r for r in runs if r.scheduled_for > moment]) >= n


def finished_once(store: Store, run_id: str) -> None:
    run = final(store, run_id, 30)
    assert run.status is RunStatus.COMPLETED, run
    assert run.output is not None and "steady done" in run.output
    assert "late_report" not in raw(store).raw_run(run_id)  # one report, taken at once
    assert store.get_run(run_id).retry is None


def test_oom_during_a_run_keeps_the_horse_and_delivers_its_report(cluster: Cluster) -> None:
    store, server = cluster.store(), admin(cluster)
    cluster.start("w", "jobs_outage", "worker")
    run_id = trigger(store, "steady")
    horse = running_horse(store, run_id)
    server.config_set("maxmemory", 1)  # every write is refused: OOM (noeviction)
    logged_outage(cluster, "w", "out of memory")
    wait_for(lambda: not alive(horse), 20, "the horse to finish its run")
    assert store.get_run(run_id).status is RunStatus.RUNNING  # its report waits
    server.config_set("maxmemory", 0)
    finished_once(store, run_id)
    wait_for(lambda: BACK in cluster.log("w"), 10, "the worker to see Redis back")
    assert_one_outage_each(cluster, "w")


def test_a_scheduler_started_against_a_full_redis_waits_for_it(cluster: Cluster) -> None:
    store, server = cluster.store(), admin(cluster)
    # A last fire in the past: starting means catching up, which writes.
    server.hset(raw(store).keys.last_fire, "tick", int(time.time() * 1000) - 5000)
    server.config_set("maxmemory", 1)
    cluster.start("s", "jobs_outage", "scheduler")
    cluster.start("w", "jobs_outage", "worker")
    logged_outage(cluster, "s", "out of memory")
    time.sleep(2)  # the fault itself: the scheduler must live through a full Redis
    assert cluster.procs["s"].poll() is None, cluster.log("s")
    freed = datetime.now().astimezone()
    server.config_set("maxmemory", 0)
    wait_for(lambda: ticks_after(store, freed, 2), 30, "ticks once Redis has room")
    assert_one_outage_each(cluster, "s")


def _outlived(cluster: Cluster, fault: Callable[[redis.Redis], None], what: str) -> None:
    """Scheduler and worker outlive `fault` (undone by REPLICAOF NO ONE) during a run."""
    store, server = cluster.store(), admin(cluster)
    cluster.start("s", "jobs_outage", "scheduler")
    cluster.start("w", "jobs_outage", "worker", "--workers", "2")
    started = datetime.now().astimezone()
    wait_for(lambda: ticks_after(store, started, 1), 30, "a first tick")
    run_id = trigger(store, "steady")
    running_horse(store, run_id)
    fault(server)
    for name in ("s", "w"):
        logged_outage(cluster, name, what)
    time.sleep(2)  # the fault itself lasts beyond a lease (2 s) and the run's end
    server.replicaof("NO", "ONE")
    back = datetime.now().astimezone()
    finished_once(store, run_id)
    wait_for(lambda: ticks_after(store, back, 2), 30, "ticks after the fault")
    assert_one_outage_each(cluster, "s", "w")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def test_a_demoted_primary_readonly_and_unblocked(cluster: Cluster) -> None:
    _outlived(cluster, lambda r: r.replicaof("127.0.0.1", _dead_port()), "read-only")


def test_a_replica_without_its_primary_masterdown(cluster: Cluster) -> None:
    def fault(server: redis.Redis) -> None:
        server.config_set("replica-serve-stale-data", "no")
        server.replicaof("127.0.0.1", _dead_port())

    _outlived(cluster, fault, "lost its primary")


def test_a_long_script_of_another_client_busy(cluster: Cluster) -> None:
    store, server = cluster.store(), admin(cluster)
    server.config_set("lua-time-limit", 100)
    cluster.start("s", "jobs_outage", "scheduler")
    cluster.start("w", "jobs_outage", "worker", "--workers", "2")
    started = datetime.now().astimezone()
    wait_for(lambda: ticks_after(store, started, 1), 30, "a first tick")
    run_id = trigger(store, "steady")
    running_horse(store, run_id)
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            admin(cluster).eval("local n = 0 while true do n = n + 1 end", 0)
        except redis.exceptions.ResponseError as exc:
            errors.append(exc)  # ended by SCRIPT KILL

    spinner = threading.Thread(target=spin)
    spinner.start()
    for name in ("s", "w"):
        logged_outage(cluster, name, "busy")
    time.sleep(2)  # the fault itself
    wait_for(lambda: _script_kill(server), 10, "SCRIPT KILL")
    spinner.join(10)
    back = datetime.now().astimezone()
    finished_once(store, run_id)
    wait_for(lambda: ticks_after(store, back, 2), 30, "ticks after the script")
    assert_one_outage_each(cluster, "s", "w")


def _script_kill(server: redis.Redis) -> bool:
    try:
        server.script_kill()
    except redis.exceptions.ResponseError:
        return False
    return True


# Keys of filler data, so that a restarted Redis spends seconds loading it (answering LOADING).
FILLER_KEYS = 2_000_000


def test_redis_loading_its_data_after_a_restart(cluster: Cluster) -> None:
    """A restart of a Redis with a large dataset: for seconds every command gets LOADING."""
    store, server = cluster.store(), admin(cluster)
    server.execute_command("DEBUG", "POPULATE", FILLER_KEYS, "filler", 64)
    server.bgrewriteaof()
    wait_for(lambda: not _rewriting(server), 120, "the AOF rewrite")
    cluster.start("s", "jobs_outage", "scheduler")
    cluster.start("w", "jobs_outage", "worker", "--workers", "2")
    started = datetime.now().astimezone()
    wait_for(lambda: ticks_after(store, started, 1), 30, "a first tick")
    run_id = trigger(store, "steady")
    horse = running_horse(store, run_id)
    store.close()
    with contextlib.suppress(redis.exceptions.ConnectionError):
        server.shutdown()  # a clean restart: the AOF is complete
    cluster.redis.process.wait(30)  # type: ignore[union-attr]
    cluster.redis.stop()
    down = time.monotonic()
    cluster.redis = EmbeddedRedis(cluster.state, appendonly=True).start(timeout_s=120)
    loaded_after = time.monotonic() - down
    # The scheduler and the workers met the loading server, not only a closed socket.
    stats = admin(cluster).info("errorstats")
    assert stats.get("errorstat_LOADING", {}).get("count", 0) > 0, stats
    store = cluster.store()
    finished_once(store, run_id)
    assert not alive(horse)
    back = datetime.now().astimezone()
    t_back = time.monotonic()
    wait_for(lambda: ticks_after(store, back, 1), 30, "ticks after loading")
    resumed_after = time.monotonic() - t_back
    assert_one_outage_each(cluster, "s", "w")
    for name in ("s", "w"):
        assert cluster.stop(name) == 0, cluster.log(name)
    print(
        f"FIGURE loading: Redis loaded after {loaded_after:.1f}s "
        f"({stats['errorstat_LOADING']['count']} LOADING replies); ticks again "
        f"{resumed_after:.1f}s after loading; report delivered once"
    )


def _rewriting(server: redis.Redis) -> bool:
    info = server.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])


def test_scripts_flushed_while_running_are_loaded_again(cluster: Cluster) -> None:
    store, server = cluster.store(), admin(cluster)
    cluster.start("s", "jobs_outage", "scheduler")
    cluster.start("w", "jobs_outage", "worker")
    start = datetime.now().astimezone()
    wait_for(lambda: ticks_after(store, start, 1), 30, "a first tick")
    for _ in range(5):
        server.script_flush()
        flushed = datetime.now().astimezone()
        wait_for(lambda: ticks_after(store, flushed, 1), 30, "a tick after SCRIPT FLUSH")
    for name in ("s", "w"):
        assert cluster.procs[name].poll() is None, cluster.log(name)
        assert "Traceback" not in cluster.log(name)


class CuttingProxy:
    """TCP to the server's unix socket; cuts the reply to the next FINISH call mid-way."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.finish_sha = hashlib.sha1(load("finish").text.encode()).hexdigest().encode()
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.target)
            finishing = threading.Event()
            threading.Thread(target=self._up, args=(client, server, finishing), daemon=True).start()
            threading.Thread(
                target=self._down, args=(server, client, finishing), daemon=True
            ).start()

    def _up(self, client: socket.socket, server: socket.socket, finishing: threading.Event) -> None:
        with contextlib_suppress():
            while data := client.recv(65536):
                if self.armed.is_set() and self.finish_sha in data:
                    self.armed.clear()
                    finishing.set()
                server.sendall(data)
        _close(client, server)

    def _down(
        self, server: socket.socket, client: socket.socket, finishing: threading.Event
    ) -> None:
        with contextlib_suppress():
            while data := server.recv(65536):
                if finishing.is_set():
                    client.sendall(data[:3])  # the first bytes of the reply, then nothing
                    self.cut.set()
                    break
                client.sendall(data)
        _close(client, server)

    def close(self) -> None:
        self.listener.close()


@contextmanager
def contextlib_suppress() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def test_a_reply_cut_mid_way(cluster: Cluster, tmp_path: Path) -> None:
    store = cluster.store()
    proxy = CuttingProxy(str(cluster.redis.socket_path))
    try:
        proxy.armed.set()
        cluster.start("w", "jobs_outage", "worker", url=f"redis://127.0.0.1:{proxy.port}/0")
        run_id = trigger(store, "steady")
        wait_for(proxy.cut.is_set, 30, "the FINISH reply to be cut")
        finished_once(store, run_id)
        second = trigger(store, "steady")
        finished_once(store, second)  # the worker goes on
        assert_one_outage_each(cluster, "w")
    finally:
        proxy.close()


def test_a_stalled_server_timeouts(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", "jobs_outage", "worker")
    run_id = trigger(store, "steady")
    running_horse(store, run_id)
    stall = threading.Thread(target=lambda: admin(cluster).execute_command("DEBUG", "SLEEP", 3))
    stall.start()  # the server answers nobody for 3 s: heartbeats (1 s) time out
    logged_outage(cluster, "w", "did not answer in time")
    stall.join(10)
    finished_once(store, run_id)
    assert_one_outage_each(cluster, "w")
