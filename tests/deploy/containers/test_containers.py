"""The image and deploy/compose.yaml, run for real with podman, under faults.

The tests run in file order on purpose: the first starts the image's `sched run` (its example
jobs fire once a minute), the compose scenario runs meanwhile, the last checks the fires of
that first container. Each still passes alone, only slower.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from scheduler.errors import StoreUnavailable
from scheduler.model import Run, RunStatus, Trigger
from scheduler.store import Store
from tests.deploy.containers.conftest import (
    Compose,
    assert_no_orphans,
    inspect,
    podman,
    processes,
)
from tests.deploy.test_deploy import WAIT_FOR_REDIS
from tests.helpers import final, trigger, wait_for

T = TypeVar("T")
SECOND = timedelta(seconds=1)
REDIS_DOWN_S = 20  # the fault itself: the Redis container is stopped this long
SLOW_S = 6  # how long ha.slow sleeps
WORKER_GRACE_S = 30  # the override's stop_grace_period for workers


def poll(predicate: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """wait_for for predicates that start processes (podman exec): one try per `every`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def sched_json(container: str, *args: str) -> Any:
    """`sched ARGS --json` run inside the container, as a user would (`docker exec`)."""
    out = podman("exec", container, "sched", *args, "--json", timeout=60).stdout
    return json.loads(out)


def ticks(store: Store) -> list[Run]:
    return sorted(store.history(job="ha.tick", limit=100_000), key=lambda r: r.scheduled_for)


def completed_tick_after(store: Store, moment: datetime) -> Run | None:
    try:
        runs = store.history(job="ha.tick", statuses=[RunStatus.COMPLETED], limit=50)
    except StoreUnavailable:  # Redis is starting again
        return None
    later = [r for r in runs if r.scheduled_for > moment]
    return min(later, key=lambda r: r.scheduled_for) if later else None


def running(store: Store, run_id: str) -> Run | None:
    run = store.get_run(run_id)
    return run if run.status is RunStatus.RUNNING else None


def container_of(compose: Compose, worker_id: str) -> str:
    """The worker container whose host name starts the worker id (`host:pid:nonce`)."""
    host = worker_id.split(":")[0]
    names = compose.containers("worker")
    (name,) = [c for c in names if inspect(c, "{{.Config.Hostname}}") == host]
    return name


def live_worker_on(store: Store, host: str, not_id: str) -> dict[str, str] | None:
    rows = [w for w in store.workers() if w["id"].split(":")[0] == host and w["id"] != not_id]
    return rows[0] if rows else None


def probe(container: str, *args: str) -> tuple[int, float, str]:
    """(exit code, seconds, output) of the health check the Kubernetes probes run."""
    t0 = time.monotonic()
    proc = podman("exec", container, "sched-healthcheck", *args, check=False, timeout=60)
    return proc.returncode, time.monotonic() - t0, (proc.stdout + proc.stderr).strip()


def started_at(container: str) -> str:
    return inspect(container, "{{.State.StartedAt}} {{.RestartCount}} {{.State.Running}}")


# -- the image, as a user's first `docker run` ------------------------------------------------


@pytest.mark.timeout(1200)  # under plain pytest, the images may be built in its setup
def test_image_first_run_starts_sched_run_with_the_example_jobs(first_run: str) -> None:
    def started() -> list[str] | None:
        args = [p.args for p in processes(first_run)]
        workers = [a for a in args if a.startswith("sched worker")]
        wanted = ("sched scheduler", "redis-server")
        ready = len(workers) == 2 and all(any(w in a for a in args) for w in wanted)
        return args if ready else None

    args = poll(started, 60, "sched run's scheduler, two workers and embedded Redis")
    assert args[0].startswith("tini -- sched run")
    jobs = sched_json(first_run, "list")
    assert {j["job"] for j in jobs} >= {"examples.tick", "examples.flaky_report"}
    assert inspect(first_run, "{{.Config.User}}") == "10001:10001"
    assert_no_orphans(first_run)


# -- compose: Redis, two schedulers, two workers, one jobs folder, under faults ---------------


@pytest.mark.timeout(600)
def test_compose_under_faults(compose: Compose) -> None:
    started = time.monotonic()
    compose("up", "--detach", "--no-build", "redis")
    (redis,) = compose.containers("redis")
    poll(
        lambda: podman("exec", redis, "redis-cli", "ping", check=False).stdout.strip() == "PONG",
        30,
        "Redis to answer",
    )
    compose("up", "--detach", "--no-build")
    schedulers, workers = compose.containers("scheduler"), compose.containers("worker")
    assert len(schedulers) == 2 and len(workers) == 2, (schedulers, workers)
    store = Store(compose.redis_url)
    wait_for(lambda: len(store.history(job="ha.tick", limit=5)) >= 5, 60, "5 fires")
    wait_for(lambda: len(store.workers()) == 2, 30, "both workers to register")
    up_s = time.monotonic() - started
    # The image's HEALTHCHECK (podman runs it on demand: no systemd timers here) in both roles;
    # like an orchestrator, it may take a few tries (the probes allow 2 failures in a row).
    unhealthy: list[str] = []

    def healthy(container: str) -> bool:
        if podman("healthcheck", "run", container, check=False).returncode == 0:
            return True
        log = json.loads(inspect(container, "{{json .State.Health.Log}}") or "[]")
        unhealthy.append(f"{container}: {log[-1] if log else 'no log'}")
        return False

    for container in (schedulers[0], workers[0]):
        poll(lambda c=container: healthy(c), 90, f"{container} to be healthy: {unhealthy}")
    if unhealthy:
        print(f"figures: health checks that failed before passing: {unhealthy}")
    assert podman("exec", redis, "redis-cli", "config", "get", "appendonly").stdout.split() == [
        "appendonly",
        "yes",
    ]

    # 1. A scheduler container and the worker container running a job are killed outright,
    # then started again: same container, same host name, same pid inside.
    long_id = trigger(store, "ha.long", retries=1)
    long_run = wait_for(lambda: running(store, long_id), 30, "ha.long to run")
    assert long_run.worker
    victim = container_of(compose, long_run.worker)
    host, pid = long_run.worker.split(":")[:2]
    podman("kill", victim)
    podman("kill", schedulers[0])
    killed_at = time.monotonic()
    lost = final(store, long_id, 60)
    lost_after_s = time.monotonic() - killed_at
    assert lost.status is RunStatus.LOST and lost.reason and "lease expired" in lost.reason
    retry = final(store, f"{long_id}#2", 60)
    assert retry.status is RunStatus.COMPLETED and retry.trigger is Trigger.RETRY
    assert retry.output and "second attempt done" in retry.output
    assert retry.worker and retry.worker != long_run.worker
    wait_for(lambda: completed_tick_after(store, datetime.now(UTC) - SECOND), 30, "fires go on")

    restart_at = datetime.now(UTC)
    podman("start", victim)
    podman("start", schedulers[0])
    old_id = long_run.worker
    reborn = wait_for(lambda: live_worker_on(store, host, old_id), 60, "the restarted worker")
    # One worker id per process start: the host name repeats (and the pid often does: tini
    # is PID 1 and sched one of the first few pids after it), the id does not.
    assert reborn["id"].split(":")[0] == host, (reborn["id"], long_run.worker)
    pid_repeated = reborn["id"].split(":")[1] == pid
    assert reborn["id"] != long_run.worker
    assert long_run.worker not in {w["id"] for w in store.workers()}
    since = restart_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    poll(
        lambda: "fire ha.tick" in compose.logs(schedulers[0], since),
        60,
        "the restarted scheduler to fire again",
    )

    # 2. Redis stopped for REDIS_DOWN_S, then started again (its append-only file on the
    # volume). No sched container exits or restarts; the schedule resumes.
    before = {c: started_at(c) for c in (*schedulers, *workers)}
    podman("stop", "--time", "10", redis)
    stopped_at = datetime.now(UTC)
    down = time.monotonic()
    # The init container of deploy/kubernetes meanwhile: it waits as long as Redis is down.
    network = inspect(workers[0], "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}")
    waiter = f"{compose.project}-wait-for-redis"
    podman("rm", "--force", waiter, check=False)
    podman(
        *("run", "--detach", "--name", waiter, "--network", network),
        *("--env", "SCHED_REDIS_URL=redis://redis:6379/0", "--entrypoint", WAIT_FOR_REDIS[0]),
        *(compose.images.sched, *WAIT_FOR_REDIS[1:]),
    )
    # The probes of deploy/kubernetes meanwhile: not ready, but alive (no restart mid-job),
    # each well within the probes' timeoutSeconds (10).
    probes = {
        (workers[0], "worker"): 1,
        (workers[0], "worker", "--live"): 0,
        (schedulers[1], "scheduler"): 1,
    }
    probe_times = {}
    for (container, *args), expected_code in probes.items():
        code, took, output = probe(container, *args)
        assert code == expected_code, (container, args, output)
        probe_times[" ".join(args)] = f"{took:.1f}s ({output})"
    probe_s = max(float(v.split("s", 1)[0]) for v in probe_times.values())
    print(f"figures: probes while Redis is down: {probe_times}")
    assert probe_s < 10, f"a probe took {probe_s:.1f}s: {probe_times}"
    time.sleep(max(0.0, REDIS_DOWN_S - (time.monotonic() - down)))
    assert inspect(waiter, "{{.State.Running}}") == "true", compose.logs(waiter)
    podman("start", redis)
    back = time.monotonic()
    back_at = datetime.now(UTC)
    resumed = wait_for(lambda: completed_tick_after(store, back_at), 60, "fires after Redis")
    resume_s = time.monotonic() - back
    assert {c: started_at(c) for c in before} == before, "a sched container restarted"
    assert probe(workers[0], "worker")[0] == 0
    wait_for(lambda: inspect(waiter, "{{.State.Running}}") == "false", 30, "the init container")
    assert inspect(waiter, "{{.State.ExitCode}}") == "0", compose.logs(waiter)
    podman("rm", waiter)

    # No process left behind anywhere: no zombie, nothing adopted by PID 1.
    for container in compose.all_containers():
        assert_no_orphans(container)

    # 3. Warm shutdown: `podman stop` lets the running job finish within the grace.
    slow_id = trigger(store, "ha.slow")
    slow = wait_for(lambda: running(store, slow_id), 30, "ha.slow to run")
    assert slow.worker
    stopping = container_of(compose, slow.worker)
    assert slow.started_at
    left_s = SLOW_S - (datetime.now(UTC) - slow.started_at).total_seconds()
    t0 = time.monotonic()
    podman("stop", "--time", str(WORKER_GRACE_S), stopping, timeout=WORKER_GRACE_S + 30)
    worker_stop_s = time.monotonic() - t0
    done = store.get_run(slow_id)
    assert done.status is RunStatus.COMPLETED, (done.status, done.reason)
    assert worker_stop_s < WORKER_GRACE_S, f"warm stop took {worker_stop_s:.1f}s"
    assert worker_stop_s > left_s - 1, "the worker stopped before its job could finish"
    assert done.output and "slow done" in done.output
    assert inspect(stopping, "{{.State.ExitCode}}") == "0"
    scheduler_stop_s = 0.0
    for scheduler in schedulers:  # no more fires from here on
        t0 = time.monotonic()
        podman("stop", "--time", "30", scheduler, timeout=60)
        scheduler_stop_s = max(scheduler_stop_s, time.monotonic() - t0)
        assert inspect(scheduler, "{{.State.ExitCode}}") == "0"
    assert scheduler_stop_s < 10, f"a scheduler took {scheduler_stop_s:.1f}s to stop"

    # The history, read with the CLI inside a container, is the store's.
    other = next(c for c in workers if c != stopping)
    wait_for(lambda: all(r.status.final for r in ticks(store)), 30, "the last fires to be run")
    listed = sched_json(other, "history", "ha.tick", "--limit", "100000")
    runs = ticks(store)
    assert {r["id"] for r in listed} == {r.id for r in runs}

    # One run per fire: no duplicate, no gap from the first fire to the last.
    instants = [r.scheduled_for for r in runs]
    assert len(instants) == len(set(instants)), "a fire was enqueued twice"
    expected = int((instants[-1] - instants[0]) / SECOND) + 1
    missing = expected - len(instants)
    outage = [r for r in runs if stopped_at - 2 * SECOND <= r.scheduled_for <= back_at]
    statuses = sorted({str(r.status) for r in runs})
    print(
        f"figures: up {up_s:.1f}s; lost after kill {lost_after_s:.1f}s; resume after Redis "
        f"{resume_s:.1f}s (first fire {resumed.scheduled_for:%H:%M:%S}); warm worker stop "
        f"{worker_stop_s:.1f}s, scheduler stop {scheduler_stop_s:.1f}s; slowest probe in the "
        f"outage {probe_s:.1f}s; pid repeated on restart: {pid_repeated}; {len(runs)} fires, "
        f"{missing} missing, {len(outage)} around the outage, statuses {statuses}"
    )
    assert missing == 0, f"{missing} fires missing"
    assert not [r for r in runs if r.status is RunStatus.RUNNING]
    assert {r.status for r in runs} <= {RunStatus.COMPLETED, RunStatus.QUEUED}, statuses
    store.close()


# -- the first container again: it fired, and it stops warmly ---------------------------------


@pytest.mark.timeout(300)
def test_image_first_run_fires_and_stops_warmly(first_run: str) -> None:
    def fired() -> list[dict[str, Any]] | None:
        runs = sched_json(first_run, "history", "examples.tick")
        return [r for r in runs if r["status"] == "completed" and r["trigger"] == "schedule"]

    runs = poll(fired, 150, "a scheduled examples.tick to complete", every=3)
    assert runs[0]["result"]["took_s"] > 0
    assert_no_orphans(first_run)
    t0 = time.monotonic()
    podman("stop", "--time", "30", first_run, timeout=60)
    took = time.monotonic() - t0
    assert inspect(first_run, "{{.State.ExitCode}}") == "0"
    assert took < 30, f"sched run took {took:.1f}s to stop"
    print(f"figures: sched run stopped in {took:.1f}s")
