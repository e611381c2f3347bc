"""The worker parent: claim a run, fork a horse, watch it, kill it if it must, record the end.

The parent is the only writer of a run's final status. Its horses come from its fork server
(scheduler/forkserver.py), which holds no credential; the parent waits on each horse's pidfd
and pipes with poll(), so a signal, a chatty job or a stuck one never stops it from renewing
its lease or from killing the horse through its pidfd at deadline + grace. The fork server
then kills whatever else the run started before it reports the horse's wait status.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import signal
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import setproctitle

from scheduler import horse, proc
from scheduler.cli_checks import queues_of
from scheduler.cli_output import log_event
from scheduler.display import human_duration
from scheduler.errors import StoreCorrupt, StoreUnavailable
from scheduler.forkserver import Exit, ForkServer, ForkServerError, Horse
from scheduler.horse import Reported
from scheduler.model import JobSpec, KillCause, Run, RunStatus, format_seconds, iso, to_ms
from scheduler.options import format_size
from scheduler.outage import Outage
from scheduler.policy import Retry, retry_plan
from scheduler.reload import Definitions, Reloaded
from scheduler.store import Claimed, Store

log = logging.getLogger("sched.worker")

FIRST_BEAT_S = 0.05


@dataclass(frozen=True)
class WorkerSettings:
    """Every timing of a worker; process tests shrink them to fractions of a second."""

    lease_s: float = 15.0
    heartbeat_s: float = 3.0
    grace_s: float = 5.0
    output_limit: int = 64 * 1024
    reap_interval_s: float = 5.0
    idle_wait_s: float = 1.0
    report_backoff_max_s: float = 10.0
    # After a warm shutdown request, turn cold by itself after this long (None: never), so a
    # platform that sends one SIGTERM then SIGKILL still gets runs recorded `killed`.
    warm_timeout_s: float | None = None


class OutputTail:
    """The last `limit` bytes written by a horse; memory stays bounded however much it prints."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buffer += chunk
        if len(self.buffer) > 2 * self.limit:
            del self.buffer[: len(self.buffer) - self.limit]

    def body(self) -> str:
        """The kept bytes, decoded."""
        return bytes(self.buffer[-self.limit :]).decode("utf-8", errors="replace")

    def text(self) -> str:
        """The kept bytes, after a line saying how many earlier ones were dropped."""
        data = bytes(self.buffer[-self.limit :])
        dropped = self.total - len(data)
        body = data.decode("utf-8", errors="replace")
        if dropped:
            return f"[... {dropped} earlier bytes not kept ...]\n{body}"
        return body


@dataclass
class Outcome:
    """How a horse ended, as the parent saw it."""

    status: RunStatus
    reason: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    error: dict[str, str] | None = None
    result: Any = None
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class _Watch:
    """What the wait loop learns about one horse."""

    pid: int
    pidfd: int
    backstop: float
    # Why the worker signalled the horse: deadline, shutdown, operator or replaced.
    killed_for: KillCause | None = None
    # For an operator's or a replacing fire's stop: SIGTERM first, SIGKILL at this time.
    hard_kill_at: float | None = None
    report: bytearray = field(default_factory=bytearray)
    # Bytes of output already shown through heartbeats (for `sched logs -f`).
    live_sent: int = 0
    pid_sent: bool = False


class Worker:
    """One worker process: runs one job at a time, each in a forked horse."""

    def __init__(
        self,
        store: Store,
        specs: Mapping[str, JobSpec],
        *,
        jobs: str | Path,
        queues: Sequence[str] = ("default",),
        settings: WorkerSettings | None = None,
        worker_id: str | None = None,
        shutdown_hint: bool = True,
        definitions: Definitions | None = None,
        follow_queues: bool = False,
    ) -> None:
        """`definitions` (scheduler/reload.py) is polled between runs: a change swaps in the
        new specs and a fork server that loaded them. With `follow_queues` the worker serves
        every queue its jobs name, also those a reload adds."""
        self.store = store
        self.specs = dict(specs)
        self.queues = list(queues)
        self.settings = settings or WorkerSettings()
        self.id = worker_id or make_worker_id(os.getpid(), uuid.uuid4().hex[:8])
        # Forks the horses from the jobs folder, in a process that holds no credential.
        self.forks = ForkServer(jobs)
        self.definitions = definitions
        self.follow_queues = follow_queues
        # Jobs a reload removed: their runs still queued end `skipped`, not `failed`.
        self._removed: set[str] = set()
        self._next_loaded = 0.0
        self.shutdown_requests = 0
        self._stop_signal = signal.SIGTERM
        self._announced = 0
        # Whether this worker's own lines say how to hurry a warm shutdown (a supervisor
        # says that itself, once for all its workers).
        self.shutdown_hint = shutdown_hint
        # The run being executed, for what a shutdown line says it waits for.
        self._current: Run | None = None
        # Retried at least once per heartbeat: a finished run's report that waits for Redis
        # has no lease renewal behind it, so it must arrive within a lease of Redis's return.
        self.outage = Outage(log, f"worker {self.id}", max_s=min(5.0, self.settings.heartbeat_s))
        self._next_reap = 0.0
        self._next_heartbeat = 0.0
        self._pending: list[_Report] = []
        self._wakeup_r: int | None = None
        self._warm_since = 0.0
        self.heartbeat_timeout_s = store.heartbeat_timeout_s
        # Children this process had before serving (not ours to kill as strays).
        self._foreign: set[int] = set()
        # The next run id, moved into the inbox together with the last report (one round
        # trip for both); `_may_take` says whether the loop will run another one.
        self._next: str | None = None
        self._may_take = False
        # A reply was lost: an id may sit in this worker's inbox, moved but not claimed.
        self._check_inbox = False

    # -- lifecycle -----------------------------------------------------------------------

    def request_shutdown(self, signum: int, frame: FrameType | None = None) -> None:
        """Signal handler: the first request is warm, the second cold, however fast.

        Each signal counts: nothing here guesses that one is a copy of another. What could
        deliver one signal twice is ruled out instead: a supervisor forwards each once to a
        worker in its own process group, and a worker on its own leads its group too
        (proc.lead_process_group). The loops say what the request means (`_announce`).
        """
        self.shutdown_requests += 1
        self._stop_signal = signal.Signals(signum)
        if self.shutdown_requests == 1:
            self._warm_since = time.monotonic()

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: reload the jobs folder between runs (a run in progress keeps its code)."""
        if self.definitions is not None:
            self.definitions.request()

    def _announce(self) -> None:
        """Log each shutdown request once: what it waits for, or what it kills."""
        if self._announced >= self.shutdown_requests:
            return
        self._announced = self.shutdown_requests
        name = self._stop_signal.name
        run = self._current
        doing = f"run {run.id} (job {run.job})" if run is not None else None
        if self._announced >= 2:
            log.info(
                "worker %s: cold shutdown (%s)%s",
                self.id,
                name,
                f": killing {doing}" if doing else "",
            )
            return
        if doing is None:
            log.info("worker %s: warm shutdown (%s): no run in progress", self.id, name)
            return
        again = "Ctrl-C" if self._stop_signal is signal.SIGINT else name
        hint = f"; {again} again to kill it" if self.shutdown_hint else ""
        log.info(
            "worker %s: warm shutdown (%s): waiting for %s to finish%s", self.id, name, doing, hint
        )

    @property
    def cold(self) -> bool:
        """A second request came, or the warm shutdown outlasted its timeout."""
        if self.shutdown_requests >= 2:
            return True
        limit = self.settings.warm_timeout_s
        return (
            self.shutdown_requests == 1
            and limit is not None
            and time.monotonic() - self._warm_since >= limit
        )

    def run(self, max_runs: int | None = None) -> int:
        """Serve the queues until shutdown; return the process exit code."""
        signal.signal(signal.SIGTERM, self.request_shutdown)
        signal.signal(signal.SIGINT, self.request_shutdown)
        if self.definitions is not None:
            signal.signal(signal.SIGHUP, self._on_sighup)
        # Any signal also writes a byte here, which wakes the wait loop's poll() at once.
        self._wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        # A job of the same (non-root) user cannot read this process's memory or
        # environment (the store's URL and password) through /proc or ptrace.
        proc.forbid_inspection()
        # Should the fork server die, what its horses started is re-parented here.
        proc.become_subreaper()
        self._foreign = set(proc.children_of(os.getpid()))
        if not self._start_serving():
            log.info("worker %s: stopped", self.id)
            return 0
        log.info("worker %s: serving queues %s", self.id, ", ".join(self.queues))
        self._title("idle")
        done = 0
        try:
            while not self.shutdown_requests and (max_runs is None or done < max_runs):
                self._may_take = len(self.queues) == 1 and (max_runs is None or done + 1 < max_runs)
                try:
                    done += self._serve_one()
                    if not self._pending:  # a report that waits says Redis is still out
                        self.outage.ended()
                except StoreUnavailable as exc:
                    self._check_inbox = True
                    self._sleep(self.outage.failed(exc, "runs go on, reports wait; retrying"))
                except StoreCorrupt as exc:  # set aside by the store; the loop goes on
                    log.error("worker %s: %s", self.id, exc)
                    self._sleep(1.0)
        finally:
            self.forks.stop()  # it kills the ready horse (and anything else) as it goes
        self._announce()
        self._may_take = False
        self._deliver_pending(final=True)
        if self._give_back():
            with contextlib.suppress(StoreUnavailable):
                self.store.unregister_worker(self.id)
        log.info("worker %s: stopped", self.id)
        return 0

    def _serve_one(self) -> int:
        self._deliver_pending()
        self._maintain()
        run_id, self._next = self._next, None
        if run_id is None and self._check_inbox:
            run_id = self.store.inbox_head(self.id)
            self._check_inbox = False
        if run_id is None:
            run_id = self.store.wait_for_run(self.id, self.queues, self.settings.idle_wait_s)
        if run_id is None:
            return 0
        if self.shutdown_requests and len(self.queues) == 1:
            self._next = run_id  # taken while the stop came: given back, not started
            return 0
        if self._refused_as_removed(run_id):
            return 0
        try:
            claimed = self.store.claim(self.id, run_id, self.settings.lease_s)
        except StoreUnavailable:
            self._next = run_id  # asked again: a claim that went through answers again
            raise
        if claimed is None:
            return 0
        self.execute(claimed)
        return 1

    def _refused_as_removed(self, run_id: str) -> bool:
        """End a run whose job is gone `skipped` (reason `job removed`), without starting it.

        A job this worker does not know may be one just added: the folder is looked at
        first, so a run triggered right after its file was written still runs.
        """
        job = run_id.split("@", 1)[0]  # the store's rule: a run id starts with its job
        if job in self.specs or self.definitions is None:
            return False
        self.definitions.request()
        self._poll_definitions()
        if job in self.specs or job not in self._removed:
            return False
        if self.store.refuse(self.id, run_id, job, "job removed", status=RunStatus.SKIPPED):
            log_event(
                log,
                logging.INFO,
                "run_refused",
                "run %s: skipped - job removed",
                run_id,
                job=job,
                run_id=run_id,
                status=str(RunStatus.SKIPPED),
                worker=self.id,
            )
        return True

    def _poll_definitions(self) -> None:
        """Between runs: swap in a changed jobs folder, and say which one this worker runs."""
        if self.definitions is None:
            return
        try:
            reloaded = self.definitions.poll()
        except OSError as exc:  # the folder itself went away or cannot be read
            log.error("worker %s: cannot read the jobs folder: %s", self.id, exc)
            reloaded = None
        if reloaded is not None:
            self._swap(reloaded)
        if time.monotonic() >= self._next_loaded:
            self._publish_loaded()

    def _swap(self, reloaded: Reloaded) -> None:
        """Run the new definitions from the next run on: a fork server that loaded them
        (its ready horse with them). Should it fail to load them (the folder changed again
        meanwhile), the previous server and specs stay until the next change."""
        fresh = ForkServer(self.forks.jobs)
        try:
            fresh.start()
            fresh.request()
        except ForkServerError as exc:
            log.error("worker %s: keeping the previous definitions: %s", self.id, exc)
            return
        old, self.forks = self.forks, fresh
        old.stop()
        self._sweep()
        self.specs = dict(reloaded.specs)
        self._removed = (self._removed | set(reloaded.removed)) - set(reloaded.added)
        if self.follow_queues:
            new = [q for q in queues_of(self.specs) if q not in self.queues]
            if new:
                self.queues += new
                self._next_heartbeat = 0.0  # tell the store at once which queues it serves
                log.info("worker %s: now also serving queue %s", self.id, ", ".join(new))
        self._publish_loaded()

    def _publish_loaded(self) -> None:
        """Tell the store which definitions this worker runs (`sched list` compares)."""
        if self.definitions is None:
            return
        self._next_loaded = time.monotonic() + self.settings.reap_interval_s
        self.store.set_loaded(
            f"worker:{self.id}", self.definitions.loaded_info(), 2 * self.settings.lease_s
        )

    def _maintain(self) -> None:
        self._poll_definitions()
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self.store.heartbeat(
                self.id,
                self.settings.lease_s,
                info={
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": ",".join(self.queues),
                },
            )
            self._next_heartbeat = now + self.settings.heartbeat_s
        if now >= self._next_reap:
            self._reap()

    def _reap(self) -> None:
        """What every live worker does a few times per lease, busy or idle: mark the runs
        of dead workers lost, requeue what they took but never claimed, queue due retries.
        A deployment of workers only, every one of them busy, still recovers this way."""
        self._next_reap = time.monotonic() + self.settings.reap_interval_s
        for run_id in self.store.reap(self.settings.lease_s):
            log_event(
                log,
                logging.WARNING,
                "run_lost",
                "run %s: lost (its worker stopped renewing the lease)",
                run_id,
                run_id=run_id,
                status=str(RunStatus.LOST),
            )
        self.store.recover_inboxes()
        self.store.promote_due()

    def _start_serving(self) -> bool:
        """Start the fork server; False when a shutdown came first.

        The fork server loads the jobs folder from disk. While that folder has problems (an
        edit in progress, as a reload saw it) the worker waits for it to be fixed instead of
        failing, which a supervisor would count as a failure to start.
        """
        waiting = False
        failed_while_valid = 0
        while True:
            try:
                self._start_forks()
                return True
            except ForkServerError:
                if self.definitions is None:
                    raise
                self.definitions.request()
                reloaded = self.definitions.poll()
                if reloaded is not None:
                    self.specs = dict(reloaded.specs)
                failed_while_valid = 0 if self.definitions.problems else failed_while_valid + 1
                if failed_while_valid >= 2:
                    raise  # the folder is fine: something else keeps the server from starting
            if self.definitions.problems and not waiting:
                waiting = True
                log.warning(
                    "worker %s: waiting for the jobs folder to be fixed (its fork server "
                    "cannot load it)",
                    self.id,
                )
            self._sleep(max(1.0, min(self.definitions.every_s, 5.0)))
            if self.shutdown_requests:
                return False

    def _start_forks(self) -> None:
        """Start the fork server, with the next run's horse on its way."""
        self.forks.start()
        self.forks.request()

    def _title(self, doing: str) -> None:
        """Say in `ps` what this worker is doing."""
        setproctitle.setproctitle(f"sched worker {self.id} [{','.join(self.queues)}]: {doing}")

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.shutdown_requests and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    # -- one run -------------------------------------------------------------------------

    def execute(self, claimed: Claimed) -> RunStatus:
        """Run a claimed run to its end and record the outcome; return the final status."""
        run_id, job = claimed.run.id, claimed.run.job
        spec = self.specs.get(job)
        if spec is None:
            outcome = Outcome(
                RunStatus.FAILED,
                reason=f"job {job!r} is not defined in this worker's jobs folder; "
                "nothing was imported or run",
            )
            self._record(claimed, outcome, 0.0)
            return outcome.status
        timeout_s = claimed.run.timeout_s or spec.timeout_s
        self._title(f"running {run_id}")
        self._current = claimed.run
        started = time.monotonic()
        try:
            outcome = self._fork_and_watch(run_id, spec, timeout_s, _run_env(claimed.run))
        finally:
            self._current = None
        duration = time.monotonic() - started
        self._record(claimed, outcome, duration)
        self._title("idle")
        return outcome.status

    def _fork_and_watch(
        self, run_id: str, spec: JobSpec, timeout_s: float, env: dict[str, str]
    ) -> Outcome:
        order = horse.order_bytes(spec.name, timeout_s, env)
        try:
            current, started = self._start(order)
        except (OSError, ForkServerError) as exc:  # nothing runs
            return Outcome(RunStatus.FAILED, reason=f"no horse could be started: {exc}")
        now = time.monotonic()
        watch = _Watch(current.pid, current.pidfd, now + timeout_s + self.settings.grace_s)
        tail = OutputTail(self.settings.output_limit)
        log_event(
            log,
            logging.DEBUG,
            "run_started",
            "run %s: started in horse %d (timeout %s)",
            run_id,
            current.pid,
            format_seconds(timeout_s),
            job=spec.name,
            run_id=run_id,
            status=str(RunStatus.RUNNING),
            worker=self.id,
        )
        if not self.shutdown_requests:
            # While this run works (on the other core, when there is one), the fork server
            # forks the next run's horse, so that fork is off the next run's path.
            with contextlib.suppress(ForkServerError):  # noticed when the run ends
                self.forks.request()
        try:
            # One wake-up fewer per run when the report waits in its pipe until the exit.
            report_r = None if current.report_fits else current.rep_r
            self._watch(run_id, watch, current.out_r, report_r, tail)
            self._kill(watch, signal.SIGKILL)  # its group, should the horse have left it
            self._drain(current.out_r, tail, watch, current.rep_r)
            server = self.forks.pid
            ended = self._exit_of(current)
        finally:
            current.close()
        self._sweep()
        if ended is None or server != self.forks.pid:
            # Its horse dies with it (parent-death signal): not a signal the job was sent.
            outcome = Outcome(RunStatus.KILLED, reason="its fork server died", signal="SIGKILL")
            if ended is not None:
                outcome.fields.update(max_rss_kb=ended.max_rss_kb, cpu_s=ended.cpu_s)
        else:
            elapsed_s = time.monotonic() - started
            outcome = classify(
                spec, timeout_s, self.settings.grace_s, ended.status, watch, elapsed_s
            )
            outcome.fields.update(max_rss_kb=ended.max_rss_kb, cpu_s=ended.cpu_s)
            if ended.oom_kills and watch.killed_for is None and outcome.signal == "SIGKILL":
                outcome.reason = "oom"  # the kernel's OOM killer, seen in its cgroup
            if ended.left:
                log.error("run %s: %d of its processes would not die", run_id, ended.left)
        outcome.fields.update(pid=current.pid, output=tail.text(), output_bytes=tail.total)
        return outcome

    def _exit_of(self, current: Horse) -> Exit | None:
        """The horse's wait status from the fork server (after it swept the run's tree).

        When the server is gone (killed by a job), the horse was killed with it and
        re-parented here: reap it, then start a new server.
        """
        ended = self.forks.exit_of(current.pid)
        if ended is not None:
            return ended
        log.error("worker %s: its fork server died; starting a new one", self.id)
        with contextlib.suppress(ChildProcessError):
            _, status, rusage = os.wait4(current.pid, 0)
            ended = Exit(status, rusage.ru_maxrss, rusage.ru_utime + rusage.ru_stime, 0, 0)
        self._restart_forks()
        return ended

    def _restart_forks(self) -> None:
        self.forks.stop()
        self._sweep()
        self._start_forks()

    def _sweep(self) -> None:
        """Kill what was re-parented to this worker itself (a dead fork server's tree)."""
        keep = self._foreign | {self.forks.pid or 0}
        if set(proc.children_of(os.getpid())) - keep:
            killed, left = proc.sweep(keep)
            log.warning("worker %s: killed %d leftover processes (%d left)", self.id, killed, left)

    def _start(self, order: bytes) -> tuple[Horse, float]:
        """Hand the order to the ready horse (asked for during the last run).

        Returns the horse and the time just before the order went out: the horse arms its
        deadline after that, so no real timeout ends before this clock says it is due.
        """
        for attempt in range(3):
            try:
                if attempt > 0:
                    self.forks.request()
                ready = self.forks.take()
            except ForkServerError as exc:  # it died between runs (killed from outside)
                log.error("worker %s: %s; starting a new one", self.id, exc)
                self._restart_forks()
                continue
            sent = time.monotonic()
            try:
                _write_all(ready.order_w, order)
            except BrokenPipeError:
                # The ready horse is gone (killed from outside): take another.
                self.forks.forget(ready.pid)
                ready.close()
                continue
            finally:
                ready.close_order()
            return ready, sent
        raise OSError("three horses in a row died before taking the run")

    def _watch(
        self, run_id: str, watch: _Watch, out_r: int, rep_r: int | None, tail: OutputTail
    ) -> None:
        pidfd = watch.pidfd
        poller = select.poll()
        open_fds = {out_r} if rep_r is None else {out_r, rep_r}
        for fd in (*open_fds, pidfd):
            poller.register(fd, select.POLLIN)
        if self._wakeup_r is not None:
            poller.register(self._wakeup_r, select.POLLIN)
        # The first heartbeat records the horse's pid; it waits a moment, so that most short
        # runs finish without that extra round trip (the pid is in their final record).
        next_beat = time.monotonic() + min(FIRST_BEAT_S, self.settings.heartbeat_s)
        while True:
            now = time.monotonic()
            self._announce()
            self._maybe_kill(watch, now)
            # A heartbeat may block for its (short) timeout when Redis stalls; never
            # start one that could delay the backstop kill.
            if now + self.heartbeat_timeout_s < watch.backstop:
                if now >= next_beat:
                    self._renew(run_id, watch, tail, None if watch.pid_sent else watch.pid)
                    next_beat = now + self.settings.heartbeat_s
                elif now >= self._next_reap:
                    self._reap_while_busy()
                    continue
            try:
                events = poller.poll(self._poll_ms(watch, next_beat))
            except BaseException as exc:  # noqa: BLE001 - see below
                # A signal handler that raises (KeyboardInterrupt, or one installed by
                # job code imported into this process) must not abandon the horse.
                log.warning("run %s: signal during wait (%r); still waiting", run_id, exc)
                continue
            if self._handle_events(events, pidfd, out_r, rep_r, open_fds, tail, watch, poller):
                return

    def _reap_while_busy(self) -> None:
        try:
            self._reap()
            if self.definitions is not None and time.monotonic() >= self._next_loaded:
                self._publish_loaded()
        except StoreUnavailable as exc:
            self.outage.failed(exc, "the run goes on; reaping waits")
        except StoreCorrupt as exc:  # set aside by the store
            log.error("worker %s: %s", self.id, exc)

    def _poll_ms(self, watch: _Watch, next_beat: float) -> float:
        wake = next_beat
        if self._next_reap + self.heartbeat_timeout_s < watch.backstop:
            wake = min(wake, self._next_reap)
        if self.shutdown_requests == 1 and self.settings.warm_timeout_s is not None:
            wake = min(wake, self._warm_since + self.settings.warm_timeout_s)
        if watch.killed_for is None:
            wake = min(wake, watch.backstop)
        elif watch.hard_kill_at is not None:
            wake = min(wake, watch.hard_kill_at)
        return max(0.0, wake - time.monotonic()) * 1000 + 1

    def _handle_events(
        self,
        events: list[tuple[int, int]],
        pidfd: int,
        out_r: int,
        rep_r: int | None,
        open_fds: set[int],
        tail: OutputTail,
        watch: _Watch,
        poller: select.poll,
    ) -> bool:
        exited = False
        for fd, _ in events:
            if fd == pidfd:
                exited = True
            elif fd == self._wakeup_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 512)
            elif fd in open_fds:
                chunk = _read(fd)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                elif fd == out_r:
                    tail.feed(chunk)
                else:
                    watch.report += chunk
        return exited

    def _maybe_kill(self, watch: _Watch, now: float) -> None:
        if watch.killed_for is None:
            if now >= watch.backstop:
                watch.killed_for = KillCause.DEADLINE
            elif self.cold:
                watch.killed_for = KillCause.SHUTDOWN
            else:
                return
            self._kill(watch, signal.SIGKILL)
        elif watch.hard_kill_at is not None and now >= watch.hard_kill_at:
            watch.hard_kill_at = None
            self._kill(watch, signal.SIGKILL)

    def _renew(self, run_id: str, watch: _Watch, tail: OutputTail, pid: int | None = None) -> None:
        live = None
        if tail.total != watch.live_sent:
            live = (tail.total, tail.body())
        try:
            beat = self.store.heartbeat(self.id, self.settings.lease_s, run_id, pid, live)
        except StoreUnavailable as exc:
            self.outage.failed(exc, f"run {run_id}'s horse keeps running")
            return
        self.outage.ended()
        if live is not None:
            watch.live_sent = live[0]
        watch.pid_sent = True
        if not beat.held:
            log.warning("run %s: this worker no longer holds the run's lease", run_id)
        if beat.kill_requested and watch.killed_for is None:
            log_event(
                log,
                logging.INFO,
                "run_killing",
                "run %s: stopping it (%s)",
                run_id,
                beat.kill_requested,
                job=self._current.job if self._current else None,
                run_id=run_id,
                worker=self.id,
            )
            watch.killed_for = beat.kill_requested
            watch.hard_kill_at = time.monotonic() + self.settings.grace_s
            self._kill(watch, signal.SIGTERM)

    @staticmethod
    def _kill(watch: _Watch, sig: signal.Signals) -> None:
        """Signal the horse through its pidfd (wherever it moved), and its process group.

        The group is for a program's children; whatever else the run started is killed by
        the fork server's sweep once the horse has ended.
        """
        proc.send(watch.pidfd, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(watch.pid, sig)

    @staticmethod
    def _drain(out_r: int, tail: OutputTail, watch: _Watch, rep_r: int) -> None:
        for fd in (out_r, rep_r):
            os.set_blocking(fd, False)
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                if fd == out_r:
                    tail.feed(chunk)
                else:
                    watch.report += chunk

    # -- recording -----------------------------------------------------------------------

    def _record(self, claimed: Claimed, outcome: Outcome, duration_s: float) -> None:
        run_id = claimed.run.id
        fields: dict[str, object] = {
            "reason": outcome.reason,
            "exit_code": outcome.exit_code,
            "signal": outcome.signal,
            "error": outcome.error,
            "result": json.dumps(outcome.result) if outcome.result is not None else None,
            **outcome.fields,
        }
        retry = retry_plan(run_id, claimed.run.attempt, claimed.policy, outcome.status)
        self._pending.append(_Report(claimed, outcome.status, duration_s, fields, retry))
        self._deliver_pending()
        log_event(
            log,
            logging.INFO,
            "run_ended",
            "run %s: %s in %s%s%s",
            run_id,
            outcome.status,
            human_duration(duration_s),
            f" - {outcome.reason}" if outcome.reason else "",
            f"; retry {retry.run_id} in {human_duration(retry.delay_ms / 1000)}" if retry else "",
            job=claimed.run.job,
            run_id=run_id,
            status=str(outcome.status),
            duration_s=round(duration_s, 3),
            worker=self.id,
        )

    def _deliver_pending(self, final: bool = False) -> None:
        """Send finished runs' reports; keep them (in order) while Redis is unreachable.

        When stopping (`final`), keep trying for one lease; after that the runs are judged
        lost anyway, and each report still undelivered is written to the log instead.
        """
        backoff = 0.2
        give_up_at = time.monotonic() + self.settings.lease_s
        while self._pending:
            report = self._pending[0]
            try:
                self._deliver(report)
            except StoreUnavailable as exc:
                self._check_inbox = True  # the reply may be lost after a next id was taken
                if not final:
                    self.outage.failed(exc, f"run {report.run_id}'s report waits for it")
                    return
                if self.cold or time.monotonic() >= give_up_at:
                    self._abandon(exc)
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, self.settings.report_backoff_max_s)
                continue
            self._pending.pop(0)

    def _abandon(self, exc: BaseException) -> None:
        for report in self._pending:
            log.error(
                "run %s: Redis unreachable (%s); its report is lost to Redis, here it is: %s",
                report.run_id,
                exc,
                json.dumps(
                    {
                        "status": str(report.status),
                        "duration_s": report.duration_s,
                        **{k: v for k, v in report.fields.items() if k != "output"},
                    }
                ),
            )
        self._pending.clear()

    def _give_back(self) -> bool:
        """Return a run id taken with the last report but not claimed (the worker stops).

        False when Redis could not be told: then the worker must stay registered, so that
        the reaper finds the id in its inbox once the worker's heartbeat has expired.
        """
        run_id, self._next = self._next, None
        if run_id is None:
            return True
        try:
            self.store.give_back(self.id, run_id, self.queues[0])
        except StoreUnavailable as exc:
            log.warning("run %s: cannot give it back to its queue yet (%s)", run_id, exc)
            return False
        return True

    def _deliver(self, report: _Report) -> None:
        args = (
            self.id,
            report.run_id,
            report.claimed.run.job,
            report.status,
            report.duration_s,
            report.fields,
            report.retry,
        )
        take = self._may_take and not self.shutdown_requests and self._next is None
        if take and len(self._pending) == 1:
            recorded, current, self._next = self.store.finish_and_take(*args, self.queues[0])
        else:
            recorded, current = self.store.finish(*args)
        if recorded:
            return
        if current == "":
            # Redis lost the record (restarted empty): write the whole run back.
            self.store.restore(report.restored(), report.retry)
            log.warning("run %s: record was gone from Redis; restored it", report.run_id)
            return
        log.warning(
            "run %s: reported %s late; the record already says %s (kept as late_report)",
            report.run_id,
            report.status,
            current,
        )


@dataclass
class _Report:
    """A finished run's report, kept until Redis has it."""

    claimed: Claimed
    status: RunStatus
    duration_s: float
    fields: dict[str, object]
    retry: Retry | None

    @property
    def run_id(self) -> str:
        return self.claimed.run.id

    def restored(self) -> dict[str, object]:
        """The full record, from the fields seen at claim time plus the outcome."""
        run = self.claimed.run
        started = to_ms(run.started_at) if run.started_at else 0
        duration_ms = int(self.duration_s * 1000)
        return {
            **self.claimed.fields(),
            **{k: v for k, v in self.fields.items() if v is not None},
            "status": str(self.status),
            "worker": run.worker or "",
            "finished_at": started + duration_ms,
            "duration_s": f"{self.duration_s:.3f}",
        }


def make_worker_id(pid: int, token: str) -> str:
    """A worker's id: unique per process start, as a restarted container reuses its hostname
    and pid 1 and must not take over (and strand) the runs of its previous incarnation."""
    return f"{socket.gethostname()}:{pid}:{token}"


def _run_env(run: Run) -> dict[str, str]:
    """What a horse learns about its run through the environment (horse.RUN_ENV's names,
    which a ready horse sets up before its order)."""
    values = (run.id, run.job, str(run.attempt), str(run.trigger), iso(run.scheduled_for))
    return dict(zip(horse.RUN_ENV, values, strict=True))


def classify(
    spec: JobSpec,
    timeout_s: float,
    grace_s: float,
    status: int,
    watch: _Watch,
    elapsed_s: float | None = None,
) -> Outcome:
    """Turn the horse's wait status (the truth) and report line (detail) into a status.

    A job can write to its report pipe itself, or exit with any code: a report is used only
    where it agrees with the exit code, and no deadline is claimed before `elapsed_s` reached
    it (the horse arms its timer after the worker starts counting).
    """
    deadline_passed = elapsed_s is None or elapsed_s >= timeout_s
    if os.WIFSIGNALED(status):
        return _by_signal(os.WTERMSIG(status), timeout_s, grace_s, watch, deadline_passed)
    code = os.WEXITSTATUS(status)
    if watch.killed_for in (KillCause.OPERATOR, KillCause.REPLACED):
        # It was asked to stop and did, by exiting: still an operator's (or a new fire's) kill.
        return Outcome(RunStatus.KILLED, reason=str(watch.killed_for), exit_code=code)
    report = _agreeing(_parse_report(bytes(watch.report)), code)
    if code == horse.EXIT_TIMEOUT and not deadline_passed:
        report = None  # a timeout the clock did not see: the exit code alone
    if report is None:
        return _without_report(spec, code, deadline_passed)
    outcome = _by_report(report, code, timeout_s)
    if spec.memory_limit_bytes is not None and (outcome.error or {}).get("type") == "MemoryError":
        limit = format_size(spec.memory_limit_bytes)
        outcome.reason = f"memory limit {limit} reached: {outcome.reason}"
    return outcome


# Which report outcomes each exit code of the horse can carry (horse.py).
_AGREES = {
    horse.EXIT_OK: (Reported.RETURNED, Reported.EXIT),
    horse.EXIT_FAILED: (Reported.RAISED, Reported.UNUSABLE, Reported.EXIT),
    horse.EXIT_TIMEOUT: (Reported.TIMEOUT, Reported.EXIT),
    horse.EXIT_EXEC_FAILED: (Reported.EXEC_FAILED, Reported.EXIT),
}


def _agreeing(report: dict[str, Any] | None, code: int) -> dict[str, Any] | None:
    """The report if it tells the same story as the exit code, else None."""
    if report is None:
        return None
    kind = report.get("outcome")
    if kind == Reported.EXIT:
        return report if report.get("exit_code") == code else None
    return report if kind in _AGREES.get(code, ()) else None


def _by_signal(
    signum: int, timeout_s: float, grace_s: float, watch: _Watch, deadline_passed: bool
) -> Outcome:
    name = _signal_name(signum)
    if watch.killed_for in (KillCause.SHUTDOWN, KillCause.OPERATOR, KillCause.REPLACED):
        return Outcome(RunStatus.KILLED, reason=str(watch.killed_for), signal=name)
    if watch.killed_for is KillCause.DEADLINE and signum == signal.SIGKILL:
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"still running {format_seconds(grace_s)} after its "
            f"{format_seconds(timeout_s)} deadline: killed through its pidfd (SIGKILL)",
            signal=name,
        )
    if signum == signal.SIGALRM and deadline_passed:
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"deadline of {format_seconds(timeout_s)} passed: ended by SIGALRM",
            signal=name,
        )
    return Outcome(RunStatus.KILLED, reason=f"killed by {name}", signal=name)


def _without_report(spec: JobSpec, code: int, deadline_passed: bool = True) -> Outcome:
    if spec.argv is not None:
        if code == 0:
            return Outcome(RunStatus.COMPLETED, exit_code=0)
        return Outcome(RunStatus.FAILED, reason=f"exited with code {code}", exit_code=code)
    if code == 0:
        return Outcome(
            RunStatus.COMPLETED, reason="exited with code 0 without a report", exit_code=0
        )
    if code == horse.EXIT_TIMEOUT and deadline_passed:
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"exited with code {code} after its deadline",
            exit_code=code,
        )
    return Outcome(
        RunStatus.FAILED, reason=f"exited with code {code} before returning", exit_code=code
    )


def _by_report(report: dict[str, Any], code: int, timeout_s: float) -> Outcome:
    kind = report.get("outcome")
    error = report.get("error")
    if kind == Reported.RETURNED:
        return Outcome(RunStatus.COMPLETED, exit_code=0, result=report.get("result"))
    if kind == Reported.TIMEOUT:
        note = report.get("note")
        reason = f"deadline of {format_seconds(timeout_s)} passed: JobTimeout raised"
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"{reason} ({note})" if note else reason,
            exit_code=code,
            error=error,
        )
    if kind == Reported.EXIT:
        exit_code = int(report.get("exit_code", code))
        if exit_code == 0:
            return Outcome(RunStatus.COMPLETED, reason="sys.exit(0)", exit_code=0)
        return Outcome(RunStatus.FAILED, reason=f"sys.exit({exit_code})", exit_code=exit_code)
    if kind == Reported.UNUSABLE:
        return Outcome(
            RunStatus.FAILED, reason=f"unusable result: {report.get('reason')}", exit_code=code
        )
    if kind == Reported.EXEC_FAILED:
        message = (error or {}).get("message", "cannot execute the program")
        return Outcome(RunStatus.FAILED, reason=message, exit_code=code, error=error)
    summary = f"{(error or {}).get('type', 'error')}: {_brief((error or {}).get('message', ''))}"
    return Outcome(RunStatus.FAILED, reason=f"raised {summary}", exit_code=code, error=error)


REASON_MESSAGE_LIMIT = 200


def _brief(message: str) -> str:
    """An exception message as a reason shows it: bounded (the whole one is in `error`)."""
    if len(message) <= REASON_MESSAGE_LIMIT:
        return message
    return message[:REASON_MESSAGE_LIMIT] + f"... ({len(message)} characters)"


def _parse_report(data: bytes) -> dict[str, Any] | None:
    # The horse writes its report last; a job may have written lines before it.
    lines = data.split(b"\n")
    line = lines[-2] if len(lines) > 1 else b""
    if not line:
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue


def _read(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 65536)
        except BaseException as exc:  # noqa: BLE001 - only a raising signal handler gets here
            if isinstance(exc, OSError) and exc.errno != errno.EINTR:
                raise
            log.warning("signal during read (%r); reading again", exc)
