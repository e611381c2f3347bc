"""Redis Cluster, for real: 3 primaries with a replica each, on loopback.

Two schedulers and two workers run a burst of fires (every 0.5 s) on a redis+cluster:// URL,
the namespace's keys all on one slot. With runs going on: the CLI reads and triggers; the slot
is moved to another primary (clients meet ASK, TRYAGAIN, then MOVED); the primary then serving
it is SIGKILLed and its replica takes over; a second namespace runs beside the first on
another node. Counted: duplicates (target 0), fires lost to asynchronous replication, reports
delivered twice, process exits, time to resume. The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from scheduler.model import PENDING, RunStatus, Trigger
from scheduler.store import Store
from scheduler.store.connect import connect_cluster
from scheduler.store.records import Retention
from scheduler.urls import cluster_address, mask_url, split_url
from tests.deploy.cluster_nodes import Cluster, Node, cluster, cluster_ports
from tests.deploy.test_sentinel import EVERY, JOB, MAX_LOST_FIRES, completed_after, sched_env
from tests.helpers import stop_process, wait_for

SLOT = key_slot(b"sched")  # every key of the default namespace: {sched}:...
SCHED = [sys.executable, "-m", "scheduler"]
SCHEDULE = Trigger.SCHEDULE


@dataclass
class Deployment:
    """The cluster, the sched processes (each with its log) and a store to count with."""

    cluster: Cluster
    folder: Path
    store: Store
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def start(self, name: str, argv: list[str], namespace: str = "sched", query: str = "") -> None:
        log = (self.folder / f"{name}.log").open("wb")
        env = sched_env(self.cluster.url + query) | {"SCHED_NAMESPACE": namespace}
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def sched(self, *args: str, namespace: str = "sched") -> subprocess.CompletedProcess[str]:
        env = sched_env(self.cluster.url) | {"SCHED_NAMESPACE": namespace}
        return subprocess.run(
            [*SCHED, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def counts(self) -> tuple[int, int, int]:
        """Duplicates, fires missing and reports delivered twice, over the whole burst."""
        runs = [r for r in self.store.history(job=JOB, limit=100_000) if r.trigger is SCHEDULE]
        instants = sorted(r.scheduled_for for r in runs)
        duplicates = len(instants) - len(set(instants))
        expected = int((instants[-1] - instants[0]) / EVERY) + 1
        twice = [r.id for r in runs if "late_report" in self.store.raw_run(r.id)]
        return duplicates, expected - len(set(instants)), len(twice)

    def resumed(self, since: datetime, began: float, timeout: float = 60) -> float:
        """Seconds from `began` (monotonic) until a run fired after `since` completed; then
        4 more must complete."""
        wait_for(lambda: completed_after(self.store, since, 1), timeout, "a run to complete")
        took = time.monotonic() - began
        wait_for(lambda: completed_after(self.store, since, 5), timeout, "runs to go on")
        return took

    def keyless_node(self) -> int:
        """The port of the node that takes the store's commands without a key (TIME, WAIT)."""
        return int(self.store.redis.info("server")["tcp_port"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("cluster")
    with cluster(folder, cluster_ports(6)) as c:
        d = Deployment(c, folder, Store(c.url))
        for name in ("scheduler1", "scheduler2"):
            d.start(name, [*SCHED, "scheduler"])
        for name in ("worker1", "worker2"):
            d.start(name, [*SCHED, "worker", "--workers", "2"])
        try:
            wait_for(lambda: completed_after(d.store, d.started, 6), 60, "a first burst of runs")
            yield d
        finally:
            codes = {name: stop_process(proc, 30) for name, proc in d.procs.items()}
            d.store.close()
            bad = {n: code for n, code in codes.items() if code != 0}
            assert not bad, {n: d.log(n)[-3000:] for n in bad}
            tracebacks = [n for n in d.procs if "Traceback" in d.log(n)]
            assert not tracebacks, [d.log(n)[-3000:] for n in tracebacks]


def errorstats(node: Node) -> dict[str, int]:
    """How many MOVED, ASK and TRYAGAIN replies the node gave (INFO errorstats)."""
    info = node.client().info("errorstats")
    return {k.removeprefix("errorstat_"): int(v["count"]) for k, v in info.items()}


def test_the_cli_reads_and_triggers_on_the_cluster(deployment: Deployment) -> None:
    d = deployment
    history = d.sched("history", JOB, "--limit", "5")
    assert history.returncode == 0, history.stderr
    assert "completed" in history.stdout and JOB.split(".")[0] in history.stdout
    run_id = d.store.history(job=JOB, statuses=[RunStatus.COMPLETED], limit=1)[0].id
    show = d.sched("show", run_id)
    assert show.returncode == 0 and run_id in show.stdout and "completed" in show.stdout, show
    workers = d.sched("workers")
    assert workers.returncode == 0 and "no live workers" not in workers.stdout, workers
    triggered = d.sched("trigger", JOB, "--wait")
    assert triggered.returncode == 0, triggered.stderr
    assert "completed" in triggered.stdout + triggered.stderr
    assert d.keyless_node() == d.cluster.primary_of(SLOT).port


def test_the_dashboard_api_reads_the_cluster(deployment: Deployment) -> None:
    d = deployment
    port = cluster_ports(1)[0]
    d.start("web", [*SCHED, "web", "--bind", f"127.0.0.1:{port}", "--read-only"])
    base = f"http://127.0.0.1:{port}/api/v1"

    def get(path: str) -> Any:
        try:
            with urllib.request.urlopen(f"{base}/{path}", timeout=5) as reply:
                return json.load(reply)
        except OSError:
            return None

    try:
        runs = wait_for(lambda: get(f"runs?job={JOB}&limit=5"), 30, "the API to answer")
        assert json.dumps(runs).count(JOB) >= 5, runs
        assert JOB in json.dumps(get("jobs")) and len(get("workers")) >= 2
    finally:
        assert stop_process(d.procs.pop("web"), 30) in (0, -15), d.log("web")[-3000:]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:{dead}", "cannot reach Redis at redis+cluster://127.0.0.1:"),
        ("redis+cluster://:pw@127.0.0.1:{live}/1", "a Redis Cluster has only database 0"),
        ("redis+cluster://:pw@127.0.0.1:{live}?db=2", "query parameter 'db'"),
        ("redis+cluster://:pw@127.0.0.1:x", "node '127.0.0.1:x' is not host:port"),
    ],
)
def test_a_bad_cluster_url_is_one_line_naming_what_is_wrong(
    deployment: Deployment, url: str, message: str
) -> None:
    live = next(iter(deployment.cluster.nodes.values())).port
    given = url.format(dead=cluster_ports(1)[0], live=live)
    done = deployment.sched("history", "--redis-url", given)
    assert done.returncode in (1, 2) and message in done.stderr, done
    assert done.stderr.count("\n") == 1 and "pw" not in done.stderr, done.stderr


def test_moving_the_namespace_slot_to_another_primary(deployment: Deployment) -> None:
    d = deployment
    source = d.cluster.primary_of(SLOT)
    target = next(n for n in d.cluster.live() if n is not source and is_primary(n))
    before = {n.name: errorstats(n) for n in (source, target)}
    began = time.monotonic()
    moved_at = datetime.now(UTC)
    keys = reshard(source, target, SLOT, halfway=lambda: redirected(source, before[source.name]))
    migrated_s = time.monotonic() - began
    wait_for(lambda: d.cluster.primary_of(SLOT) is target, 30, "every node to see the move")
    resume_s = d.resumed(moved_at, began)
    assert d.keyless_node() == target.port, "TIME and WAIT would go to another node"
    seen = {
        code: sum(
            errorstats(n).get(code, 0) - before[n.name].get(code, 0) for n in (source, target)
        )
        for code in ("ASK", "TRYAGAIN", "MOVED")
    }
    duplicates, missing, twice = d.counts()
    print(
        f"figures: reshard of slot {SLOT} ({keys} keys) from {source.name} to {target.name}: "
        f"migrated in {migrated_s:.2f}s, a run completed {resume_s:.1f}s after it began; "
        f"replies {seen}; duplicates {duplicates}; fires missing {missing}; "
        f"reports twice {twice}"
    )
    met_half_moved = seen["ASK"] + seen["TRYAGAIN"]
    assert seen["MOVED"] > 0 and met_half_moved > 0, f"the move was not tried under load: {seen}"
    assert not d.exited(), {n: d.log(n)[-3000:] for n in d.exited()}
    assert duplicates == 0 and twice == 0
    # A move loses nothing: every key is copied before the slot changes hands.
    assert missing == 0, f"{missing} fires missing after a move"


def test_a_primary_failover(deployment: Deployment) -> None:
    d = deployment
    primary = d.cluster.primary_of(SLOT)
    replica = d.cluster.replica_of(primary)
    _, missing_before, _ = d.counts()
    primary.proc.kill()
    killed = time.monotonic()
    killed_at = datetime.now(UTC)
    wait_for(lambda: promoted(d.cluster, replica), 60, f"{replica.name} to take the slot")
    promoted_s = time.monotonic() - killed
    resume_s = d.resumed(killed_at, killed)
    assert d.keyless_node() == replica.port, "TIME and WAIT would go to another node"
    end = datetime.now(UTC)
    d.resumed(end, time.monotonic())
    duplicates, missing, twice = d.counts()
    lost = missing - missing_before
    print(
        f"figures: SIGKILL of {primary.name}: {replica.name} primary after {promoted_s:.1f}s "
        f"(cluster-node-timeout 1s), a run completed {resume_s:.1f}s after the kill; duplicates "
        f"{duplicates}; fires lost {lost}; reports twice {twice}"
    )
    assert not d.exited(), {n: d.log(n)[-3000:] for n in d.exited()}
    assert duplicates == 0, "a fire was enqueued twice"
    # What the killed primary had not yet sent to its replica is gone: at most about a
    # second of writes (fires are re-made from last_fire, which is lost with them).
    assert lost <= MAX_LOST_FIRES, f"{lost} fires lost"
    assert twice <= MAX_LOST_FIRES


def test_two_namespaces_run_side_by_side_on_different_nodes(deployment: Deployment) -> None:
    d = deployment
    home = d.cluster.primary_of(SLOT)
    other = next(
        name
        for name in (f"team-{i}" for i in range(100))
        if d.cluster.primary_of(key_slot(name.encode())) is not home
    )
    other_node = d.cluster.primary_of(key_slot(other.encode()))
    # This one with the durability knob: each fire and report waits for the shard's replica.
    durable = "?wait_replicas=1&wait_timeout_ms=2000"
    d.start("scheduler-other", [*SCHED, "scheduler"], namespace=other, query=durable)
    d.start("worker-other", [*SCHED, "worker"], namespace=other, query=durable)
    waits_before = waits(other_node)
    since = datetime.now(UTC)
    other_store = Store(d.cluster.url, other)
    try:
        wait_for(lambda: completed_after(other_store, since, 4), 60, f"runs in {other!r}")
        d.resumed(since, time.monotonic())
        # Each namespace's keys on its own primary (and its replica), on no other primary.
        for node, slot in ((other_node, key_slot(other.encode())), (home, SLOT)):
            for each in filter(is_primary, d.cluster.live()):
                count = each.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
                assert (count > 0) == (each is node), (each.name, slot, count)
        assert not [r for r in other_store.history(limit=100_000) if r.scheduled_for < since]
        # WAIT went to the node that took the writes (on another, it would answer at once,
        # having no writes of that connection to wait for, and the knob would mean nothing).
        assert waits(other_node) - waits_before >= 8
        listed = d.sched("history", "--limit", "5", namespace=other)
        assert listed.returncode == 0 and JOB.split(".")[0] in listed.stdout, listed
        # Retention's script runs in a pipeline: after SCRIPT FLUSH (every primary) it is
        # loaded again there, and every process reloads its own.
        other_node.client().script_flush()
        home.client().script_flush()
        ended = {r.id for r in other_store.history(job=JOB, limit=100) if r.status not in PENDING}
        assert other_store.trim([JOB], Retention(keep_runs=2)) > 0
        kept = ended & {r.id for r in other_store.history(job=JOB, limit=100)}
        assert len(kept) <= 2, kept  # runs still queued or running are never dropped
        # The durable namespace's slot moved: a write that meets ASK is not sent elsewhere
        # (its WAIT would count another connection's writes); it waits for the move's end.
        third = next(n for n in d.cluster.live() if is_primary(n) and n not in (home, other_node))
        slot = key_slot(other.encode())
        before, third_waits = errorstats(other_node), waits(third)
        moved_at, began = datetime.now(UTC), time.monotonic()
        reshard(other_node, third, slot, halfway=lambda: redirected(other_node, before))
        wait_for(lambda: completed_after(other_store, moved_at, 2), 60, "durable runs after it")
        durable_move_s = time.monotonic() - began
        assert waits(third) > third_waits, "the WAITs did not follow the slot"
        fired = [
            r.scheduled_for for r in other_store.history(limit=100_000) if r.trigger is SCHEDULE
        ]
        assert len(fired) == len(set(fired)), "a fire was enqueued twice"
    finally:
        other_store.close()
    print(
        f"figures: namespace {other!r} (wait_replicas=1) on {other_node.name} (slot {slot}) "
        f"beside 'sched' on {home.name} (slot {SLOT}); its slot moved to {third.name}: two "
        f"runs completed {durable_move_s:.1f}s after the move began"
    )
    assert not d.exited(), {n: d.log(n)[-3000:] for n in d.exited()}


def test_a_call_that_may_have_run_is_not_sent_again(deployment: Deployment) -> None:
    """A pipeline whose reply is lost (a timeout) is the caller's to repeat: redis-py's
    cluster pipeline sends them again by itself: the INCR, answered after 0.4 s, runs twice
    (its second copy is answered within its 0.25 s), as a report or a BLMOVE would."""
    client = connect_cluster(
        deployment.cluster.url, timeout_s=0.25, connect_timeout_s=1, home="{sched-probe}:"
    )
    pipe = client.pipeline(transaction=False)
    pipe.incr("{sched-probe}:count")
    pipe.execute_command("DEBUG", "SLEEP", "0.4")  # keyless: to the slot's primary
    with pytest.raises(redis.TimeoutError):
        pipe.execute()
    node = deployment.cluster.primary_of(key_slot(b"sched-probe"))
    assert wait_for(lambda: node.client().get("{sched-probe}:count"), 5) == "1"
    client.close()


def test_the_whole_cluster_restarts(deployment: Deployment) -> None:
    """Every node stopped, then started on its files: the processes wait and go on."""
    d = deployment
    for node in d.cluster.live():
        node.proc.terminate()
    for node in d.cluster.nodes.values():
        node.proc.wait(30)
    down = time.monotonic()
    stopped_at = datetime.now(UTC)
    for node in d.cluster.nodes.values():
        node.restart()
    wait_for(d.cluster.healthy, 60, "the cluster to be ok again")
    back_s = time.monotonic() - down
    resume_s = d.resumed(stopped_at, down)
    duplicates, _, twice = d.counts()
    print(
        f"figures: whole cluster restarted: ok after {back_s:.1f}s, a run completed "
        f"{resume_s:.1f}s after the stop; duplicates {duplicates}; reports twice {twice}"
    )
    assert not d.exited(), {n: d.log(n)[-3000:] for n in d.exited()}
    assert duplicates == 0


def waits(node: Node) -> int:
    """How many WAIT commands the node ran (INFO commandstats)."""
    return int(node.client().info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def is_primary(node: Node) -> bool:
    return bool(node.client().info("replication")["role"] == "master")


def promoted(c: Cluster, replica: Node) -> bool:
    try:
        return is_primary(replica) and c.primary_of(SLOT) is replica
    except (redis.RedisError, AssertionError):
        return False


def redirected(node: Node, before: dict[str, int]) -> bool:
    """The node has sent clients elsewhere (ASK) or told them to try again since `before`."""
    now = errorstats(node)
    return any(now.get(code, 0) > before.get(code, 0) for code in ("ASK", "TRYAGAIN"))


def reshard(source: Node, target: Node, slot: int, halfway: Callable[[], bool]) -> int:
    """Move `slot` as `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING
    on the source, MIGRATE its keys one at a time, then the slot's new owner to both nodes
    (gossip tells the others). Halfway, it waits for `halfway()`: a small slot moves in
    milliseconds, and the clients must meet the half-moved slot for the test to mean
    anything. Returns how many keys moved."""
    src, dst = source.client(), target.client()
    src_id, dst_id = source.node_id(), target.node_id()
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100_000)
    moved = 0
    for i, key in enumerate(keys):
        if i == len(keys) // 2:
            wait_for(halfway, 10, "a client to meet the half-moved slot")
        moved += src.execute_command("MIGRATE", "127.0.0.1", target.port, key, 0, 5000) == "OK"
    while rest := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *rest)
        moved += len(rest)
    for client in (dst, src):
        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    return moved


@pytest.mark.parametrize(
    ("url", "nodes", "user", "password", "tls"),
    [
        ("redis+cluster://a:7000,b:7001/0", (("a", 7000), ("b", 7001)), None, None, False),
        ("redis+cluster://redis-1", (("redis-1", 6379),), None, None, False),
        ("redis+cluster://[::1]:7000", (("::1", 7000),), None, None, False),
        ("rediss+cluster://sched:p%40ss@a:7000", (("a", 7000),), "sched", "p@ss", True),
    ],
)
def test_a_cluster_url_names_its_nodes_and_login(
    url: str, nodes: tuple[tuple[str, int], ...], user: str | None, password: str | None, tls: bool
) -> None:
    address = cluster_address(split_url(url + "?wait_replicas=1")[0])
    assert (address.nodes, address.username, address.password, address.tls) == (
        nodes,
        user,
        password,
        tls,
    )
    assert "p@ss" not in mask_url(url) and "p%40ss" not in mask_url(url)
