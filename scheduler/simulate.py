"""`sched simulate`: every fire the scheduler would make over a range, and what becomes of it.

Nothing here decides on its own. Fire times are cron's (`fire_instants_us`, next_fire's walk),
DST notes `cron.dst_notes`, the catch-up after a down window `policy.catch_up_split` (the
beat's split), the fate of a fire whose job has active runs `policy.overlap_outcome` (the
ENQUEUE script's rule, which a store test runs the script against), a retry
`policy.retry_plan` (the worker's, jitter included). What is modelled around them: a
scheduler that is down over the `--down` windows, N workers that take queued runs oldest
first, and runs that last their `--duration` (0 by default) and end `completed`, or `failed`
for the jobs given with `--fail`.
"""

from __future__ import annotations

import gc
import heapq
import json
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import compress, count, repeat
from operator import lt, sub
from typing import IO

from scheduler import cron
from scheduler.model import JobSpec, RunStatus, Trigger
from scheduler.policy import (
    CATCH_UP_SCAN,
    catch_up_split,
    missed_reason,
    overlap_outcome,
    retry_plan,
    run_policy,
)

_US = 1_000_000


@dataclass(frozen=True)
class Window:
    """A span [start, end) in which no scheduler runs."""

    start: datetime
    end: datetime


@dataclass(slots=True, eq=False)
class SimRun:
    """One fire (or retry) and what the simulated deployment does with it."""

    job: str
    scheduled_us: int
    trigger: Trigger
    attempt: int
    status: RunStatus
    enqueued_us: int | None = None
    started_us: int | None = None
    finished_us: int | None = None
    reason: str = ""
    dst: str = ""
    worker: int = -1
    given_id: str = ""  # a retry's id; a fire's is derived from its job and instant

    @property
    def id(self) -> str:
        """The run's id, as model.run_id_for gives it (tests/unit/test_simulate.py checks),
        made when asked for and from each day's date formatted once: strftime per fire would
        take most of a year's simulation."""
        if not self.given_id:
            whole, fraction = divmod(self.scheduled_us, _US)
            if fraction:
                day, rest = divmod(whole, 86400)
                stamp = f"{_day(day).replace('-', '')}T{_hms(rest).replace(':', '')}"
                ms = round(self.scheduled_us / 1000) % 1000
                stamp += f".{ms:03d}Z" if ms else "Z"
            else:  # the ISO form without its separators
                stamp = _iso_s(whole).replace("-", "").replace(":", "")
            self.given_id = f"{self.job}@{stamp}"
        return self.given_id

    def as_json(self) -> dict[str, object]:
        """The run's fields under docs/runs.md's names, times as ISO-8601 UTC."""
        at = self.scheduled_us
        scheduled = _iso(at)

        def when(us: int | None) -> str | None:
            return scheduled if us == at else _iso(us)  # most runs start when they fire

        if not self.given_id and not at % _US and scheduled:  # the id is the ISO form bare
            self.given_id = f"{self.job}@{scheduled.replace('-', '').replace(':', '')}"
        return {
            "id": self.id,
            "job": self.job,
            "scheduled_for": scheduled,
            "trigger": self.trigger.value,
            "attempt": self.attempt,
            "status": self.status.value,
            "reason": self.reason or None,
            "enqueued_at": when(self.enqueued_us),
            "started_at": when(self.started_us),
            "finished_at": when(self.finished_us),
            "dst": self.dst or None,
        }


def _iso(us: int | None) -> str | None:
    """model.iso's format (milliseconds only when there are some), with each day's date
    formatted once."""
    if us is None:
        return None
    seconds, fraction = divmod(us, _US)
    if not fraction:
        return _iso_s(seconds)
    day, rest = divmod(seconds, 86400)
    return f"{_day(day)}T{_hms(rest)}.{fraction // 1000:03d}Z"


def _iso_s(seconds: int) -> str:
    day, rest = divmod(seconds, 86400)
    return f"{_day(day)}T{_hms(rest)}Z"


def _hms(rest: int) -> str:
    return f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"


@lru_cache(maxsize=1024)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


@dataclass
class Simulation:
    """The inputs of one simulation."""

    specs: Sequence[JobSpec]
    start: datetime
    end: datetime
    down: Sequence[Window] = ()
    duration_s: Mapping[str, float] = field(default_factory=dict)
    failing: frozenset[str] = frozenset()
    workers: int = 2


def simulate(sim: Simulation) -> list[SimRun]:
    """Every fire of `sim.specs` in (start, end] (and the retries and catch-up they cause),
    with its simulated fate, ordered by scheduled time."""
    # Half a million runs, none in a reference cycle: the cyclic collector would walk them
    # again and again as they are made, for more than half of the time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _simulate(sim)
    finally:
        if enabled:
            gc.enable()


def _simulate(sim: Simulation) -> list[SimRun]:
    requests: list[SimRun] = []
    records: list[SimRun] = []
    for spec in sim.specs:
        _fires_of(spec, sim, requests, records)
    if not sim.duration_s and not sim.failing:
        _instant_runs(sim.specs, requests)
    else:
        _Deployment(sim).run(requests)
    if not records and len(sim.specs) == 1 and not sim.failing:
        return requests  # already in order
    records.extend(requests)
    records.sort(key=lambda r: (r.scheduled_us, r.job, r.attempt))
    return records


def _downtime(
    spec: JobSpec, sim: Simulation, fires: list[int]
) -> Iterator[tuple[list[int], int, list[tuple[int, str]], list[int]]]:
    """Per down window, in order: the fires planned before it, the instant it ends, the fires
    it drops (with the reason) and those caught up when it ends; last, the fires after every
    window (with nothing dropped or caught up)."""
    i = 0
    for lo, hi in sorted((_us(w.start), _us(w.end)) for w in sim.down):
        j = bisect_left(fires, lo, i)
        planned = fires[i:j]
        # the scheduler starts again at `hi` and catches up on the fires in (last fire, hi]
        i = bisect_right(fires, hi, j)
        missed = fires[j:i]
        unseen, seen = missed[:-CATCH_UP_SCAN], missed[-CATCH_UP_SCAN:]
        keep, dropped = catch_up_split(spec.catchup, spec.catchup_limit, seen)
        reason = missed_reason(spec.catchup)
        yield planned, hi, [(f, _UNSEEN) for f in unseen] + [(f, reason) for f in dropped], keep
    yield fires[i:], _us(sim.end), [], []


def _fires_of(spec: JobSpec, sim: Simulation, requests: list[SimRun], out: list[SimRun]) -> None:
    """The job's fires as enqueue requests; those in a down window through catch-up."""
    fires = cron.fire_instants_us(spec.cron, spec.every_s, spec.tz, sim.start, sim.end)
    mine: list[SimRun] = []
    for planned, hi, dropped, keep in _downtime(spec, sim, fires):
        mine += _scheduled(spec.name, planned)
        for fire, reason in dropped:
            run = SimRun(spec.name, fire, Trigger.SCHEDULE, 1, RunStatus.MISSED)
            run.finished_us, run.reason = hi, reason
            out.append(run)
        mine += [SimRun(spec.name, f, Trigger.CATCHUP, 1, RunStatus.QUEUED, hi) for f in keep]
    notes = _dst_by_fire(spec, sim.start, sim.end, fires)
    if notes:
        for run in mine + out:
            if run.job == spec.name and run.scheduled_us in notes:
                run.dst = notes[run.scheduled_us]
    requests += mine


_UNSEEN = f"not recorded: only the newest {CATCH_UP_SCAN} missed fires are"


def _scheduled(job: str, fires: list[int]) -> list[SimRun]:
    return [SimRun(job, f, Trigger.SCHEDULE, 1, RunStatus.QUEUED, f) for f in fires]


def _dst_by_fire(spec: JobSpec, start: datetime, end: datetime, fires: list[int]) -> dict[int, str]:
    """Each DST note of the range, keyed by the fire it concerns (for a gap with no fire of
    its own, the first fire after it)."""
    if spec.cron is None:
        return {}
    found: dict[int, str] = {}
    for note in cron.dst_notes(spec.cron, spec.tz, start, end):
        text = note.text()
        if note.fires:
            for fire in note.fires:
                found[_us(fire)] = text
            continue
        after = _us(note.walls[0].replace(tzinfo=cron.zone(spec.tz)))
        k = bisect_left(fires, after)
        if k < len(fires):
            found[fires[k]] = text
    return found


def _late(spec: JobSpec, run: SimRun, start: int) -> bool:
    """The claim's misfire rule: a scheduled or catch-up run that starts too late is missed."""
    grace = spec.misfire_grace_s
    scheduled = run.trigger in (Trigger.SCHEDULE, Trigger.CATCHUP)
    return grace is not None and scheduled and start - run.scheduled_us > grace * _US


def _miss_late(run: SimRun, spec: JobSpec, start: int) -> None:
    run.status, run.finished_us = RunStatus.MISSED, start
    late_s = (start - run.scheduled_us) / _US
    run.reason = (
        f"not started within misfire_grace {spec.misfire_grace_s}s of its fire time "
        f"({late_s:.3f}s late)"
    )


def _instant_runs(specs: Iterable[JobSpec], requests: list[SimRun]) -> None:
    """Runs that take no time: a worker is always free and no run is active at a fire, so
    each job's overlap decision is the one for no active runs."""
    by_name = {spec.name: spec for spec in specs}
    outcomes = {name: overlap_outcome(spec.overlap, ()) for name, spec in by_name.items()}
    completed = RunStatus.COMPLETED
    for run in requests:
        spec, outcome = by_name[run.job], outcomes[run.job]
        start = run.enqueued_us
        assert start is not None
        if outcome.status is not RunStatus.QUEUED:
            run.status, run.reason, run.finished_us = outcome.status, outcome.reason, start
        elif spec.misfire_grace_s is not None and _late(spec, run, start):
            _miss_late(run, spec, start)
        else:
            run.status, run.started_us, run.finished_us = completed, start, start


def _enqueued(run: SimRun) -> int:
    assert run.enqueued_us is not None
    return run.enqueued_us


_FINISH, _ENQUEUE = 0, 1  # at one instant, runs end before new fires are judged


class _Deployment:
    """Workers taking queued runs oldest first, and the events of runs starting and ending."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.specs = {spec.name: spec for spec in sim.specs}
        self.events: list[tuple[int, int, int, SimRun]] = []
        self.seq = 0
        self.waiting: deque[SimRun] = deque()
        self.idle = list(range(sim.workers))
        self.active: dict[str, list[SimRun]] = {name: [] for name in self.specs}
        self.retries: list[SimRun] = []
        self.alone = {name: overlap_outcome(s.overlap, ()) for name, s in self.specs.items()}

    def push(self, at: int, kind: int, run: SimRun) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, run))

    def run(self, requests: list[SimRun]) -> None:
        """Fires in the order they are enqueued; runs ending and retries due as they come."""
        requests.sort(key=_enqueued)  # stable: jobs due together keep their order
        for request in requests:
            at = _enqueued(request)
            while self.events and (self.events[0][0], self.events[0][1]) <= (at, _FINISH):
                self.step()
            self.enqueue(request, at)
            self.start_waiting(at)
        while self.events:
            self.step()
        requests.extend(self.retries)

    def run_items(
        self, job: str, items: list[list[int] | SimRun], plain: list[int]
    ) -> list[SimRun]:
        """`run` over one job's requests in the order they are enqueued, a list of bare
        instants being scheduled fires of `job` each enqueued at its fire time. One that
        meets an idle deployment, and whose run ends before the next request, goes to `plain`
        (its fate is `alone`'s, which the caller made sure is to queue); the others become
        runs, returned with the retries."""
        made: list[SimRun] = []
        for k, item in enumerate(items):
            if isinstance(item, SimRun):
                at = _enqueued(item)
                self.until(at)
                made.append(item)
                self.enqueue(item, at)
                self.start_waiting(at)
                continue
            nxt = items[k + 1] if k + 1 < len(items) else None
            due = nxt[0] if isinstance(nxt, list) else None if nxt is None else _enqueued(nxt)
            self.bare(job, item, due, plain, made)
        while self.events:
            self.step()
        return made + self.retries

    def bare(
        self, job: str, fires: list[int], due: int | None, plain: list[int], made: list[SimRun]
    ) -> None:
        """The scheduled fires of `job` in `fires`, the next request due at `due`."""
        duration = round(self.sim.duration_s.get(job, 0.0) * _US)
        # where a run would still be going at the next fire of the list
        short = (
            list(compress(count(), map(lt, map(sub, fires[1:], fires), repeat(duration))))
            if duration
            else []
        )
        p, n = 0, len(fires)
        while p < n:
            at = fires[p]
            self.until(at)
            if not self.events and not self.waiting and len(self.idle) == self.sim.workers:
                s = bisect_left(short, p)
                q = short[s] if s < len(short) else n - 1
                plain += fires[p:q]  # each ends by the next fire, and meets an idle deployment
                p = q
                if q == n - 1 and s == len(short) and (due is None or due >= fires[q] + duration):
                    plain.append(fires[q])
                    return
                at = fires[p]
            request = SimRun(job, at, Trigger.SCHEDULE, 1, RunStatus.QUEUED, at)
            made.append(request)
            self.enqueue(request, at)
            self.start_waiting(at)
            p += 1

    def until(self, at: int) -> None:
        """Runs ending and retries due before requests at `at` are judged."""
        events = self.events
        while events and (events[0][0], events[0][1]) <= (at, _FINISH):
            self.step()

    def step(self) -> None:
        at, kind, _, run = heapq.heappop(self.events)
        if kind == _ENQUEUE:
            self.enqueue(run, at)
        elif run.status is RunStatus.RUNNING:  # not stopped by a replacing fire
            self.finish(run, at)
        self.start_waiting(at)

    def enqueue(self, run: SimRun, at: int) -> None:
        if run.trigger is Trigger.RETRY:
            # a retry is queued (and active) from its failure on, and waits for its backoff
            # in the delayed set; it enters the queue without the enqueue script
            self.waiting.append(run)
            return
        spec = self.specs[run.job]
        if self.active[run.job]:
            active = [(r.id, r.status) for r in self.active[run.job]]
            outcome = overlap_outcome(spec.overlap, active)
        else:  # the same decision for every fire of the job that meets no active run
            outcome = self.alone[run.job]
        for other in list(self.active[run.job]):
            if other.id in outcome.stop:
                self.end(other, at, RunStatus.KILLED, "replaced")
            elif other.id in outcome.drop:
                if other in self.waiting:
                    self.waiting.remove(other)
                self.end(other, at, RunStatus.SKIPPED, f"replaced by {run.id}")
        if outcome.status is not RunStatus.QUEUED:
            run.status, run.reason, run.finished_us = outcome.status, outcome.reason, at
            return
        run.status = RunStatus.QUEUED
        self.waiting.append(run)
        self.active[run.job].append(run)

    def start_waiting(self, at: int) -> None:
        while self.waiting and self.idle:
            run = self.waiting.popleft()
            spec = self.specs[run.job]
            if spec.misfire_grace_s is not None and _late(spec, run, at):
                _miss_late(run, spec, at)
                self.active[run.job].remove(run)
                continue
            run.worker = self.idle.pop()
            run.status, run.started_us = RunStatus.RUNNING, at
            duration = round(self.sim.duration_s.get(run.job, 0.0) * _US)
            self.push(at + duration, _FINISH, run)

    def end(self, run: SimRun, at: int, status: RunStatus, reason: str = "") -> None:
        if run.status is RunStatus.RUNNING:
            self.idle.append(run.worker)
        run.status, run.finished_us, run.reason = status, at, reason
        self.active[run.job].remove(run)

    def finish(self, run: SimRun, at: int) -> None:
        failed = run.job in self.sim.failing
        self.end(run, at, RunStatus.FAILED if failed else RunStatus.COMPLETED)
        if failed:
            self.retry(run, at)

    def retry(self, run: SimRun, at: int) -> None:
        spec = self.specs[run.job]
        plan = retry_plan(run.id, run.attempt, run_policy(spec), run.status)
        if plan is None:
            return
        attempt = SimRun(run.job, run.scheduled_us, Trigger.RETRY, plan.attempt, RunStatus.QUEUED)
        attempt.given_id, attempt.enqueued_us = plan.run_id, at
        self.retries.append(attempt)
        self.active[run.job].append(attempt)
        self.push(at + plan.delay_ms * 1000, _ENQUEUE, attempt)


# --- the fast path ---------------------------------------------------------------------------
#
# Most fires of a long range meet a deployment with nothing queued, running or due: then the
# fire's fate is the one overlap_outcome gives for no active runs (asked once per job), it
# starts at once and ends its duration later, and when the next request comes no sooner than
# that end the deployment is idle again for it. Such fires are kept as bare instants, not run
# objects; every other fire takes the event loop above. `simulate` is the reference the fast
# path is tested against (tests/unit/test_simulate.py).


@dataclass
class Outcome:
    """A simulation's runs: `plain[job]` the fires that went as planned (scheduled, enqueued
    and started at their fire time, completed `duration_us[job]` later, no DST note), oldest
    first; `runs` every other run, ordered as `simulate` orders them."""

    plain: dict[str, list[int]]
    duration_us: dict[str, int]
    runs: list[SimRun]

    def plain_run(self, job: str, fire: int) -> SimRun:
        end = fire + self.duration_us[job]
        return SimRun(job, fire, Trigger.SCHEDULE, 1, RunStatus.COMPLETED, fire, fire, end)

    def count(self) -> int:
        return len(self.runs) + sum(len(fires) for fires in self.plain.values())


def simulate_fast(sim: Simulation) -> Outcome:
    """What `simulate` gives, with the fires that went as planned left bare."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _simulate_fast(sim)
    finally:
        if enabled:
            gc.enable()


def _simulate_fast(sim: Simulation) -> Outcome:
    if len(sim.specs) != 1:  # the bare path follows one job's requests
        return Outcome({}, {}, simulate(sim))
    (spec,) = sim.specs
    alone = overlap_outcome(spec.overlap, ())
    grace = spec.misfire_grace_s
    bare = (
        spec.name not in sim.failing
        and alone.status is RunStatus.QUEUED
        and not alone.stop
        and not alone.drop
        and (grace is None or grace >= 0)  # a run started at its fire is not late
    )
    records: list[SimRun] = []
    items = _fire_items(spec, sim, records, bare)
    plain: list[int] = []
    made = _Deployment(sim).run_items(spec.name, items, plain)
    records += made
    records.sort(key=lambda r: (r.scheduled_us, r.job, r.attempt))
    duration = round(sim.duration_s.get(spec.name, 0.0) * _US)
    return Outcome({spec.name: plain}, {spec.name: duration}, records)


def _fire_items(
    spec: JobSpec, sim: Simulation, out: list[SimRun], bare: bool
) -> list[list[int] | SimRun]:
    """_fires_of's requests in the order they are enqueued, scheduled fires without a DST
    note as lists of bare instants when `bare`."""
    fires = cron.fire_instants_us(spec.cron, spec.every_s, spec.tz, sim.start, sim.end)
    notes = _dst_by_fire(spec, sim.start, sim.end, fires)

    def made(fire: int, trigger: Trigger, status: RunStatus, enqueued: int | None) -> SimRun:
        run = SimRun(spec.name, fire, trigger, 1, status, enqueued)
        run.dst = notes.get(fire, "")
        return run

    def scheduled(part: list[int]) -> list[list[int] | SimRun]:
        if not bare:
            return [made(f, Trigger.SCHEDULE, RunStatus.QUEUED, f) for f in part]
        out: list[list[int] | SimRun] = []
        k = 0
        noted = {bisect_left(part, f) for f in notes}
        for i in sorted(i for i in noted if i < len(part) and part[i] in notes):
            if i > k:
                out.append(part[k:i])
            out.append(made(part[i], Trigger.SCHEDULE, RunStatus.QUEUED, part[i]))
            k = i + 1
        if k < len(part):
            out.append(part[k:])
        return out

    mine: list[list[int] | SimRun] = []
    for planned, hi, dropped, keep in _downtime(spec, sim, fires):
        mine += scheduled(planned)
        for fire, reason in dropped:
            run = made(fire, Trigger.SCHEDULE, RunStatus.MISSED, None)
            run.finished_us, run.reason = hi, reason
            out.append(run)
        mine += [made(f, Trigger.CATCHUP, RunStatus.QUEUED, hi) for f in keep]
    return mine


_DAY_US = 86400 * _US
_TEMPLATES = 8  # distinct days kept (each up to a day of lines)


def _bare_json(outcome: Outcome, job: str, fires: list[int]) -> Iterator[str]:
    """json.dumps(run.as_json()) of each plain run, joined by ",\\n", a day at a time. A day
    whose fires are at the same times of day as one before gets that day's text with its
    dates put in (the dates are the only part of a line that a day changes)."""
    duration = outcome.duration_us[job]
    quoted = json.dumps(job)
    templates: dict[tuple[int, ...], str] = {}
    k = 0
    while k < len(fires):
        day = fires[k] // _DAY_US
        start = day * _DAY_US
        cut = bisect_left(fires, start + _DAY_US, k)
        part, k = fires[k:cut], cut
        dates = (_day(day), _day(day).replace("-", ""), _day(day + 1))
        key = tuple([fire - start for fire in part])
        template = templates.get(key)
        if template is not None:
            yield template.replace("\0", dates[0]).replace("\1", dates[1]).replace("\2", dates[2])
            continue
        text = ",\n".join(json.dumps(outcome.plain_run(job, f).as_json()) for f in part)
        yield text
        # a run ends the day it starts or the next; json.dumps escapes every control character
        if duration < _DAY_US and len(templates) < _TEMPLATES:
            if not any(date in quoted for date in dates):
                template = text.replace(dates[2], "\2").replace(dates[0], "\0")
                templates[key] = template.replace(dates[1], "\1")


def json_chunks(outcome: Outcome) -> Iterator[str]:
    """The runs as `simulate` orders them, each as json.dumps(run.as_json()), joined by ",\n"
    in chunks."""
    if not outcome.plain:
        for run in outcome.runs:
            yield json.dumps(run.as_json())
        return
    ((job, fires),) = outcome.plain.items()
    k = 0
    for run in outcome.runs:  # a plain fire comes before a retry of the same fire
        cut = bisect_right(fires, run.scheduled_us, k)
        yield from _bare_json(outcome, job, fires[k:cut])
        k = cut
        yield json.dumps(run.as_json())
    yield from _bare_json(outcome, job, fires[k:])


def write_json(outcome: Outcome, out: IO[str]) -> None:
    """A JSON array, one run object per line, written as it goes."""
    out.write("[")
    sep = "\n"
    for chunk in json_chunks(outcome):
        out.write(sep + chunk)
        sep = ",\n"
    out.write("\n]\n")


# --- text ------------------------------------------------------------------------------------


def _plain(run: SimRun) -> bool:
    """A scheduled run that started on time and completed, with nothing to note."""
    return (
        run.status is RunStatus.COMPLETED
        and run.trigger is Trigger.SCHEDULE
        and run.started_us == run.scheduled_us
        and not run.dst
    )


def _local(us: int | None, tz: str) -> str:
    if us is None:
        return "-"
    moment = datetime.fromtimestamp(us / _US, cron.zone(tz))
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")
    return f"{text} {moment.tzname()}"


def _line(run: SimRun, tz: str) -> str:
    parts = [_local(run.scheduled_us, tz), str(run.status)]
    if run.trigger is not Trigger.SCHEDULE:
        parts.append(f"({run.trigger}, attempt {run.attempt})")
    if run.started_us is not None and run.started_us != run.scheduled_us:
        parts.append(f"started {_local(run.started_us, tz)}")
    if run.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.KILLED):
        parts.append(f"ended {_local(run.finished_us, tz)}")
    if run.reason:
        parts.append(f"- {run.reason}")
    if run.dst:
        parts.append(f"[DST: {run.dst}]")
    return "  ".join(parts)


def describe(runs: Sequence[SimRun], specs: Sequence[JobSpec]) -> list[str]:
    """Per job: its fires in order, runs of plain on-time fires folded into one line; then
    how many fires ended in each status."""
    lines: list[str] = []
    for spec in specs:
        mine = [run for run in runs if run.job == spec.name]
        schedule = spec.cron or f"every {spec.every_s}s"
        lines.append(
            f"{spec.name}  {schedule}  {spec.tz}  overlap={spec.overlap} catchup={spec.catchup}"
        )
        i = 0
        while i < len(mine):
            j = i
            while j < len(mine) and _plain(mine[j]):
                j += 1
            if j - i > 2:
                first, last = (
                    _local(mine[i].scheduled_us, spec.tz),
                    _local(mine[j - 1].scheduled_us, spec.tz),
                )
                lines.append(f"  {first} .. {last}  {j - i} fires, each completed on time")
            else:
                lines.extend(f"  {_line(run, spec.tz)}" for run in mine[i:j])
            if j < len(mine):
                lines.append(f"  {_line(mine[j], spec.tz)}")
            i = j + 1
        counts: dict[str, int] = {}
        for run in mine:
            counts[str(run.status)] = counts.get(str(run.status), 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"  {len(mine)} runs: {summary or 'none'}")
    return lines


def describe_fast(outcome: Outcome, specs: Sequence[JobSpec]) -> list[str]:
    """`describe`'s lines for what `simulate_fast` gives."""
    lines: list[str] = []
    for spec in specs:
        schedule = spec.cron or f"every {spec.every_s}s"
        lines.append(
            f"{spec.name}  {schedule}  {spec.tz}  overlap={spec.overlap} catchup={spec.catchup}"
        )
        lines += _Folded(outcome, spec).lines()
    return lines


class _Folded:
    """One job's lines: the plain fires (bare or not) between two other runs folded."""

    def __init__(self, outcome: Outcome, spec: JobSpec) -> None:
        self.outcome, self.spec = outcome, spec
        self.mine = [run for run in outcome.runs if run.job == spec.name]
        self.bare = outcome.plain.get(spec.name, [])
        self.like = {run.scheduled_us: run for run in self.mine if _plain(run)}
        self.fires = sorted(self.bare + list(self.like)) if self.like else self.bare
        self.out: list[str] = []

    def lines(self) -> list[str]:
        k, fires = 0, self.fires
        for run in self.mine:
            if self.like.get(run.scheduled_us) is run:
                continue
            cut = bisect_right(fires, run.scheduled_us, k)
            self.fold(fires[k:cut])
            k = cut
            self.out.append(f"  {_line(run, self.spec.tz)}")
        self.fold(fires[k:])
        bare = self.bare
        counts: dict[str, int] = {str(RunStatus.COMPLETED): len(bare)} if bare else {}
        for run in self.mine:
            counts[str(run.status)] = counts.get(str(run.status), 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self.out.append(f"  {len(self.mine) + len(bare)} runs: {summary or 'none'}")
        return self.out

    def fold(self, part: list[int]) -> None:
        tz = self.spec.tz
        if len(part) > 2:
            first, last = _local(part[0], tz), _local(part[-1], tz)
            self.out.append(f"  {first} .. {last}  {len(part)} fires, each completed on time")
            return
        for fire in part:
            run = self.like.get(fire) or self.outcome.plain_run(self.spec.name, fire)
            self.out.append(f"  {_line(run, tz)}")
