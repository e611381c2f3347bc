"""`sched run`: one supervisor, a scheduler process and N worker processes.

The children run in process groups of their own, so a Ctrl-C on the terminal reaches only
the supervisor, which forwards each SIGINT/SIGTERM exactly once: the first asks for a warm
shutdown (finish running jobs), the second for a cold one (kill horses, record `killed`).
A child that dies unexpectedly is restarted, unless it keeps failing at start: then the
whole command stops with the reason and exit code 1.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import select
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import setproctitle

from scheduler import alerts, proc
from scheduler.beat import Beat, BeatSettings
from scheduler.cli_output import log_event
from scheduler.errors import StoreError, StoreUnavailable, UnknownRun
from scheduler.forkserver import ForkServerError
from scheduler.metrics import Metrics
from scheduler.model import DEFAULT_TIMEOUT_S, JobSpec, RunStatus
from scheduler.reload import Definitions
from scheduler.store import Store
from scheduler.worker import Worker, WorkerSettings, make_worker_id

log = logging.getLogger("sched.run")
# How often a process looks at the jobs folder for changes (a stat walk; see reload.py).
WATCH_EVERY_S = 1.0
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
    # The workers serve every queue the jobs name (no --queue given): also the queues that
    # jobs added by a reload name.
    queues_from_jobs: bool = False
    # Runs the whole deployment keeps (--max-stored-runs); None: Retention's default.
    max_stored_runs: int | None = None

    def definitions(self, who: str, *, list_problems: bool = True) -> Definitions:
        """The jobs folder as this plan loaded it, for one process to poll."""
        return Definitions(
            self.jobs,
            self.specs,
            who=who,
            default_tz=self.default_tz,
            default_timeout_s=self.default_timeout_s,
            every_s=WATCH_EVERY_S if self.watch else math.inf,
            list_problems=list_problems,
        )

    def store(self) -> Store:
        """A new connection to the plan's Redis (one per process)."""
        return Store(self.redis_url, self.namespace, clock_gap_s=self.timings.clock_gap_s)


def run_scheduler(plan: Plan) -> int:
    """Run the scheduler loop in this process until SIGINT/SIGTERM.

    Alerts and metrics live here: this process never forks, so their threads are safe.
    """
    proc.fill_tuple_free_list()
    store = plan.store()
    alerter = alerts.from_env(plan.specs)
    metrics = Metrics() if plan.metrics_port is not None else None
    if metrics is not None and plan.metrics_port is not None:
        port = _serve_metrics(metrics, plan.metrics_port)
        log.info("scheduler: metrics on http://%s:%d/metrics", METRICS_ADDR, port)
    definitions = plan.definitions("scheduler")
    settings = plan.timings.beat()
    if plan.max_stored_runs is not None:
        retention = replace(settings.retention, keep_total=plan.max_stored_runs)
        settings = replace(settings, retention=retention)
    beat = Beat(
        store,
        plan.specs,
        settings,
        alerter=alerter,
        metrics=metrics,
        definitions=definitions,
    )
    signal.signal(signal.SIGTERM, beat.stop)
    signal.signal(signal.SIGINT, beat.stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: definitions.request())
    setproctitle.setproctitle(f"sched scheduler ({len(plan.specs)} jobs)")
    give_back = proc.lead_process_group()
    try:
        beat.run()
    finally:
        give_back()
        alerter.close(5.0)
        if metrics is not None:
            metrics.close()
        store.close()
    log.info("scheduler: stopped after %d fires", beat.fired)
    return 0


def _serve_metrics(metrics: Metrics, port: int) -> int:
    """Serve metrics on `port`; a port that cannot be had will not become free by retrying."""
    try:
        return metrics.serve(port, addr=METRICS_ADDR)
    except OSError as exc:
        raise WillNotHeal(
            f"cannot serve metrics on {METRICS_ADDR}:{port}: {exc.strerror or exc}; "
            "pick another --metrics-port"
        ) from None


def run_exporter(plan: Plan) -> int:
    """Serve queue, running and worker gauges for a workers-only deployment."""
    assert plan.metrics_port is not None
    store = plan.store()
    metrics = Metrics()
    port = _serve_metrics(metrics, plan.metrics_port)
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


def run_worker(plan: Plan, index: int = 0, token: str | None = None) -> int:
    """Run one worker in this process until shut down.

    `token` comes from a supervisor, which then knows the worker's id (`make_worker_id`) and
    tells the operator what its workers run; a worker on its own says that itself.
    """
    proc.fill_tuple_free_list()
    store = plan.store()
    wid = make_worker_id(os.getpid(), token or uuid.uuid4().hex[:8])
    worker = Worker(
        store,
        plan.specs,
        jobs=plan.jobs,
        queues=plan.queues,
        settings=plan.timings.worker(),
        worker_id=wid,
        shutdown_hint=token is None,
        # Beside a scheduler (`sched run`), a broken folder's problems are listed once, by the
        # scheduler; its workers only say that they keep the previous definitions.
        definitions=plan.definitions(f"worker {wid}", list_problems=not plan.scheduler),
        follow_queues=plan.queues_from_jobs,
    )
    give_back = proc.lead_process_group()
    try:
        code = worker.run()
    except ForkServerError as exc:  # e.g. job code that cannot be imported without SCHED_*
        log.error("worker %s: cannot serve: %s", worker.id, exc)
        code = 1
    finally:
        give_back()
    store.close()
    return code


def _worker_role(plan: Plan, index: int, token: str) -> int:
    return run_worker(plan, index, token)


def _serve_web(plan: Plan) -> int:
    # Imported here, in the forked child: the supervisor, which forks the workers, never
    # loads the web stack or starts its threads.
    from scheduler.web.server import serve_plan

    return serve_plan(plan)


class WillNotHeal(Exception):
    """A child cannot run as configured (a busy port, refused credentials, a broken jobs
    folder): restarting it would fail the same way, so `sched run` stops instead."""


# sysexits.h's EX_CONFIG: how a child tells its supervisor that a restart will not help.
EXIT_WILL_NOT_HEAL = 78
# A child that exits with an error within this long of its start failed to start; after
# START_FAILURES_MAX such failures in a row the supervisor stops everything rather than loop.
START_WINDOW_S = 30.0
START_FAILURES_MAX = 4


@dataclass
class _Child:
    name: str
    role: Callable[[str], int]
    started: float
    worker_id: str | None = None


def _ended_how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _wake(signum: int, frame: FrameType | None) -> None:
    """A handler that only wakes the loop (through the wake-up pipe)."""


class Supervisor:
    """Forks the children of a plan, forwards signals, restarts what dies.

    Each stop signal counts, however fast they come: it leads a process group of its own
    (proc.lead_process_group), so one signal meant for it arrives once, and it forwards each
    to every child once. SIGHUP (reload the jobs folder) is forwarded too.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.children: dict[int, _Child] = {}
        # The stop signals received, in order (the first: warm, the second: cold).
        self.signals: list[int] = []
        # Start failures in a row, per child name.
        self.restarts: dict[str, int] = {}
        self.own: set[int] = set()
        # Why everything stops although nobody asked (a child that will not heal).
        self.failure: str | None = None
        self._due: dict[str, tuple[float, Callable[[str], int]]] = {}
        self._announced = 0
        self._wakeup_r = -1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:
            self.signals.append(signum)
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _roles(self) -> list[tuple[str, Callable[[str], int]]]:
        plan = self.plan
        roles: list[tuple[str, Callable[[str], int]]] = []
        if plan.scheduler:
            roles.append(("scheduler", lambda token: run_scheduler(plan)))
        elif plan.metrics_port is not None:
            roles.append(("metrics", lambda token: run_exporter(plan)))
        if plan.web is not None:
            roles.append(("web", lambda token: _serve_web(plan)))
        roles += [
            (f"worker-{i + 1}", functools.partial(_worker_role, plan, i))
            for i in range(plan.workers)
        ]
        return roles

    def _spawn(self, name: str, role: Callable[[str], int]) -> None:
        supervisor = os.getpid()
        token = uuid.uuid4().hex[:8]
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os._exit(self._child(name, role, token, supervisor))
        wid = make_worker_id(pid, token) if name.startswith("worker-") else None
        self.children[pid] = _Child(name, role, time.monotonic(), wid)
        log.info("started %s (pid %d)", name, pid)

    def _child(self, name: str, role: Callable[[str], int], token: str, parent: int) -> int:
        # pragma: no cover - runs in the forked child
        os.setpgid(0, 0)
        # If the supervisor is killed outright, its children stop warmly instead of
        # running on as orphans.
        proc.die_with_parent(signal.SIGTERM)
        if os.getppid() != parent:
            return 1
        signal.set_wakeup_fd(-1)
        os.close(self._wakeup_r)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # Until the child's own loop says what a reload means to it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        code = 1
        try:
            code = role(token)
        except WillNotHeal as exc:
            log.error("%s: %s", name, exc)
            code = EXIT_WILL_NOT_HEAL
        except Exception:
            log.exception("%s crashed", name)
        finally:
            logging.shutdown()
        return code

    def run(self) -> int:
        """Start everything and wait until all children have stopped; the exit code."""
        give_back = proc.lead_process_group()
        self._wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, _wake)  # a child's end wakes the loop
        # Processes orphaned by a worker that died (its fork server, its horses and their
        # children) are re-parented here instead of to init, so they can be found and killed.
        proc.become_subreaper()
        setproctitle.setproctitle(f"sched supervisor ({self.plan.workers} workers)")
        self.own = set(proc.children_of(os.getpid()))
        proc.fill_tuple_free_list()  # before the forks: the children share it
        try:
            for name, role in self._roles():
                self._spawn(name, role)
            self._supervise()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_r)
            os.close(wakeup_w)
            give_back()
        if self.failure is not None:
            log.error("sched: stopped: %s", self.failure)
            return 1
        return 0

    def _supervise(self) -> None:
        while self.children or self._due:
            self._reap()
            self._announce()
            if self.signals or self.failure is not None:
                self._due.clear()
            now = time.monotonic()
            for name, (at, role) in list(self._due.items()):
                if at <= now:
                    del self._due[name]
                    self._spawn(name, role)
            if not self.children and not self._due:
                return
            wake = min((at for at, _ in self._due.values()), default=None)
            timeout_ms = None if wake is None else max(0.0, wake - now) * 1000 + 1
            poller = select.poll()
            poller.register(self._wakeup_r, select.POLLIN)
            if poller.poll(timeout_ms):
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wakeup_r, 512)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._ended(child, os.waitstatus_to_exitcode(status))

    def _ended(self, child: _Child, code: int) -> None:
        self._kill_orphans()
        how = _ended_how(code)
        if child.worker_id is not None and code != 0:
            self._lose_runs(child, how)
        if self.signals or self.failure is not None or code == 0:
            log.info("%s stopped (%s)", child.name, how)
            return
        if code == EXIT_WILL_NOT_HEAL:
            self._give_up(f"{child.name} cannot run as configured (see its error above)")
            return
        # An exit (not a kill: by a job, the OOM killer, an operator) soon after the start
        # is a failure to start, which a restart is unlikely to cure.
        quick = code > 0 and time.monotonic() - child.started < START_WINDOW_S
        count = self.restarts.get(child.name, 0) + 1 if quick else 1
        self.restarts[child.name] = count
        if quick and count >= START_FAILURES_MAX:
            self._give_up(
                f"{child.name} failed {count} times in a row within {START_WINDOW_S:g}s of "
                f"starting (last: {how}); fix the error above and start again"
            )
            return
        delay = RESTART_BACKOFF_S[min(count - 1, len(RESTART_BACKOFF_S) - 1)]
        log.warning("%s exited unexpectedly (%s); restarting in %gs", child.name, how, delay)
        self._due[child.name] = (time.monotonic() + delay, child.role)

    def _give_up(self, why: str) -> None:
        """Stop everything (warmly) because a child will not heal; `run` then returns 1."""
        self.failure = why
        log.error("sched: %s; stopping", why)
        self._forward(signal.SIGTERM)

    def _lose_runs(self, child: _Child, how: str) -> None:
        """The run a dead worker held is lost now: nobody will report it."""
        assert child.worker_id is not None
        store = self.plan.store()
        try:
            lost = store.lose_runs_of(child.worker_id, f"its worker died ({how})")
        except StoreError as exc:
            log.warning(
                "%s: its runs are judged lost when their lease expires (%s)", child.name, exc
            )
            return
        finally:
            store.close()
        for run_id in lost:
            log_event(
                log,
                logging.WARNING,
                "run_lost",
                "run %s: lost (its worker died: %s)",
                run_id,
                how,
                run_id=run_id,
                status=str(RunStatus.LOST),
                worker=child.worker_id,
            )

    def _announce(self) -> None:
        """After each stop signal, say what the stop waits for, and how to hurry it."""
        if self._announced >= len(self.signals):
            return
        self._announced = len(self.signals)
        signum = self.signals[-1]
        name = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else name
        running = self._running()
        if self._announced >= 2:
            log.info("sched: cold shutdown (%s): killing %s", name, _runs_text(running, "no run"))
            return
        if running is not None and not running:
            log.info("sched: warm shutdown (%s): no run in progress; stopping", name)
            return
        log.info(
            "sched: warm shutdown (%s): waiting for %s to finish; %s again to kill %s",
            name,
            _runs_text(running, "the runs in progress"),
            again,
            "it" if running is not None and len(running) == 1 else "them",
        )

    def _running(self) -> list[str] | None:
        """`job (run id)` of each run this supervisor's workers hold; None if Redis is out."""
        ours = {c.worker_id for c in self.children.values() if c.worker_id is not None}
        if not ours:
            return []
        store = self.plan.store()
        try:
            current = [
                row["current"]
                for row in store.workers()
                if row.get("id") in ours and row.get("current")
            ]
            runs = [store.get_run(run_id) for run_id in current]
        except (StoreError, UnknownRun):
            return None
        finally:
            store.close()
        return [f"{run.job} (run {run.id})" for run in runs if run.status is RunStatus.RUNNING]

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


def _runs_text(runs: list[str] | None, unknown: str) -> str:
    if runs is None:
        return unknown
    if not runs:
        return "no run"
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {', '.join(runs)}"
