"""`sched run`: one supervisor, a scheduler process and N worker processes.

The children run in process groups of their own, so a Ctrl-C on the terminal reaches only
the supervisor, which forwards each SIGINT/SIGTERM exactly once: the first asks for a warm
shutdown (finish running jobs), the second for a cold one (kill horses, record `killed`).
A child that dies unexpectedly is restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import setproctitle

from scheduler import alerts, proc
from scheduler.beat import Beat, BeatSettings
from scheduler.errors import StoreUnavailable
from scheduler.metrics import Metrics
from scheduler.model import DEFAULT_TIMEOUT_S, JobSpec
from scheduler.store import Store
from scheduler.worker import Worker, WorkerSettings, signal_echo

log = logging.getLogger("sched.run")
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# Metrics are served on all interfaces, so a Prometheus elsewhere can scrape them.
METRICS_ADDR = "0.0.0.0"


@dataclass(frozen=True)
class Timings:
    """The two timings operators set (`--lease`, `--grace`); everything else follows.

    Every process on one Redis should use the same lease.
    """

    lease_s: float = 15.0
    grace_s: float = 5.0
    warm_timeout_s: float | None = None

    @property
    def clock_gap_s(self) -> float:
        # Silence longer than this means Redis (not a worker) was unreachable.
        return self.lease_s / 2

    def worker(self) -> WorkerSettings:
        """Worker settings: heartbeats well inside the lease, reaping a few times per lease."""
        return WorkerSettings(
            lease_s=self.lease_s,
            grace_s=self.grace_s,
            heartbeat_s=min(1.0, self.lease_s / 5),
            reap_interval_s=min(5.0, self.lease_s / 3),
            # An idle worker touches the Redis clock once per wait: at least twice per
            # clock gap, or a silence just over it makes every reaper wait one more lease.
            idle_wait_s=min(1.0, self.clock_gap_s / 2),
            warm_timeout_s=self.warm_timeout_s,
        )

    def beat(self) -> BeatSettings:
        """Scheduler settings: it reaps too, often enough to keep the Redis clock fresh."""
        return BeatSettings(lease_s=self.lease_s, reap_every_s=min(2.0, self.lease_s / 5))


@dataclass
class Plan:
    """What to run and how it connects."""

    specs: Mapping[str, JobSpec]
    redis_url: str
    namespace: str
    # The folder the specs were loaded from: each worker's fork server loads it again.
    jobs: Path = Path("jobs")
    workers: int = 2
    scheduler: bool = True
    queues: tuple[str, ...] = ("default",)
    timings: Timings = field(default_factory=Timings)
    metrics_port: int | None = None
    # The dashboard's settings (scheduler.web.server.WebSettings), or None for no dashboard.
    web: Any = None
    # What the jobs folder was loaded with (--default-tz, --default-timeout): a reload of the
    # folder must load it the same way.
    default_tz: str | None = None
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    # Watch the jobs folder and reload it on change (SIGHUP reloads either way).
    watch: bool = True

    def store(self) -> Store:
        """A new connection to the plan's Redis (one per process)."""
        return Store(self.redis_url, self.namespace, clock_gap_s=self.timings.clock_gap_s)


def run_scheduler(plan: Plan) -> int:
    """Run the scheduler loop in this process until SIGINT/SIGTERM.

    Alerts and metrics live here: this process never forks, so their threads are safe.
    """
    store = plan.store()
    alerter = alerts.from_env(plan.specs)
    metrics = Metrics() if plan.metrics_port is not None else None
    if metrics is not None and plan.metrics_port is not None:
        port = metrics.serve(plan.metrics_port, addr=METRICS_ADDR)
        log.info("scheduler: metrics on http://%s:%d/metrics", METRICS_ADDR, port)
    beat = Beat(store, plan.specs, plan.timings.beat(), alerter=alerter, metrics=metrics)
    signal.signal(signal.SIGTERM, beat.stop)
    signal.signal(signal.SIGINT, beat.stop)
    setproctitle.setproctitle(f"sched scheduler ({len(plan.specs)} jobs)")
    try:
        beat.run()
    finally:
        alerter.close(5.0)
        if metrics is not None:
            metrics.close()
        store.close()
    log.info("scheduler: stopped after %d fires", beat.fired)
    return 0


def run_exporter(plan: Plan) -> int:
    """Serve queue, running and worker gauges for a workers-only deployment."""
    assert plan.metrics_port is not None
    store = plan.store()
    metrics = Metrics()
    port = metrics.serve(plan.metrics_port, addr=METRICS_ADDR)
    log.info("metrics on http://%s:%d/metrics", METRICS_ADDR, port)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    queues = sorted(set(plan.queues) | {spec.queue for spec in plan.specs.values()})
    while not stopping:
        with contextlib.suppress(StoreUnavailable):
            metrics.set_gauges(
                queue_depths={q: store.queue_depth(q) for q in queues},
                running=store.running_count(),
                workers_alive=len(store.workers()),
            )
        end = time.monotonic() + 2.0
        while not stopping and time.monotonic() < end:
            time.sleep(0.1)
    metrics.close()
    store.close()
    return 0


def run_worker(plan: Plan, index: int = 0) -> int:
    """Run one worker in this process until shut down."""
    store = plan.store()
    worker = Worker(
        store, plan.specs, jobs=plan.jobs, queues=plan.queues, settings=plan.timings.worker()
    )
    code = worker.run()
    store.close()
    return code


def _serve_web(plan: Plan) -> int:
    # Imported here, in the forked child: the supervisor, which forks the workers, never
    # loads the web stack or starts its threads.
    from scheduler.web.server import serve_plan

    return serve_plan(plan)


class Supervisor:
    """Forks the children of a plan, forwards signals, restarts what dies."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.children: dict[int, tuple[str, Callable[[], int]]] = {}
        self.signals: list[int] = []
        self.restarts: dict[str, int] = {}
        self.own: set[int] = set()
        self._last_signal: tuple[int, float] | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signal_echo(self._last_signal, signum):
            return
        self._last_signal = (signum, time.monotonic())
        self.signals.append(signum)
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _spawn(self, name: str, target: Callable[[], int]) -> None:
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.setpgid(0, 0)
            # If the supervisor is killed outright, its children stop warmly instead of
            # running on as orphans.
            proc.die_with_parent(signal.SIGTERM)
            if os.getppid() != supervisor:
                os._exit(1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = target()
            except Exception:
                log.exception("%s crashed", name)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = (name, target)
        log.info("started %s (pid %d)", name, pid)

    def run(self) -> int:
        """Start everything and wait until all children have stopped."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # Processes orphaned by a worker that died (its fork server, its horses and their
        # children) are re-parented here instead of to init, so they can be found and killed.
        proc.become_subreaper()
        setproctitle.setproctitle(f"sched supervisor ({self.plan.workers} workers)")
        self.own = set(proc.children_of(os.getpid()))
        plan = self.plan
        if plan.scheduler:
            self._spawn("scheduler", lambda: run_scheduler(plan))
        elif plan.metrics_port is not None:
            self._spawn("metrics", lambda: run_exporter(plan))
        if plan.web is not None:
            self._spawn("web", lambda: _serve_web(plan))
        for i in range(plan.workers):
            self._spawn(f"worker-{i + 1}", lambda i=i: run_worker(plan, i))  # type: ignore[misc]
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in self.children:
                continue
            name, target = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            self._kill_orphans()
            if self.signals or code == 0:
                log.info("%s stopped (exit %d)", name, code)
                continue
            count = self.restarts.get(name, 0)
            self.restarts[name] = count + 1
            delay = RESTART_BACKOFF_S[min(count, len(RESTART_BACKOFF_S) - 1)]
            log.warning("%s exited unexpectedly (exit %d); restarting in %gs", name, code, delay)
            end = time.monotonic() + delay
            while time.monotonic() < end and not self.signals:
                time.sleep(0.05)
            if not self.signals:
                self._spawn(name, target)
        return 0

    def _kill_orphans(self) -> None:
        """Kill what a dead child left behind (its fork server, horses, their children).

        The sweep repeats until none is left, so processes still being re-parented here
        (a horse's children, once the horse died with its fork server) are caught too.
        """
        killed, left = proc.sweep(keep=self.own | set(self.children))
        if killed:
            log.warning("killed %d orphan processes left by a stopped worker", killed)
        if left:
            log.error("%d orphan processes left by a stopped worker would not die", left)
