"""What each page shows, read from the store and the job definitions (no HTTP here)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from scheduler import display, policy
from scheduler.errors import UnknownRun
from scheduler.model import JobSpec, Run, RunStatus, from_ms, iso, to_ms
from scheduler.store import RunSummary, Store
from scheduler.web import svg, timeline
from scheduler.web.cache import Summaries

WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_FIRES = 10_000


def statuses_and_never() -> list[str]:
    """What the overview filters a job's last status by: a status, or `never` (no run yet)."""
    return [*(str(s) for s in RunStatus), "never"]


@functools.lru_cache(maxsize=4096)
def _describe(spec: JobSpec) -> str:
    return display.describe_schedule(spec)


@functools.lru_cache(maxsize=8192)
def schedule_cells(spec: JobSpec) -> Markup:
    """The overview's cells that change only with the definition: schedule and zone."""
    return Markup(
        f'<td><span class="desc">{escape(_describe(spec))}</span> '
        f'<code class="expr">{escape(spec.schedule)}</code></td><td>{escape(spec.tz)}</td>'
    )


def job_rows(rows: Sequence[JobRow], now: datetime, read_only: bool) -> Markup:
    """The overview's table rows, written here rather than in the template: a thousand jobs
    are the common case, and this is several times faster (every value is escaped)."""

    out = []
    for row in rows:
        spec = row.spec
        name = escape(spec.name)
        badge = ' <span class="badge">paused</span>' if row.paused else ""
        if row.next_fire is not None:
            nxt = (
                f'<time datetime="{iso(row.next_fire)}">{when_text(row.next_fire, spec.tz)}</time>'
                + (' <span class="muted">(skipped)</span>' if row.paused else "")
            )
        else:
            nxt = '<span class="muted">manual only</span>'
        if row.last is not None:
            st = escape(str(row.last.status))
            ago = display.ago(from_ms(row.last.scheduled_ms), now)
            last = (
                f'<a href="{escape(svg.run_href(row.last.id))}"><span class="st st-{st}">{st}'
                f'</span></a> <span class="muted">{ago}</span>'
            )
        else:
            last = '<span class="muted">never</span>'
        actions = (
            "" if read_only else f'<td class="actions">{action_buttons(spec.name, row.paused)}</td>'
        )
        cls = ' class="paused"' if row.paused else ""
        out.append(
            f'<tr{cls}><td class="name">'
            f'<a href="/jobs/{name}">{name}</a>{badge}</td>{schedule_cells(spec)}'
            f'<td>{nxt}</td><td class="last">{last}</td><td>{row.strip}</td>{actions}</tr>\n'
        )
    return Markup("".join(out))


@functools.lru_cache(maxsize=8192)
def action_buttons(name: str, paused: bool) -> Markup:
    """Run now and pause/resume, as buttons of the overview's one form (its CSRF token)."""
    toggle = (
        f'<button formaction="/jobs/{name}/resume">Resume</button>'
        if paused
        else f'<button formaction="/jobs/{name}/pause" class="quiet">Pause</button>'
    )
    return Markup(f'<button formaction="/jobs/{name}/trigger">Run now</button> {toggle}')


def when_text(moment: datetime | None, tz: str = "UTC") -> str:
    """A time in a zone, to the second, with the zone's abbreviation."""
    if moment is None:
        return ""
    from scheduler import cron

    local = moment.astimezone(cron.zone(tz))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


@dataclass
class JobRow:
    """One line of the overview."""

    spec: JobSpec
    description: str
    next_fire: datetime | None
    last: RunSummary | None
    paused: bool
    strip: Any


@dataclass
class Overview:
    rows: list[JobRow]
    total_jobs: int
    counts: dict[str, int]
    window: str
    workers: list[dict[str, str]]
    queues: dict[str, int]
    running: int
    latest: list[Run]
    now: datetime


def overview(
    store: Store,
    cache: Summaries,
    specs: Mapping[str, JobSpec],
    *,
    name: str = "",
    statuses: Sequence[str] = (),
    window: str = "24h",
) -> Overview:
    """Every job (filtered by name and last status) with its strip, and the fleet's state."""
    now = datetime.now(UTC)
    now_ms = to_ms(now)
    paused = store.paused_jobs()
    needle = name.strip().lower()
    chosen = [spec for spec in specs.values() if not needle or needle in spec.name.lower()]
    heads = store.newest_ids([spec.name for spec in chosen], svg.STRIP_RUNS)
    rows = []
    for spec, head in zip(chosen, heads, strict=True):
        strip, last = cache.strip(spec.name, head, now_ms, _strip)
        if statuses and (last.status if last else "never") not in statuses:
            continue
        rows.append(
            JobRow(
                spec=spec,
                description=_describe(spec),
                next_fire=policy.next_fire(spec, now) if (spec.cron or spec.every_s) else None,
                last=last,
                paused=spec.name in paused,
                strip=strip,
            )
        )
    seconds = WINDOWS.get(window, WINDOWS["24h"])
    queues = sorted({spec.queue for spec in specs.values()} | {"default"})
    return Overview(
        rows=rows,
        total_jobs=len(specs),
        counts=store.status_counts(now - timedelta(seconds=seconds), None),
        window=window if window in WINDOWS else "24h",
        workers=store.workers(),
        queues={q: store.queue_depth(q) for q in queues},
        running=store.running_count(),
        latest=store.history(limit=8),
        now=now,
    )


def _strip(job: str, runs: Sequence[RunSummary], now_ms: int) -> Any:
    return svg.strip(runs, now_ms, f"/jobs/{job}", _strip_label(job, runs))


def _strip_label(job: str, runs: Sequence[RunSummary]) -> str:
    counts = display.status_counts([r.status for r in runs])
    return f"{job}: last {counts}" if runs else f"{job}: no runs yet"


@dataclass
class HistoryPage:
    """One page of run history, newest first, with the cursor of the next page."""

    runs: list[Run]
    next_until: str | None
    next_skip: int
    limit: int
    counts: str


def history_page(
    store: Store,
    *,
    job: str | None,
    statuses: Sequence[RunStatus],
    since: datetime | None,
    until: datetime | None,
    skip: int,
    limit: int,
) -> HistoryPage:
    """Like `sched history`; pages continue at (until, skip): the last page's oldest fire time
    and how many runs at exactly that time were already shown."""
    runs: list[Run] = []
    skipped = 0
    for run in store.iter_history(
        job=job, statuses=statuses, since=since, until=until, limit=limit + skip + 1
    ):
        if skipped < skip and until is not None and run.scheduled_for == until:
            skipped += 1
            continue
        runs.append(run)
        if len(runs) > limit:
            break
    more = len(runs) > limit
    runs = runs[:limit]
    next_until, next_skip = None, 0
    if more and runs:
        oldest = runs[-1].scheduled_for
        next_until = iso(oldest)
        next_skip = sum(1 for r in runs if r.scheduled_for == oldest)
        if until is not None and oldest == until:
            next_skip += skip
    return HistoryPage(
        runs, next_until, next_skip, limit, display.status_counts([r.status for r in runs])
    )


@dataclass
class JobPage:
    spec: JobSpec
    description: str
    paused: bool
    next_fires: list[datetime]
    since: datetime
    until: datetime
    timeline: timeline.Timeline
    picture: Any
    history: HistoryPage
    last_fire: datetime | None


def job_page(
    store: Store,
    cache: Summaries,
    spec: JobSpec,
    *,
    since: datetime,
    until: datetime,
    statuses: Sequence[RunStatus],
    h_since: datetime | None,
    h_until: datetime | None,
    skip: int,
    limit: int,
) -> JobPage:
    """The timeline of the window [since, until] and a page of history."""
    now = datetime.now(UTC)
    fires = timeline.expected_fires(spec, since, until, MAX_FIRES + 1)
    truncated = len(fires) > MAX_FIRES
    if truncated:
        fires = fires[-MAX_FIRES:]
        since = fires[0]
    runs = cache.between(spec.name, since, until, MAX_FIRES * 2)
    oldest = store.oldest_run_at(spec.name)
    last_fire = store.last_fires().get(spec.name)
    tl = timeline.build(
        spec,
        fires,
        runs,
        since=since,
        until=until,
        now=now,
        oldest_ms=to_ms(oldest) if oldest else None,
        last_fire_ms=to_ms(last_fire) if last_fire else None,
        truncated=truncated,
    )
    nexts: list[datetime] = []
    if spec.cron or spec.every_s:
        after = now
        for _ in range(5):
            after = policy.next_fire(spec, after)
            nexts.append(after)
    return JobPage(
        spec=spec,
        description=_describe(spec),
        paused=spec.name in store.paused_jobs(),
        next_fires=nexts,
        since=since,
        until=until,
        timeline=tl,
        picture=svg.timeline(tl, spec.tz),
        history=history_page(
            store,
            job=spec.name,
            statuses=statuses,
            since=h_since,
            until=h_until,
            skip=skip,
            limit=limit,
        ),
        last_fire=last_fire,
    )


def auto_window(store: Store, spec: JobSpec, now: datetime) -> datetime:
    """Where the job page's default window starts: the last day, or from shortly before the
    oldest kept run when history is younger; at least 40 fires (5 minutes to an hour), and
    just that without history."""
    shortest = timedelta(hours=1)
    if spec.cron or spec.every_s:
        first = policy.next_fire(spec, now)
        interval = policy.next_fire(spec, first) - first
        shortest = min(max(40 * interval, timedelta(minutes=5)), timedelta(hours=1))
    oldest = store.oldest_run_at(spec.name)
    if oldest is None:
        return now - shortest
    since = now - timedelta(days=1)
    if oldest > since:
        since = oldest - max((now - oldest) / 20, timedelta(seconds=10))
    return min(since, now - shortest)


def worker_rows(store: Store) -> list[dict[str, Any]]:
    """Live workers, each with its current run's state (its horse) when it has one."""
    rows: list[dict[str, Any]] = []
    workers = store.workers()
    for w in workers:
        run = _current_run(store, w.get("current"))
        beat_at = w.get("heartbeat_at")
        rows.append(
            {
                **w,
                "heartbeat": from_ms(int(beat_at)) if beat_at and beat_at.isdigit() else None,
                "run": run,
                "horse": _horse_state(run),
            }
        )
    return rows


def _current_run(store: Store, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    try:
        return store.get_run(run_id)
    except UnknownRun:
        return None  # trimmed meanwhile


def _horse_state(run: Run | None) -> str:
    if run is None:
        return "idle"
    if run.status is RunStatus.RUNNING:
        return f"running (pid {run.pid})" if run.pid else "starting"
    return f"finishing ({run.status})"
