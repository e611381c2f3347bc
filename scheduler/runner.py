"""`sched run`: one supervisor, a scheduler process and N worker processes.

The children run in process groups of their own, so a Ctrl-C on the terminal reaches only
the supervisor, which forwards each SIGINT/SIGTERM exactly once: the first asks for a warm
shutdown (finish running jobs), the second for a cold one (kill horses, record `killed`).
A child that dies unexpectedly is restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType

from scheduler.beat import Beat, BeatSettings
from scheduler.model import JobSpec
from scheduler.store import Store
from scheduler.worker import Worker, WorkerSettings

log = logging.getLogger("sched.run")
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass
class Plan:
    """What to run and how it connects."""

    specs: Mapping[str, JobSpec]
    redis_url: str
    namespace: str
    workers: int = 2
    scheduler: bool = True
    queues: tuple[str, ...] = ("default",)
    worker_settings: WorkerSettings = field(default_factory=WorkerSettings)
    beat_settings: BeatSettings = field(default_factory=BeatSettings)


def run_scheduler(plan: Plan) -> int:
    """Run the scheduler loop in this process until SIGINT/SIGTERM."""
    store = Store(plan.redis_url, plan.namespace)
    beat = Beat(store, plan.specs, plan.beat_settings)
    signal.signal(signal.SIGTERM, beat.stop)
    signal.signal(signal.SIGINT, beat.stop)
    beat.run()
    log.info("scheduler: stopped after %d fires", beat.fired)
    store.close()
    return 0


def run_worker(plan: Plan, index: int = 0) -> int:
    """Run one worker in this process until shut down."""
    store = Store(plan.redis_url, plan.namespace)
    worker = Worker(store, plan.specs, queues=plan.queues, settings=plan.worker_settings)
    code = worker.run()
    store.close()
    return code


class Supervisor:
    """Forks the children of a plan, forwards signals, restarts what dies."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.children: dict[int, tuple[str, Callable[[], int]]] = {}
        self.signals: list[int] = []
        self.restarts: dict[str, int] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _spawn(self, name: str, target: Callable[[], int]) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.setpgid(0, 0)
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
        plan = self.plan
        if plan.scheduler:
            self._spawn("scheduler", lambda: run_scheduler(plan))
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
            if self.signals:
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
