"""Prometheus metrics: runs, fire delays, queues, workers; a registry of our own, served on demand.

The registry is not prometheus_client's global one, so two Metrics in one process (tests, or a
supervisor and its children before they fork) never clash over metric names.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from scheduler.model import Run, RunStatus

# Cron jobs run from milliseconds (a health check) to an hour (the default timeout).
RUN_DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
)  # fmt: skip
# The scheduler enqueues within milliseconds of a fire; seconds mean it is starved or blocked.
FIRE_DELAY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
FIRE_STATUSES = (RunStatus.QUEUED, RunStatus.SKIPPED, RunStatus.MISSED)


class Metrics:
    """sched's Prometheus metrics in their own registry, with an optional HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.runs = Counter(
            "sched_runs",
            "Runs that reached a final status, by job and status.",
            ["job", "status"],
            registry=registry,
        )
        self.run_duration = Histogram(
            "sched_run_duration_seconds",
            "How long finished runs took, by job.",
            ["job"],
            buckets=RUN_DURATION_BUCKETS,
            registry=registry,
        )
        self.fire_delay = Histogram(
            "sched_fire_delay_seconds",
            "Enqueue time minus fire instant, for fires the scheduler acted on in time.",
            buckets=FIRE_DELAY_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "sched_queue_depth", "Runs waiting in each queue.", ["queue"], registry=registry
        )
        self.running = Gauge("sched_running_runs", "Runs executing now.", registry=registry)
        self.workers_alive = Gauge(
            "sched_workers_alive", "Workers with a live registration.", registry=registry
        )
        self.missed = Counter(
            "sched_missed_fires",
            "Fire times dropped by the catch-up policy, by job.",
            ["job"],
            registry=registry,
        )
        self.skipped = Counter(
            "sched_skipped_fires",
            "Fires not started because of the overlap policy, by job.",
            ["job"],
            registry=registry,
        )
        self._queues: set[str] = set()
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics over HTTP from a daemon thread; return the bound port (0 = any free)."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError(f"metrics already served on port {self._server.server_port}")
            # prometheus-client >= 0.20 returns the server and its thread, so close() can stop
            # them; the pinned range guarantees it.
            server, thread = start_http_server(port, addr=addr, registry=self.registry)
            self._server, self._thread = server, thread
            return int(server.server_port)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the HTTP endpoint, if serving, and release its port."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # shutdown() alone keeps the listening socket open
        if thread is not None:
            thread.join(timeout_s)

    def observe_run(self, run: Run) -> None:
        """Count a run that reached a final status and, if it ran, observe its duration."""
        status = RunStatus(run.status)
        if not status.final:
            return  # counted once, when it ends
        self.runs.labels(job=run.job, status=str(status)).inc()
        if run.duration_s is not None:
            self.run_duration.labels(job=run.job).observe(run.duration_s)

    def observe_fire(self, job: str, delay_s: float, status: RunStatus) -> None:
        """Record one fire the scheduler handled: `queued`, `skipped` (overlap) or `missed`."""
        kind = RunStatus(status)
        if kind not in FIRE_STATUSES:
            raise ValueError(f"fire status {status!r}: expected one of queued, skipped, missed")
        if kind is RunStatus.MISSED:
            # Its "delay" is the downtime that dropped it, not scheduler latency.
            self.missed.labels(job=job).inc()
            return
        if kind is RunStatus.SKIPPED:
            self.skipped.labels(job=job).inc()
        # Clamped: a clock step can make it negative, and a negative observation would make
        # the histogram's _sum decrease, which rate() reads as a counter reset.
        self.fire_delay.observe(max(0.0, delay_s))

    def set_gauges(
        self, *, queue_depths: Mapping[str, int], running: int, workers_alive: int
    ) -> None:
        """Set the point-in-time gauges; a queue seen before and absent now reads 0."""
        with self._lock:
            # Redis deletes an empty list, so a drained queue may vanish from the mapping; it
            # should read 0, not keep its last depth.
            for name in self._queues - set(queue_depths):
                self.queue_depth.labels(queue=name).set(0)
            for name, depth in queue_depths.items():
                self.queue_depth.labels(queue=name).set(depth)
            self._queues |= set(queue_depths)
        self.running.set(running)
        self.workers_alive.set(workers_alive)

    def render(self) -> bytes:
        """The metrics in Prometheus text exposition format."""
        return generate_latest(self.registry)
