"""The scheduler loop: a heap of next fire instants; sleep until the earliest, enqueue it.

There is no polling tick: the loop sleeps exactly until the next instant (in short slices so
a shutdown request is seen), so a run is enqueued within milliseconds after its instant and
never before it. The newest enqueued fire of each job is kept in Redis, so a restart neither
fires twice nor forgets what it missed.
"""

from __future__ import annotations

import gc
import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduler import cron, policy
from scheduler.alerts import Alerter, is_late
from scheduler.errors import StoreCorrupt, StoreUnavailable
from scheduler.metrics import Metrics
from scheduler.model import PENDING, JobSpec, RunStatus, Trigger, iso, run_id_for
from scheduler.outage import Outage
from scheduler.policy import next_fire, run_policy
from scheduler.store import Enqueued, Fire, FireSettings, Retention, Store, fire_settings

log = logging.getLogger("sched.scheduler")


@dataclass(frozen=True)
class BeatSettings:
    """Timings of the scheduler loop."""

    # A fire enqueued later than this after its instant is handled as downtime (catch-up).
    late_after_s: float = 5.0
    # Reaping lost runs and promoting due retries: often, so `lost` shows up within seconds.
    reap_every_s: float = 2.0
    # Retention and checking that Redis still has our data.
    maintenance_every_s: float = 30.0
    max_sleep_s: float = 0.5
    lease_s: float = 15.0
    retention: Retention = Retention()


# Fires due together are enqueued in store calls of at most this many.
BATCH = 1000
# Up to this many fires enqueued together are logged a line each (INFO); more get one summary
# line, and their own lines at DEBUG: a burst of thousands stays readable and cheap to log.
LOG_EACH = 20
# Jobs trimmed per maintenance pass besides those that fired: a slice of all jobs in turn, so
# 100,000 schedules never stall the loop (each job comes round within a few hours at most).
TRIM_SLICE = 1000
# Housekeeping starts only when the next fire is at least this far away (see Beat.run).
HOUSEKEEPING_ROOM_S = 0.25


def now_utc() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


class Beat:
    """Computes fire times for every job and enqueues each fire exactly once."""

    def __init__(
        self,
        store: Store,
        specs: Mapping[str, JobSpec],
        settings: BeatSettings | None = None,
        clock: Callable[[], datetime] = now_utc,
        *,
        alerter: Alerter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.all_specs = dict(specs)
        self.alerter = alerter
        self.metrics = metrics
        self.specs = {name: s for name, s in specs.items() if s.cron or s.every_s}
        self.settings = settings or BeatSettings()
        self.clock = clock
        self.heap: list[tuple[datetime, str]] = []
        self.stopping = False
        self.outage = Outage(log, "scheduler")
        self.fired = 0
        self._seen_epoch = False
        # Jobs with new runs since the last retention pass; a full pass now and then covers
        # manual runs and retries, so idle schedules cost nothing between them.
        self._to_trim: set[str] = set()
        # Jobs with an on_late hook: only their pending runs are checked for lateness.
        self._late_watched = {
            name for name in self.all_specs if alerter and alerter.hook_for(name, "late")
        }
        self._trim_cursor = 0
        # Encoded settings of each way a job is defined (see _fire_of).
        self._settings: dict[tuple[object, ...], FireSettings] = {}

    def stop(self, *_: object) -> None:
        """Ask the loop to return after the current step (usable as a signal handler)."""
        self.stopping = True

    def start(self) -> None:
        """Catch up on what passed while no scheduler ran, then fill the heap."""
        last = self.store.last_fires()
        now = self.clock()
        self.heap = []
        # Jobs on one schedule in one zone share their first fire after `now`: with 100,000
        # generated schedules a third are such repeats, and they share one datetime too.
        first: dict[tuple[str | None, float | None, str], datetime] = {}
        for name, spec in self.specs.items():
            after = last.get(name)
            if after is not None and after < now:
                self._catch_up(spec, after, now)
            if after is not None and after > now:
                self.heap.append((next_fire(spec, after), name))
                continue
            key = (spec.cron, spec.every_s, spec.tz)
            fire = first.get(key)
            if fire is None:
                fire = first[key] = next_fire(spec, now)
            self.heap.append((fire, name))
        heapq.heapify(self.heap)
        log.info("scheduler: %d schedules loaded", len(self.heap))

    def run(self) -> None:
        """Loop until stop() is called."""
        if not self._start_when_ready():
            return
        # The loaded schedules live as long as the process: keep them out of the collector's
        # full passes, which otherwise walk every spec (tens of ms with 100,000 of them).
        gc.collect()
        gc.freeze()
        next_reap = next_maintenance = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            due = min(next_reap, next_maintenance)
            # Housekeeping (tens of ms with many jobs) waits for a gap between fires, but is
            # never put off by more than one reaping interval.
            if now >= due and (self._room() or now - due > self.settings.reap_every_s):
                if now >= next_reap:
                    self._reap()
                    next_reap = now + self.settings.reap_every_s
                if now >= next_maintenance:
                    self._maintain()
                    next_maintenance = now + self.settings.maintenance_every_s
            self.step()

    def _start_when_ready(self) -> bool:
        """start(), again and again while Redis cannot serve it; False if stopped meanwhile.

        Starting may write (catch-up records missed fires), and each of its steps may be
        repeated: run ids and the last-fire guard make a fire count once.
        """
        while not self.stopping:
            try:
                self.start()
            except StoreUnavailable as exc:
                self._pause(self.outage.failed(exc, "schedules start when it answers"))
                continue
            self.outage.ended()
            return True
        return False

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def _room(self) -> bool:
        """Whether the next fire is far enough away for housekeeping to run first."""
        if not self.heap:
            return True
        room_s = min(HOUSEKEEPING_ROOM_S, self.settings.reap_every_s / 4)
        return (self.heap[0][0] - self.clock()).total_seconds() > room_s

    def step(self) -> None:
        """Enqueue every fire that is due, otherwise sleep towards the earliest."""
        if not self.heap:
            time.sleep(self.settings.max_sleep_s)
            return
        wait = (self.heap[0][0] - self.clock()).total_seconds()
        if wait > 0:
            time.sleep(min(wait, self.settings.max_sleep_s))
            return
        now = self.clock()
        due: list[tuple[datetime, str]] = []
        while self.heap and self.heap[0][0] <= now and len(due) < BATCH:
            due.append(heapq.heappop(self.heap))
        try:
            following = self._fire_due(due, now)
        except StoreUnavailable as exc:
            for item in due:
                heapq.heappush(self.heap, item)
            self._pause(self.outage.failed(exc, "due fires are kept and enqueued when it answers"))
            return
        except StoreCorrupt as exc:  # e.g. a key of the wrong type: these fires cannot be kept
            log.error("scheduler: %d due fires not enqueued: %s", len(due), exc)
            following = [(next_fire(self.specs[name], now), name) for _, name in due]
        self.outage.ended()
        for item in following:
            heapq.heappush(self.heap, item)

    def _fire_due(
        self, due: list[tuple[datetime, str]], now: datetime
    ) -> list[tuple[datetime, str]]:
        """Enqueue due fires in one store call; return each job's next fire."""
        following = []
        batch: list[tuple[JobSpec, datetime]] = []
        # Jobs due together often share their schedule: compute each next fire once.
        nexts: dict[tuple[str | None, float | None, str, datetime], datetime] = {}
        for fire_at, name in due:
            spec = self.specs[name]
            if (now - fire_at).total_seconds() > self.settings.late_after_s:
                # Asleep, stopped or the clock jumped: treat the gap like downtime.
                self._catch_up(spec, fire_at - timedelta(microseconds=1), now)
                following.append((next_fire(spec, now), name))
                continue
            batch.append((spec, fire_at))
            key = (spec.cron, spec.every_s, spec.tz, fire_at)
            after = nexts.get(key)
            if after is None:
                after = nexts[key] = next_fire(spec, fire_at)
            following.append((after, name))
        if batch:
            fires = [self._fire_of(spec, fire_at, Trigger.SCHEDULE) for spec, fire_at in batch]
            self._fired(batch, self.store.enqueue_many(fires))
        return following

    def _fire_of(self, spec: JobSpec, fire_at: datetime, trigger: Trigger) -> Fire:
        # Jobs defined alike share their settings. Values go in the key by repr, as they are
        # stored: 60 and 60.0 are equal but not stored alike.
        key = (
            spec.queue,
            spec.overlap,
            trigger,
            repr(spec.timeout_s),
            spec.retries,
            repr(spec.retry_backoff_s),
            spec.retry_on,
            repr(spec.misfire_grace_s),
        )
        settings = self._settings.get(key)
        if settings is None:
            settings = self._settings[key] = fire_settings(
                spec.queue,
                overlap=spec.overlap,
                trigger=trigger,
                timeout_s=spec.timeout_s,
                policy=run_policy(spec),
            )
        return Fire(run_id_for(spec.name, fire_at), spec.name, fire_at, settings)

    def _fire(self, spec: JobSpec, fire_at: datetime, trigger: Trigger) -> None:
        fires = [self._fire_of(spec, fire_at, trigger)]
        self._fired([(spec, fire_at)], self.store.enqueue_many(fires))

    def _fired(self, fires: list[tuple[JobSpec, datetime]], results: list[Enqueued]) -> None:
        """Count and log what an enqueue created: a line per fire for a few, else a summary."""
        now = self.clock()
        each = logging.INFO if len(fires) <= LOG_EACH else logging.DEBUG
        log_each = log.isEnabledFor(each)
        statuses: Counter[RunStatus] = Counter()
        delays: list[float] = []
        for (spec, fire_at), result in zip(fires, results, strict=True):
            if not result.created or result.status is None:
                continue
            self.fired += 1
            self._to_trim.add(spec.name)
            statuses[result.status] += 1
            delay_ms = (now - fire_at).total_seconds() * 1000
            delays.append(delay_ms)
            if self.metrics is not None:
                self.metrics.observe_fire(spec.name, delay_ms / 1000, result.status)
            if log_each:
                log.log(
                    each,
                    "fire %s for %s: run %s %s (+%.1f ms)",
                    spec.name,
                    iso(fire_at),
                    result.run_id,
                    result.status,
                    delay_ms,
                )
        if each == logging.DEBUG:
            log.info("%s", _summary(fires, statuses, delays))

    def _catch_up(self, spec: JobSpec, after: datetime, now: datetime) -> None:
        """Apply the job's catch-up policy to the fires in (after, now]."""
        fires = cron.fires_between(
            spec.cron, spec.every_s, spec.tz, after, now, policy.CATCH_UP_SCAN
        )
        if not fires:
            return
        keep, dropped = policy.catch_up_split(spec.catchup, spec.catchup_limit, fires)
        if self.metrics is not None:
            for _ in dropped:
                self.metrics.observe_fire(spec.name, 0.0, RunStatus.MISSED)
        self.store.record_missed(
            spec.name,
            [(run_id_for(spec.name, fire_at), fire_at) for fire_at in dropped],
            queue=spec.queue,
            timeout_s=spec.timeout_s,
            reason=policy.missed_reason(spec.catchup),
        )
        for fire_at in keep:
            self._fire(spec, fire_at, Trigger.CATCHUP)
        log.info(
            "scheduler: %s missed %d fire(s) since %s: %d run, %d recorded missed",
            spec.name,
            len(fires),
            iso(after),
            len(keep),
            len(dropped),
        )

    def _reap(self) -> None:
        try:
            self._check_epoch()
            for run_id in self.store.reap(self.settings.lease_s):
                log.warning("run %s: lost (its worker stopped renewing the lease)", run_id)
            self.store.recover_inboxes()
            self.store.promote_due()
            self._observe()
        except StoreUnavailable as exc:
            self.outage.failed(exc, "reaping waits for it")
            return
        except StoreCorrupt as exc:
            log.error("scheduler: reaping stopped at data that cannot be used: %s", exc)
        self.outage.ended()

    def _observe(self) -> None:
        """Feed runs that ended to metrics and alerts; look for late ones; refresh gauges."""
        if self.alerter is None and self.metrics is None:
            return
        for run in self.store.take_ended():
            if self.metrics is not None:
                self.metrics.observe_run(run)
            # Alert once per run: a failed attempt that will be retried is not final yet.
            if self.alerter is not None and run.retry is None:
                self.alerter.run_finished(run)
        if self.alerter is not None and self._late_watched:
            now = self.clock()
            for run in self.store.history(statuses=PENDING, limit=1000):
                spec = self.all_specs.get(run.job)
                if spec is None or run.job not in self._late_watched:
                    continue
                why = is_late(spec, run, now)
                if why:
                    self.alerter.run_late(run, why)
        if self.metrics is not None:
            queues = {spec.queue for spec in self.all_specs.values()}
            self.metrics.set_gauges(
                queue_depths={q: self.store.queue_depth(q) for q in sorted(queues)},
                running=self.store.running_count(),
                workers_alive=len(self.store.workers()),
            )

    def _check_epoch(self) -> None:
        if self.store.claim_epoch() and self._seen_epoch:
            # Keys we wrote are gone: Redis restarted empty or was flushed. The schedule
            # itself lives in the jobs folder and in this loop's heap, so it goes on.
            log.warning("scheduler: Redis lost its data; schedules continue from the jobs folder")
        self._seen_epoch = True

    def _maintain(self) -> None:
        try:
            names = list(self.all_specs)
            start = self._trim_cursor % max(len(names), 1)
            self._trim_cursor = start + TRIM_SLICE
            jobs = self._to_trim | set(names[start : start + TRIM_SLICE])
            self._to_trim = set()
            self.store.trim(jobs, self.settings.retention)
        except StoreUnavailable as exc:
            self.outage.failed(exc, "retention waits for it")
        except StoreCorrupt as exc:
            log.error("scheduler: retention stopped at data that cannot be used: %s", exc)


def _summary(
    fires: list[tuple[JobSpec, datetime]],
    statuses: Counter[RunStatus],
    delays: list[float],
) -> str:
    """One line for a batch of fires: how many runs, due when, their statuses and delays."""
    first, last = min(f for _, f in fires), max(f for _, f in fires)
    due = iso(first) if first == last else f"{iso(first)} to {iso(last)}"
    text = f"enqueued {len(delays)} runs due {due}"
    if delays:
        counts = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
        text += f": {counts} (+{min(delays):.1f} to +{max(delays):.1f} ms)"
    if len(delays) < len(fires):
        text += f"; {len(fires) - len(delays)} fires were already enqueued"
    return text
