"""The worker parent: claim a run, fork a horse, watch it, kill it if it must, record the end.

The parent is the only writer of a run's final status. It waits on a pidfd and the horse's
pipes with poll(), so a signal, a chatty job or a stuck one never stops it from renewing its
lease or from killing the horse's whole process group at deadline + grace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import setproctitle

from scheduler import horse
from scheduler.errors import StoreUnavailable
from scheduler.model import JobSpec, Run, RunStatus, format_seconds, iso, to_ms
from scheduler.policy import Retry, retry_plan
from scheduler.store import Claimed, Store

log = logging.getLogger("sched.worker")

PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
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
    backstop: float
    # Why the worker signalled the group: deadline, shutdown, operator or replaced.
    killed_for: str | None = None
    # For an operator's or a replacing fire's stop: SIGTERM first, SIGKILL at this time.
    hard_kill_at: float | None = None
    report: bytearray = field(default_factory=bytearray)
    # Bytes of output already shown through heartbeats (for `sched logs -f`).
    live_sent: int = 0
    pid_sent: bool = False


@dataclass
class _Horse:
    """A forked horse and the parent's ends of its pipes."""

    pid: int
    order_w: int
    out_r: int
    rep_r: int
    # The report pipe holds the largest report: read it after the exit, not while it runs.
    report_fits: bool = False

    def close_order(self) -> None:
        """Close the order pipe: the horse's read sees end of file after the order."""
        if self.order_w >= 0:
            os.close(self.order_w)
            self.order_w = -1

    def close(self) -> None:
        self.close_order()
        for fd in (self.out_r, self.rep_r):
            os.close(fd)


class Worker:
    """One worker process: runs one job at a time, each in a forked horse."""

    def __init__(
        self,
        store: Store,
        specs: Mapping[str, JobSpec],
        *,
        queues: Sequence[str] = ("default",),
        settings: WorkerSettings | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.specs = dict(specs)
        self.queues = list(queues)
        self.settings = settings or WorkerSettings()
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.shutdown_requests = 0
        self._next_reap = 0.0
        self._next_heartbeat = 0.0
        self._pending: list[_Report] = []
        self._wakeup_r: int | None = None
        self._warm_since = 0.0
        self._last_signal: tuple[int, float] | None = None
        self.heartbeat_timeout_s = store.heartbeat_timeout_s
        # The horse of the next run, forked while the current one works (see horse.serve).
        self._spare: _Horse | None = None
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
        """Signal handler: the first request is warm, the second cold."""
        if signal_echo(self._last_signal, signum):
            return
        self._last_signal = (signum, time.monotonic())
        self.shutdown_requests += 1
        kind = "warm" if self.shutdown_requests == 1 else "cold"
        if self.shutdown_requests == 1:
            self._warm_since = time.monotonic()
        log.info("worker %s: %s shutdown (%s)", self.id, kind, signal.Signals(signum).name)

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
        # Any signal also writes a byte here, which wakes the wait loop's poll() at once.
        self._wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        libc = ctypes.CDLL(None, use_errno=True)
        # Grandchildren that escape the horse's process group are re-parented to us, so
        # they can be found and killed when the run ends.
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        horse.prepare()
        self._foreign = set(children_of(os.getpid()))
        gc.collect()
        gc.freeze()  # Fewer pages touched after fork: the horse's copy-on-write stays cheap.
        log.info("worker %s: serving queues %s", self.id, ", ".join(self.queues))
        self._title("idle")
        done = 0
        try:
            self._spare = self._spawn()  # ready before the first run is claimed
            while not self.shutdown_requests and (max_runs is None or done < max_runs):
                self._may_take = len(self.queues) == 1 and (max_runs is None or done + 1 < max_runs)
                try:
                    done += self._serve_one()
                except StoreUnavailable as exc:
                    log.warning("worker %s: Redis unreachable (%s); retrying", self.id, exc)
                    self._check_inbox = True
                    self._sleep(1.0)
        finally:
            self._dismiss_spare()
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
        claimed = self.store.claim(self.id, run_id, self.settings.lease_s)
        if claimed is None:
            return 0
        self.execute(claimed)
        return 1

    def _maintain(self) -> None:
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
            for run_id in self.store.reap(self.settings.lease_s):
                log.warning("run %s: lost (its worker stopped renewing the lease)", run_id)
            self.store.recover_inboxes()
            self.store.promote_due()
            self._next_reap = now + self.settings.reap_interval_s

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
        started = time.monotonic()
        outcome = self._fork_and_watch(run_id, spec, timeout_s, _run_env(claimed.run))
        duration = time.monotonic() - started
        self._record(claimed, outcome, duration)
        self._title("idle")
        return outcome.status

    def _fork_and_watch(
        self, run_id: str, spec: JobSpec, timeout_s: float, env: dict[str, str]
    ) -> Outcome:
        order = horse.order_bytes(spec.name, timeout_s, env)
        try:
            current = self._start(order)
        except OSError as exc:  # nothing runs: fork failed, or horses die before their order
            return Outcome(RunStatus.FAILED, reason=f"no horse could be started: {exc}")
        now = time.monotonic()
        watch = _Watch(current.pid, backstop=now + timeout_s + self.settings.grace_s)
        tail = OutputTail(self.settings.output_limit)
        log.debug(
            "run %s: horse %d started (timeout %s)", run_id, current.pid, format_seconds(timeout_s)
        )
        if not self.shutdown_requests:
            # While this run works (on the other core, when there is one), fork the next
            # run's horse, so the fork and the horse's set-up are off the next run's path.
            try:
                self._spare = self._spawn(current)
            except OSError as exc:  # out of processes or memory: fork the next one later
                log.warning("run %s: cannot fork the next run's horse yet (%s)", run_id, exc)
        try:
            # One wake-up fewer per run when the report waits in its pipe until the exit.
            report_r = None if current.report_fits else current.rep_r
            self._watch(run_id, watch, current.out_r, report_r, tail)
            self._kill_group(current.pid)
            self._drain(current.out_r, tail, watch, current.rep_r)
            status, rusage = self._reap_horse(current.pid)
        finally:
            current.close()
        self._kill_strays()
        outcome = classify(spec, timeout_s, self.settings.grace_s, status, watch)
        outcome.fields.update(
            pid=current.pid,
            output=tail.text(),
            output_bytes=tail.total,
            max_rss_kb=rusage.ru_maxrss,
            cpu_s=round(rusage.ru_utime + rusage.ru_stime, 3),
        )
        return outcome

    def _start(self, order: bytes) -> _Horse:
        """Hand the order to the ready horse (forking one if there is none) and return it."""
        for _attempt in range(2):
            ready, self._spare = self._spare or self._spawn(), None
            try:
                _write_all(ready.order_w, order)
            except BrokenPipeError:
                # The ready horse is gone (killed from outside): reap it and fork another.
                ready.close()
                _reap(ready.pid)
                continue
            finally:
                ready.close_order()
            return ready
        raise OSError("two horses in a row died before taking the run")

    def _spawn(self, running: _Horse | None = None) -> _Horse:
        """Fork a horse that sets itself up, then waits for its order (horse.serve)."""
        fds: list[int] = []
        try:
            for _pipe in range(3):
                fds += os.pipe()
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        out_r, out_w, rep_r, rep_w, order_r, order_w = fds
        report_fits = False
        with contextlib.suppress(OSError):
            import fcntl

            fcntl.fcntl(out_w, F_SETPIPE_SZ, PIPE_SIZE)
            report_fits = fcntl.fcntl(rep_w, F_SETPIPE_SZ, PIPE_SIZE) >= horse.REPORT_LIMIT
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the horse would print the parent's buffered lines again
        parent = os.getpid()
        inherited = (running.out_r, running.rep_r) if running else ()
        try:
            pid = os.fork()
        except OSError:
            for fd in (out_r, out_w, rep_r, rep_w, order_r, order_w):
                os.close(fd)
            raise
        if pid == 0:  # pragma: no cover - the horse; measured by the process tests
            try:
                for fd in (out_r, rep_r, order_w, *inherited):
                    os.close(fd)
                horse.serve(self.specs, order_r, out_w, rep_w, parent)
            finally:
                os._exit(horse.EXIT_FAILED)  # never back into the worker's code
        os.close(out_w)
        os.close(rep_w)
        os.close(order_r)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the horse; whoever is first wins the race
        return _Horse(pid, order_w, out_r, rep_r, report_fits)

    def _dismiss_spare(self) -> None:
        """End the horse that was waiting for a run that will not come."""
        spare, self._spare = self._spare, None
        if spare is None:
            return
        self._kill_group(spare.pid)
        spare.close()
        _reap(spare.pid)

    def _watch(
        self, run_id: str, watch: _Watch, out_r: int, rep_r: int | None, tail: OutputTail
    ) -> None:
        pidfd = os.pidfd_open(watch.pid)
        poller = select.poll()
        open_fds = {out_r} if rep_r is None else {out_r, rep_r}
        for fd in (*open_fds, pidfd):
            poller.register(fd, select.POLLIN)
        if self._wakeup_r is not None:
            poller.register(self._wakeup_r, select.POLLIN)
        # The first heartbeat records the horse's pid; it waits a moment, so that most short
        # runs finish without that extra round trip (the pid is in their final record).
        next_beat = time.monotonic() + min(FIRST_BEAT_S, self.settings.heartbeat_s)
        try:
            while True:
                now = time.monotonic()
                self._maybe_kill(watch, now)
                # A heartbeat may block for its (short) timeout when Redis stalls; never
                # start one that could delay the backstop kill.
                if now >= next_beat and now + self.heartbeat_timeout_s < watch.backstop:
                    self._renew(run_id, watch, tail, None if watch.pid_sent else watch.pid)
                    next_beat = now + self.settings.heartbeat_s
                try:
                    events = poller.poll(self._poll_ms(watch, next_beat))
                except BaseException as exc:  # noqa: BLE001 - see below
                    # A signal handler that raises (KeyboardInterrupt, or one installed by
                    # job code imported into this process) must not abandon the horse.
                    log.warning("run %s: signal during wait (%r); still waiting", run_id, exc)
                    continue
                if self._handle_events(events, pidfd, out_r, rep_r, open_fds, tail, watch, poller):
                    return
        finally:
            os.close(pidfd)

    def _poll_ms(self, watch: _Watch, next_beat: float) -> float:
        wake = next_beat
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
                watch.killed_for = "deadline"
            elif self.cold:
                watch.killed_for = "shutdown"
            else:
                return
            self._kill_group(watch.pid)
        elif watch.hard_kill_at is not None and now >= watch.hard_kill_at:
            watch.hard_kill_at = None
            self._kill_group(watch.pid)

    def _renew(self, run_id: str, watch: _Watch, tail: OutputTail, pid: int | None = None) -> None:
        live = None
        if tail.total != watch.live_sent:
            live = (tail.total, tail.body())
        try:
            beat = self.store.heartbeat(self.id, self.settings.lease_s, run_id, pid, live)
        except StoreUnavailable as exc:
            log.warning("run %s: cannot renew lease (%s); the horse keeps running", run_id, exc)
            return
        if live is not None:
            watch.live_sent = live[0]
        watch.pid_sent = True
        if not beat.held:
            log.warning("run %s: this worker no longer holds the run's lease", run_id)
        if beat.kill_requested and watch.killed_for is None:
            log.info("run %s: stopping it (%s)", run_id, beat.kill_requested)
            watch.killed_for = beat.kill_requested
            watch.hard_kill_at = time.monotonic() + self.settings.grace_s
            self._kill_group(watch.pid, signal.SIGTERM)

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

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

    @staticmethod
    def _reap_horse(pid: int) -> tuple[int, Any]:
        while True:
            try:
                _, status, rusage = os.wait4(pid, 0)
                return status, rusage
            except InterruptedError:
                continue
            except BaseException:  # noqa: BLE001 - a raising handler; the horse is still ours
                continue

    def _kill_strays(self) -> None:
        """Kill and reap processes re-parented to this worker during the run.

        They descend from the horse but left its process group (setsid); children the
        worker had before it started serving, and the next run's horse, are not touched.
        """
        keep = self._foreign | ({self._spare.pid} if self._spare else set())
        for pid in set(children_of(os.getpid())) - keep:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

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
        log.info(
            "run %s: %s in %.3fs%s%s",
            run_id,
            outcome.status,
            duration_s,
            f" - {outcome.reason}" if outcome.reason else "",
            f"; retry {retry.run_id} in {retry.delay_ms / 1000:.1f}s" if retry else "",
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
                    log.warning("run %s: report waits for Redis (%s)", report.run_id, exc)
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
            self.store.restore(report.restored())
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


# The same signal again within this long is one request delivered twice (tools such as
# `timeout` signal both a process and its group), not an operator asking a second time.
SIGNAL_ECHO_S = 0.5


def signal_echo(last: tuple[int, float] | None, signum: int) -> bool:
    """True when `signum` repeats the last signal within SIGNAL_ECHO_S."""
    return last is not None and last[0] == signum and time.monotonic() - last[1] < SIGNAL_ECHO_S


def _run_env(run: Run) -> dict[str, str]:
    """What a horse learns about its run through the environment."""
    return {
        "SCHED_RUN_ID": run.id,
        "SCHED_JOB": run.job,
        "SCHED_ATTEMPT": str(run.attempt),
        "SCHED_TRIGGER": str(run.trigger),
        "SCHED_SCHEDULED_FOR": iso(run.scheduled_for),
    }


def classify(
    spec: JobSpec, timeout_s: float, grace_s: float, status: int, watch: _Watch
) -> Outcome:
    """Turn the horse's wait status and report line into the run's final status."""
    report = _parse_report(bytes(watch.report))
    if watch.killed_for == "deadline":
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"still running {format_seconds(grace_s)} after its "
            f"{format_seconds(timeout_s)} deadline: process group killed (SIGKILL)",
            signal="SIGKILL",
        )
    if os.WIFSIGNALED(status):
        return _by_signal(os.WTERMSIG(status), timeout_s, watch)
    code = os.WEXITSTATUS(status)
    if watch.killed_for in ("operator", "replaced"):
        # It was asked to stop and did, by exiting: still an operator's (or a new fire's) kill.
        return Outcome(RunStatus.KILLED, reason=watch.killed_for, exit_code=code)
    if report is None:
        return _without_report(spec, code)
    return _by_report(report, code, timeout_s)


def _by_signal(signum: int, timeout_s: float, watch: _Watch) -> Outcome:
    name = _signal_name(signum)
    if watch.killed_for in ("shutdown", "operator", "replaced"):
        return Outcome(RunStatus.KILLED, reason=watch.killed_for, signal=name)
    if signum == signal.SIGALRM:
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"deadline of {format_seconds(timeout_s)} passed: ended by SIGALRM",
            signal=name,
        )
    return Outcome(RunStatus.KILLED, reason=f"killed by {name}", signal=name)


def _without_report(spec: JobSpec, code: int) -> Outcome:
    if spec.argv is not None:
        if code == 0:
            return Outcome(RunStatus.COMPLETED, exit_code=0)
        return Outcome(RunStatus.FAILED, reason=f"exited with code {code}", exit_code=code)
    if code == 0:
        return Outcome(
            RunStatus.COMPLETED, reason="exited with code 0 before returning", exit_code=0
        )
    return Outcome(
        RunStatus.FAILED, reason=f"exited with code {code} before returning", exit_code=code
    )


def _by_report(report: dict[str, Any], code: int, timeout_s: float) -> Outcome:
    kind = report.get("outcome")
    error = report.get("error")
    if kind == "returned":
        return Outcome(RunStatus.COMPLETED, exit_code=0, result=report.get("result"))
    if kind == "timeout":
        note = report.get("note")
        reason = f"deadline of {format_seconds(timeout_s)} passed: JobTimeout raised"
        return Outcome(
            RunStatus.TIMED_OUT,
            reason=f"{reason} ({note})" if note else reason,
            exit_code=code,
            error=error,
        )
    if kind == "exit":
        exit_code = int(report.get("exit_code", code))
        if exit_code == 0:
            return Outcome(RunStatus.COMPLETED, reason="sys.exit(0)", exit_code=0)
        return Outcome(RunStatus.FAILED, reason=f"sys.exit({exit_code})", exit_code=exit_code)
    if kind == "unusable":
        return Outcome(
            RunStatus.FAILED, reason=f"unusable result: {report.get('reason')}", exit_code=code
        )
    if kind == "exec-failed":
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
    line = data.split(b"\n", 1)[0]
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


def _reap(pid: int) -> None:
    """Wait for a horse that never ran (or no longer runs) anything."""
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


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


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(x) for x in fh.read().split()]
    except OSError:
        return found
    return found
