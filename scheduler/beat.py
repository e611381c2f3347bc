"""The scheduler loop: a heap of next fire instants; sleep until the earliest, enqueue it.

There is no polling tick: the loop sleeps exactly until the next instant (in short slices so
a shutdown request is seen), so a run is enqueued within milliseconds after its instant and
never before it. The newest enqueued fire of each job is kept in Redis, so a restart neither
fires twice nor forgets what it missed.

With `definitions` (scheduler/reload.py), the loop polls the jobs folder between steps and swaps
in what changed (Beat.replace): the heap is only ever touched by the loop's own thread.
"""

from __future__ import annotations

import gc
import heapq
import logging
import os
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scheduler import cron, policy
from scheduler.alerts import Alerter, is_late
from scheduler.cli_output import log_event
from scheduler.errors import StoreCorrupt, StoreError, StoreUnavailable
from scheduler.metrics import Metrics
from scheduler.model import (
    PENDING,
    JobSpec,
    Run,
    RunStatus,
    Trigger,
    format_seconds,
    from_ms,
    iso,
    run_id_for,
)
from scheduler.outage import Outage
from scheduler.policy import next_fire, run_policy
from scheduler.store import Enqueued, Fire, FireSettings, Retention, Store, fire_settings

if TYPE_CHECKING:
    from scheduler.reload import Definitions

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
    # The system clock moving this much more (or less) than the monotonic clock between two
    # turns of the loop is a jump (NTP slews far slower; a pause moves both clocks alike).
    clock_jump_s: float = 2.0
    # At start, a system clock this far from Redis's: the loop schedules by Redis's clock.
    clock_skew_s: float = 60.0
    # After Redis was found empty, fires whose overlap policy looks at the job's active runs
    # wait this long, so that a worker still running one writes its record back first. None:
    # two worker heartbeats (one to write back, one for a worker that reconnects after a
    # restart; a heartbeat is min(1 s, lease / 5), see runner.Timings) plus half a second.
    hold_after_empty_s: float | None = None

    @property
    def empty_hold_s(self) -> float:
        """How long fires that look at active runs are held after Redis was found empty."""
        if self.hold_after_empty_s is not None:
            return self.hold_after_empty_s
        return 2 * min(1.0, self.lease_s / 5) + 0.5


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


# Late runs already logged, by (run id, attempt); bounded like the Alerter's memory.
_LATE_REMEMBERED = 10_000
_MICROSECOND = timedelta(microseconds=1)


def now_utc() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClockJump:
    """A jump of the system clock the loop saw and has not yet told apart (see check_clock)."""

    skew_s: float  # how far the system clock moved beyond the monotonic clock
    at: datetime  # the loop's time when it happened
    offset: timedelta  # the correction in force before it


def same_schedule(a: JobSpec, b: JobSpec) -> bool:
    """Whether two definitions of a job fire at the same instants."""
    return (a.cron, a.every_s, a.tz) == (b.cron, b.every_s, b.tz)


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
        definitions: Definitions | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        reference: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.alerter = alerter
        self.metrics = metrics
        self.definitions = definitions
        self._use(specs)
        self.settings = settings or BeatSettings()
        self.clock = clock
        self.monotonic = monotonic
        # The second clock that tells a jump of `clock` from a correction of it: Redis's (the
        # one run records are stamped with) for the system clock; none for an injected clock
        # unless the caller gives one.
        if reference is None and clock is now_utc:
            reference = self._redis_time
        self.reference = reference
        # now() = clock() + offset: non-zero while the system clock is believed wrong.
        self.offset = timedelta(0)
        self._seen: tuple[datetime, float] | None = None
        self._gap_s: float | None = None  # reference - now(), when last measured
        self._jump: ClockJump | None = None
        # The span an accepted forward jump skipped: fires in it are caught up, and say why.
        self._skipped: tuple[datetime, datetime, str] | None = None
        self.heap: list[tuple[datetime, str]] = []
        self.stopping = False
        self.outage = Outage(log, "scheduler")
        self.fired = 0
        self._seen_epoch = False
        # Fires the store held (Redis was found empty: see Store.enqueue_many), in order, sent
        # again once the hold is over; and when that is (monotonic).
        self._held: list[tuple[JobSpec, Fire]] = []
        # Due fires Redis did not take yet: the outage lasts until they are in, even while
        # other calls pass (a replica that does not acknowledge fails writes, not reads).
        self._fires_wait = False
        self._hold_until = 0.0
        # Jobs with new runs since the last retention pass; a full pass now and then covers
        # manual runs and retries, so idle schedules cost nothing between them.
        self._to_trim: set[str] = set()
        self._trim_cursor = 0
        # Encoded settings of each way a job is defined (see _fire_of).
        self._settings: dict[tuple[object, ...], FireSettings] = {}
        # The newest fire instant this loop enqueued (or found enqueued) for each job.
        self._last_fire: dict[str, datetime] = {}
        self._late_logged: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Who this process is in the store's record of loaded definitions.
        self.process = f"scheduler:{socket.gethostname()}:{os.getpid()}"
        self._published: dict[str, str] | None = None
        self.pinger = alerter.pinger if alerter is not None else None
        # When Redis last answered (monotonic): the heartbeat goes out only while it does.
        self._redis_ok_at: float | None = None
        self._next_heartbeat = 0.0

    def _use(self, specs: Mapping[str, JobSpec]) -> None:
        """Take `specs` as the jobs this loop knows (the heap is the caller's business)."""
        self.all_specs = dict(specs)
        self.specs = {name: s for name, s in specs.items() if s.cron or s.every_s}
        if self.alerter is not None:
            self.alerter.specs = self.all_specs
        # Jobs with a `ping` URL: their runs' start and end are pinged.
        self._pinged = {name: s.ping_url for name, s in self.all_specs.items() if s.ping_url}
        alerter = self.alerter
        # Jobs with an on_late hook: only their pending runs are checked for lateness.
        self._late_watched = {
            name for name in self.all_specs if alerter and alerter.hook_for(name, "late")
        }

    def replace(self, specs: Mapping[str, JobSpec]) -> None:
        """Swap in new definitions between two steps of the loop (call it from the loop).

        An unchanged schedule keeps its heap entry (its next fire is neither made twice nor
        lost); a changed one (cron, every, tz) and an added one get their first fire at or
        after now, but never at or before the last fire made for that job; a removed one, or
        one that became manual, leaves the heap and is no longer checked for lateness. A swap
        that lands on a fire instant makes that fire once: before the swap, or after it.
        """
        now = self.now()
        old = self.specs
        self._use(specs)
        heap = [
            (fire_at, name)
            for fire_at, name in self.heap
            if name in self.specs and same_schedule(old[name], self.specs[name])
        ]
        kept = {name for _, name in heap}
        for name, spec in self.specs.items():
            if name in kept:
                continue
            after = now - _MICROSECOND  # a fire at exactly now is still to be made
            last = self._last_fire.get(name)
            if last is not None and last > after:
                after = last
            heap.append((next_fire(spec, after), name))
        heapq.heapify(heap)
        self.heap = heap

    def stop(self, *_: object) -> None:
        """Ask the loop to return after the current step (usable as a signal handler)."""
        self.stopping = True

    def start(self) -> None:
        """Catch up on what passed while no scheduler ran, then fill the heap."""
        self._sync_with_reference()
        # A missing mark now is a new (or emptied) Redis: nothing to wait for that a loop saw.
        self.store.claim_epoch()
        self._seen_epoch = True
        last = self.store.last_fires()
        now = self.now()
        self._last_fire = {name: at for name, at in last.items() if name in self.specs}
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
        self._publish_loaded()

    def now(self) -> datetime:
        """The instant the loop schedules by: the system clock, corrected after a bad jump."""
        return self.clock() + self.offset

    # -- the clock ----------------------------------------------------------------------
    #
    # Fire instants are instants of the system clock, and the loop reads it before every
    # step. A jump of that clock is seen against the monotonic clock (between two turns of
    # the loop) and told apart with a second clock, Redis's TIME: when Redis's clock moved
    # with it, the jump was a correction (or the host slept) and the fires it skipped are
    # caught up, each job by its catchup policy, with a reason naming the jump; when Redis's
    # clock did not, the system clock is wrong and the loop goes on by the time it had,
    # carried forward by the monotonic clock, so no fire starts early. Until Redis answers,
    # the loop keeps that corrected time. A backward jump makes no fire twice either way.

    def _redis_time(self) -> datetime:
        return from_ms(self.store.server_time_ms())

    def _sync_with_reference(self) -> None:
        """At start: measure the reference clock against ours (the jump no loop saw)."""
        self._seen = (self.clock(), self.monotonic())
        if self.reference is None:
            return
        reference = self.reference()
        # Read after the reference: the gap errs by the round trip towards later fires.
        gap_s = (reference - self.clock()).total_seconds()
        if abs(gap_s) > self.settings.clock_skew_s:
            self.offset = timedelta(seconds=gap_s)
            log.warning(
                "scheduler: the system clock is %s %s Redis's clock: fires follow Redis's "
                "clock, which run records are stamped with",
                format_seconds(round(abs(gap_s), 1)),
                "behind" if gap_s > 0 else "ahead of",
            )
        else:
            self.offset = timedelta(0)
        self._gap_s = gap_s - self.offset.total_seconds()

    def check_clock(self) -> None:
        """Look for a jump of the system clock since the last call (each turn of the loop)."""
        wall, mono = self.clock(), self.monotonic()
        seen, self._seen = self._seen, (wall, mono)
        if seen is None:
            return
        elapsed_s = mono - seen[1]
        skew_s = (wall - seen[0]).total_seconds() - elapsed_s
        if abs(skew_s) <= self.settings.clock_jump_s:
            return
        at = seen[0] + self.offset + timedelta(seconds=elapsed_s)
        pending = self._jump
        if pending is not None:  # jumped again before the first was told apart
            skew_s += pending.skew_s
            at = pending.at
        before = pending.offset if pending is not None else self.offset
        # Until told apart: the time the loop had, carried on by the monotonic clock.
        self.offset = before - timedelta(seconds=skew_s)
        self._jump = ClockJump(skew_s, at, before)
        self._tell_jump_apart()
        if self._jump is not None:
            log.warning(
                "scheduler: the system clock jumped %s at %s; until Redis's clock tells "
                "whether it was right, fires follow the time before the jump",
                _jump_text(skew_s),
                iso(at),
            )

    def _tell_jump_apart(self) -> None:
        """Decide a pending jump with the reference clock; leave it pending if it cannot."""
        jump = self._jump
        if jump is None:
            return
        if self.reference is None:
            accepted = True
        else:
            try:
                reference = self.reference()
            except StoreError:
                return
            wall = self.clock()
            gap_s = self._gap_s or 0.0
            kept = abs((reference - (wall + self.offset)).total_seconds() - gap_s)
            moved = abs((reference - (wall + jump.offset)).total_seconds() - gap_s)
            accepted = moved < kept
        self._jump = None
        text = _jump_text(jump.skew_s)
        if accepted:
            self.offset = jump.offset
            if jump.skew_s > 0:
                skipped_to = jump.at + timedelta(seconds=jump.skew_s)
                self._skipped = (jump.at, skipped_to, f"the clock jumped {text} at {iso(jump.at)}")
                what = "fires it skipped are caught up by each job's catchup policy"
            else:
                what = "fires already made are not made again; the next ones wait for their time"
            log.warning(
                "scheduler: the system clock jumped %s at %s%s: %s",
                text,
                iso(jump.at),
                "" if self.reference is None else ", and Redis's clock with it",
                what,
            )
            return
        if abs(self.offset.total_seconds()) <= self.settings.clock_jump_s:
            # Put right: what is left is the noise of measuring two clocks, not a jump.
            self.offset = timedelta(0)
        if self.offset:
            by = format_seconds(round(abs(self.offset.total_seconds()), 1))
            way = "behind" if self.offset < timedelta(0) else "ahead of"
            follow = f"fires follow the corrected time, {by} {way} the system clock"
        else:
            follow = "fires follow the system clock again"
        log.warning(
            "scheduler: the system clock jumped %s at %s, but Redis's clock did not: %s",
            text,
            iso(jump.at),
            follow,
        )

    def _measure_reference(self) -> None:
        """Refresh how far the reference clock is from ours (with each reap)."""
        self.check_clock()
        if self._jump is not None:
            self._tell_jump_apart()
            return
        if self.reference is not None:
            reference = self.reference()
            self._gap_s = (reference - self.now()).total_seconds()

    def _skip_reason(self, fire_at: datetime) -> str | None:
        """Why a late fire at `fire_at` is late, when an accepted jump skipped it."""
        if self._skipped is None:
            return None
        start, end, why = self._skipped
        return why if start < fire_at <= end else None

    def _poll_definitions(self) -> None:
        """Swap in the jobs folder if it changed; publish what this process runs."""
        if self.definitions is None:
            return
        try:
            reloaded = self.definitions.poll()
        except Exception:  # a reload must never stop the schedules already running
            log.exception("scheduler: reloading the jobs folder failed; the loaded jobs go on")
            return
        if reloaded is not None:
            self.replace(reloaded.specs)
        if self.definitions.loaded_info() != self._published:
            self._publish_loaded()

    def _publish_loaded(self) -> None:
        """Tell the store which definitions this scheduler runs (`sched list` compares)."""
        if self.definitions is None:
            return
        info = self.definitions.loaded_info()
        ttl_s = max(self.settings.lease_s, 5 * self.settings.reap_every_s)
        try:
            self.store.set_loaded(self.process, info, ttl_s)
        except StoreUnavailable:
            return  # again with the next reap
        self._published = info

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
            self.check_clock()
            self._poll_definitions()
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
            self._heartbeat()

    def _heartbeat(self) -> None:
        """Ping the heartbeat URL when due, if Redis answered within the last few reaps.

        Sent from the loop itself, so a loop that hangs, a stopped process and a scheduler
        that lost Redis all fall silent, which is what the monitor watches for.
        """
        config = self.pinger.heartbeat_config if self.pinger is not None else None
        if config is None or self.pinger is None:
            return
        now = time.monotonic()
        if now < self._next_heartbeat or self._redis_ok_at is None:
            return
        if now - self._redis_ok_at > max(3 * self.settings.reap_every_s, 1.0):
            return
        self._next_heartbeat = now + config.every_s
        self.pinger.heartbeat()

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
            self._redis_ok_at = time.monotonic()
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
        return (self.heap[0][0] - self.now()).total_seconds() > room_s

    def step(self) -> None:
        """Enqueue every fire that is due, otherwise sleep towards the earliest."""
        if self._held and time.monotonic() >= self._hold_until and not self._send_held():
            return
        if not self.heap:
            time.sleep(self.settings.max_sleep_s)
            return
        wait = (self.heap[0][0] - self.now()).total_seconds()
        if wait > 0:
            if self._held:
                wait = min(wait, max(self._hold_until - time.monotonic(), 0.001))
            time.sleep(min(wait, self.settings.max_sleep_s))
            return
        # This step's instant is the reading the jump check has just judged: a jump that
        # landed since the turn began is told apart before any fire counts as late by it
        # (otherwise its skipped fires would be recorded as if no scheduler had run).
        self.check_clock()
        now = self._seen[0] + self.offset if self._seen is not None else self.now()
        due: list[tuple[datetime, str]] = []
        while self.heap and self.heap[0][0] <= now and len(due) < BATCH:
            due.append(heapq.heappop(self.heap))
        try:
            following = self._fire_due(due, now)
        except StoreUnavailable as exc:
            for item in due:
                heapq.heappush(self.heap, item)
            self._fires_wait = True
            self._pause(self.outage.failed(exc, "due fires are kept and enqueued when it answers"))
            return
        except StoreCorrupt as exc:  # e.g. a key of the wrong type: these fires cannot be kept
            log.error("scheduler: %d due fires not enqueued: %s", len(due), exc)
            following = [(next_fire(self.specs[name], now), name) for _, name in due]
        self._fires_wait = False
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
                self._catch_up(spec, fire_at - _MICROSECOND, now, self._skip_reason(fire_at))
                following.append((next_fire(spec, now), name))
                continue
            batch.append((spec, fire_at))
            key = (spec.cron, spec.every_s, spec.tz, fire_at)
            after = nexts.get(key)
            if after is None:
                after = nexts[key] = next_fire(spec, fire_at)
            following.append((after, name))
        if batch:
            self._enqueue(
                [(spec, self._fire_of(spec, fire_at, Trigger.SCHEDULE)) for spec, fire_at in batch]
            )
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
        self._enqueue([(spec, self._fire_of(spec, fire_at, trigger))])

    def _enqueue(self, items: list[tuple[JobSpec, Fire]]) -> None:
        """Enqueue fires in one store call; those the store holds wait in self._held.

        After this loop saw Redis hold our data, the store holds a fire that looks at its
        job's active runs while Redis may not know yet of a run still running (it was
        found empty); a job with a fire held keeps its later fires behind it, in order.
        """
        waiting = {spec.name for spec, _ in self._held}
        send = [item for item in items if item[0].name not in waiting]
        hold_s = self.settings.empty_hold_s if self._seen_epoch else 0.0
        fires = [fire for _, fire in send]
        results = self.store.enqueue_many(fires, hold_after_empty_s=hold_s) if fires else []
        if len(send) < len(items):
            self._hold([item for item in items if item[0].name in waiting], 0.0)
        held = [(item, r) for item, r in zip(send, results, strict=True) if r.held_s is not None]
        if held:
            self._hold([item for item, _ in held], max(r.held_s or 0.0 for _, r in held))
        made = [(item, r) for item, r in zip(send, results, strict=True) if r.held_s is None]
        self._fired([(spec, fire.scheduled_for) for (spec, fire), _ in made], [r for _, r in made])

    def _hold(self, items: list[tuple[JobSpec, Fire]], held_s: float) -> None:
        """Keep fires the store held, to send them again after `held_s`."""
        now = time.monotonic()
        if now >= self._hold_until and held_s > 0:
            log.warning(
                "scheduler: Redis lost its data; schedules continue from the jobs folder, and "
                "fires of jobs whose overlap policy looks at running runs wait %s for workers "
                "to write back the runs they hold",
                format_seconds(round(held_s, 1)),
            )
        self._hold_until = max(self._hold_until, now + held_s)
        for spec, fire in items:
            last = self._last_fire.get(spec.name)
            if last is None or fire.scheduled_for > last:
                self._last_fire[spec.name] = fire.scheduled_for
        self._held += items

    def _send_held(self) -> bool:
        """Enqueue the fires held so far (in order); False when Redis cannot take them now."""
        held, self._held = self._held, []
        try:
            self._enqueue(held)
        except StoreUnavailable as exc:
            self._held = held + self._held
            self._fires_wait = True
            self._pause(self.outage.failed(exc, "held fires are kept and enqueued when it answers"))
            return False
        except StoreCorrupt as exc:
            log.error("scheduler: %d held fires not enqueued: %s", len(held), exc)
        self._fires_wait = False
        self.outage.ended()
        return True

    def _fired(self, fires: list[tuple[JobSpec, datetime]], results: list[Enqueued]) -> None:
        """Count and log what an enqueue created: a line per fire for a few, else a summary."""
        now = self.now()
        each = logging.INFO if len(fires) <= LOG_EACH else logging.DEBUG
        log_each = log.isEnabledFor(each)
        statuses: Counter[RunStatus] = Counter()
        delays: list[float] = []
        for (spec, fire_at), result in zip(fires, results, strict=True):
            last = self._last_fire.get(spec.name)
            if last is None or fire_at > last:
                self._last_fire[spec.name] = fire_at
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
                log_event(
                    log,
                    each,
                    "enqueued",
                    "fire %s for %s: run %s %s (+%.1f ms)",
                    spec.name,
                    iso(fire_at),
                    result.run_id,
                    result.status,
                    delay_ms,
                    job=spec.name,
                    run_id=result.run_id,
                    status=str(result.status),
                    delay_ms=round(delay_ms, 1),
                )
        if each == logging.DEBUG:
            log.info("%s", _summary(fires, statuses, delays))

    def _catch_up(
        self, spec: JobSpec, after: datetime, now: datetime, cause: str | None = None
    ) -> None:
        """Apply the job's catch-up policy to the fires in (after, now]; `cause`: why they
        were not made in time, when not because no scheduler was running."""
        fires = cron.fires_between(
            spec.cron, spec.every_s, spec.tz, after, now, policy.CATCH_UP_SCAN
        )
        if not fires:
            return
        keep, dropped = policy.catch_up_split(spec.catchup, spec.catchup_limit, fires)
        last = self._last_fire.get(spec.name)
        if last is None or fires[-1] > last:
            self._last_fire[spec.name] = fires[-1]
        if self.metrics is not None:
            for _ in dropped:
                self.metrics.observe_fire(spec.name, 0.0, RunStatus.MISSED)
        self.store.record_missed(
            spec.name,
            [(run_id_for(spec.name, fire_at), fire_at) for fire_at in dropped],
            queue=spec.queue,
            timeout_s=spec.timeout_s,
            reason=policy.missed_reason(spec.catchup, cause),
        )
        for fire_at in keep:
            self._fire(spec, fire_at, Trigger.CATCHUP)
        log_event(
            log,
            logging.INFO,
            "missed",
            "scheduler: %s missed %d fire(s) since %s: %d run, %d recorded missed",
            spec.name,
            len(fires),
            iso(after),
            len(keep),
            len(dropped),
            job=spec.name,
            status=str(RunStatus.MISSED),
            # The newest one recorded missed, when there is one.
            run_id=run_id_for(spec.name, dropped[-1]) if dropped else None,
        )

    def _reap(self) -> None:
        try:
            self._measure_reference()
            self._check_epoch()
            for run_id in self.store.reap(self.settings.lease_s):
                log_event(
                    log,
                    logging.WARNING,
                    "lost",
                    "run %s: lost (its worker stopped renewing the lease)",
                    run_id,
                    job=run_id.partition("@")[0],
                    run_id=run_id,
                    status=str(RunStatus.LOST),
                )
            self.store.recover_inboxes()
            self.store.promote_due()
            self._observe()
            self._publish_loaded()
        except StoreUnavailable as exc:
            self.outage.failed(exc, "reaping waits for it")
            return
        except StoreCorrupt as exc:
            log.error("scheduler: reaping stopped at data that cannot be used: %s", exc)
        if not self._fires_wait:
            self.outage.ended()
        self._redis_ok_at = time.monotonic()

    def _observe(self) -> None:
        """Feed runs that ended to metrics, alerts and pings; ping the starts of runs; look
        for late ones; refresh gauges."""
        if self.alerter is None and self.metrics is None:
            return
        for run in self.store.take_ended():
            if self.metrics is not None:
                self.metrics.observe_run(run)
            # Alert once per run: a failed attempt that will be retried is not final yet.
            if self.alerter is not None and run.retry is None:
                self.alerter.run_finished(run)
                url = self._pinged.get(run.job)
                if url is not None and self.pinger is not None:
                    self.pinger.run_finished(url, run)
        self._ping_starts()
        self._check_late()
        if self.metrics is not None:
            queues = {spec.queue for spec in self.all_specs.values()}
            self.metrics.set_gauges(
                queue_depths={q: self.store.queue_depth(q) for q in sorted(queues)},
                running=self.store.running_count(),
                workers_alive=len(self.store.workers()),
            )

    def _ping_starts(self) -> None:
        """The start ping of each run of a job with `ping` seen running, once per run.

        Seen at each reap: a run shorter than the reap interval may go unseen, and then gets
        its end ping only. Every scheduler sends the start ping of what it sees (same rid);
        the end ping comes from the one that took the run's end from the ended feed.
        """
        if self.pinger is None or not self._pinged:
            return
        for run in self.store.history(statuses=[RunStatus.RUNNING], limit=1000):
            url = self._pinged.get(run.job)
            if url is not None:
                self.pinger.run_started(url, run)

    def _check_late(self) -> None:
        """Alert (and log once) each pending run of a job with `on_late` that is late."""
        if self.alerter is None or not self._late_watched:
            return
        now = self.now()
        for run in self.store.history(statuses=PENDING, limit=1000):
            spec = self.all_specs.get(run.job)
            if spec is None or run.job not in self._late_watched:
                continue
            why = is_late(spec, run, now)
            if why:
                self._log_late(run, why)
                self.alerter.run_late(run, why)

    def _log_late(self, run: Run, why: str) -> None:
        """One line per late run and attempt (lateness is checked again at every reap)."""
        key = (run.id, run.attempt)
        if key in self._late_logged:
            return
        self._late_logged[key] = None
        if len(self._late_logged) > _LATE_REMEMBERED:
            self._late_logged.popitem(last=False)
        delay_ms = (self.now() - run.scheduled_for).total_seconds() * 1000
        log_event(
            log,
            logging.WARNING,
            "late",
            "run %s: %s",
            run.id,
            why,
            job=run.job,
            run_id=run.id,
            status=str(run.status),
            delay_ms=round(delay_ms, 1),
        )

    def _check_epoch(self) -> None:
        hold_s = self.settings.empty_hold_s if self._seen_epoch else 0.0
        if self.store.claim_epoch(hold_s) and self._seen_epoch:
            # Keys we wrote are gone: Redis restarted empty or was flushed. The schedule
            # itself lives in the jobs folder and in this loop's heap, so it goes on; the
            # store holds fires that look at active runs for a while (see _enqueue).
            log.warning(
                "scheduler: Redis lost its data; schedules continue from the jobs folder, and "
                "fires of jobs whose overlap policy looks at running runs wait %s for workers "
                "to write back the runs they hold",
                format_seconds(round(hold_s, 1)),
            )
            self._hold_until = max(self._hold_until, time.monotonic() + hold_s)
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


def _jump_text(skew_s: float) -> str:
    way = "forward" if skew_s > 0 else "back"
    return f"{way} {format_seconds(round(abs(skew_s), 1))}"


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
