"""The dashboard's pictures as SVG text: a job's strip of recent runs and its fire timeline.

Built as strings rather than templates because a timeline can hold 10,000 fires: shapes of
one status share one `<path>`, and per-fire elements (links, hover titles) are only drawn for
windows small enough to point at. Every text is escaped; colours come from CSS classes (the
stylesheet), never from inline style, so the Content-Security-Policy can forbid it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from markupsafe import Markup, escape

from scheduler import cron
from scheduler.display import human_duration
from scheduler.model import RunStatus
from scheduler.store import RunSummary
from scheduler.web.timeline import FireSlot, Timeline

STRIP_RUNS = 50
# Per-fire links and titles up to this many fires; beyond it, paths only.
POINTABLE = 600
# A tick on the time axis per fire up to this many (beyond, they would be one grey band).
TICKS = 2000


def run_href(run_id: str) -> str:
    """The run page's path (ids hold '@', ':' and '#')."""
    return "/runs/" + quote(run_id, safe="@:")


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


class _Paths:
    """Rectangles grouped into one path per CSS class."""

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {}

    def rect(self, cls: str, x: float, y: float, w: float, h: float) -> None:
        # One decimal is a tenth of a pixel of the 1000-wide picture; 10,000 fires make
        # 20,000 of these, so no trimming of zeros here.
        self.parts.setdefault(cls, []).append(f"M{x:.1f} {y:.1f}h{w:.1f}v{h:.1f}h{-w:.1f}z")

    def svg(self) -> str:
        return "".join(
            f'<path class="{cls}" d="{"".join(ds)}"/>' for cls, ds in sorted(self.parts.items())
        )


def _run_duration(run: RunSummary, now_ms: int) -> float | None:
    if run.duration_s is not None:
        return run.duration_s
    if run.started_ms is not None and not run.status.final:
        return max(0.0, (now_ms - run.started_ms) / 1000)
    return None


def strip(runs: Sequence[RunSummary], now_ms: int, href: str, label: str) -> Markup:
    """The last runs of a job, oldest left: colour by status, height by duration."""
    width, height, step = STRIP_RUNS * 5, 26, 5
    shown = runs[-STRIP_RUNS:]
    durations = [_run_duration(r, now_ms) for r in shown]
    longest = max((d for d in durations if d is not None), default=0.0) or 1.0
    parts: dict[str, list[str]] = {}
    x = width - len(shown) * step
    for run, d in zip(shown, durations, strict=True):
        # Whole pixels keep 50,000 bars on an overview cheap to write and to draw.
        h = 4 if d is None else 4 + int((height - 4) * math.sqrt(d / longest) + 0.5)
        parts.setdefault(str(run.status), []).append(f"M{x} {height - h}h4v{h}h-4z")
        x += step
    paths = "".join(f'<path class="st-{st}" d="{"".join(d)}"/>' for st, d in parts.items())
    return Markup(
        f'<a href="{escape(href)}" class="strip"><svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img"><title>{escape(label)}</title>'
        f'<path class="strip-base" d="M0 {height - 0.5}h{width}"/>{paths}</svg></a>'
    )


# -- the timeline ---------------------------------------------------------------------------

W, LEFT, RIGHT = 1000, 58, 990
TOP, PLOT_BOTTOM = 18, 190
LANE_NOT_RUN, LANE_NO_RECORD, LANE_MANUAL = 206, 224, 242
AXIS = 262
H = 282
Y_TICKS = [
    (0.001, "1ms"),
    (0.01, "10ms"),
    (0.1, "100ms"),
    (1, "1s"),
    (10, "10s"),
    (60, "1m"),
    (600, "10m"),
    (3600, "1h"),
    (36000, "10h"),
    (86400, "1d"),
    (864000, "10d"),
]
X_STEPS = [
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    30 * 86400,
    91 * 86400,
    365 * 86400,
]


class _Scale:
    def __init__(self, tl: Timeline, top_s: float) -> None:
        self.lo, self.hi = tl.since_ms, max(tl.until_ms, tl.since_ms + 1)
        self.top_s = top_s

    def x(self, ms: int) -> float:
        return LEFT + (RIGHT - LEFT) * (ms - self.lo) / (self.hi - self.lo)

    def y(self, seconds: float) -> float:
        s = min(max(seconds, 0.001), self.top_s)
        frac = math.log10(s / 0.001) / math.log10(self.top_s / 0.001)
        return PLOT_BOTTOM - (PLOT_BOTTOM - TOP) * frac


def _top_seconds(tl: Timeline) -> float:
    worst = 1.0
    for slot in tl.fires:
        for run in slot.runs:
            worst = max(worst, _reach(run, slot.at_ms, tl.now_ms))
    for run in tl.manual + tl.unexpected:
        worst = max(worst, _reach(run, run.scheduled_ms, tl.now_ms))
    for tick, _ in Y_TICKS:
        if tick >= worst:
            return float(tick)
    return worst


def _reach(run: RunSummary, fire_ms: int, now_ms: int) -> float:
    start = run.started_ms if run.started_ms is not None else None
    if start is None:
        return (now_ms - fire_ms) / 1000 if run.status is RunStatus.QUEUED else 0.0
    return (start - fire_ms) / 1000 + (_run_duration(run, now_ms) or 0.0)


def _title(slot_ms: int, run: RunSummary | None, tz: str, what: str = "") -> str:
    when = _local(slot_ms, tz)
    if run is None:
        return f"{when}: {what}"
    parts = [f"{run.id}", f"fire {when}", str(run.status)]
    if run.started_ms is not None:
        parts.append(f"started {human_duration((run.started_ms - slot_ms) / 1000)} after")
    if run.duration_s is not None:
        parts.append(f"ran {human_duration(run.duration_s)}")
    if run.reason:
        parts.append(run.reason)
    return " · ".join(parts)


def _local(ms: int, tz: str) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(cron.zone(tz))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def timeline(tl: Timeline, tz: str) -> Markup:
    """The fires-vs-runs picture: one column per fire, its run as a bar from start delay to
    end (log scale of seconds after the fire), and lanes for fires that did not run."""
    scale = _Scale(tl, _top_seconds(tl))
    n = max(len(tl.fires), 1)
    bar = min(max((RIGHT - LEFT) / n * 0.7, 1.0), 8.0)
    pointable = len(tl.fires) + len(tl.manual) <= POINTABLE
    paths = _Paths()
    points: list[str] = []
    out: list[str] = [
        f'<svg class="timeline" viewBox="0 0 {W} {H}" role="img" aria-label="fires and runs">'
    ]
    out += _background(tl, scale, bar, tz)
    for slot in tl.fires:
        _draw_slot(slot, tl, scale, bar, paths, points if pointable else None, tz)
    for run in tl.manual:
        paths.rect(f"st-{run.status}", scale.x(run.scheduled_ms) - 3, LANE_MANUAL - 3, 6, 6)
        _draw_run(run, run.scheduled_ms, LANE_MANUAL, tl, scale, bar, paths)
        if pointable:
            points.append(_point(run, run.scheduled_ms, scale, bar, tz, LANE_MANUAL))
    for run in tl.unexpected:
        x = scale.x(run.scheduled_ms)
        paths.rect("flag-unexpected", x - 2, TOP, 4, PLOT_BOTTOM - TOP)
        points.append(
            f'<a href="{escape(run_href(run.id))}"><rect class="hit" x="{_f(x - 4)}" '
            f'y="{TOP}" width="8" height="{PLOT_BOTTOM - TOP}"><title>'
            f"{escape(_title(run.scheduled_ms, run, tz))} · NOT a fire of the schedule"
            "</title></rect></a>"
        )
    out.append(paths.svg())
    out += points
    out.append("</svg>")
    return Markup("".join(out))


def _background(tl: Timeline, scale: _Scale, bar: float, tz: str) -> list[str]:
    out = []
    for start, end in tl.down:
        x0, x1 = scale.x(start) - bar, scale.x(end) + bar
        out.append(
            f'<rect class="down" x="{_f(x0)}" y="{TOP}" width="{_f(max(x1 - x0, 2))}" '
            f'height="{LANE_NO_RECORD + 8 - TOP}"><title>down: from {escape(_local(start, tz))} '
            f"to {escape(_local(end, tz))} no scheduler ran these fires</title></rect>"
        )
    for tick, label in Y_TICKS:
        if tick > scale.top_s:
            break
        y = _f(scale.y(tick))
        out.append(f'<path class="grid" d="M{LEFT} {y}H{RIGHT}"/>')
        out.append(f'<text class="ylabel" x="{LEFT - 6}" y="{y}">{label}</text>')
    for lane, label in (
        (LANE_NOT_RUN, "not run"),
        (LANE_NO_RECORD, "no record"),
        (LANE_MANUAL, "manual"),
    ):
        out.append(f'<path class="lane" d="M{LEFT} {lane}H{RIGHT}"/>')
        out.append(f'<text class="ylabel" x="{LEFT - 6}" y="{lane}">{label}</text>')
    out += _x_axis(tl, scale, tz)
    for t in tl.transitions:
        x = _f(scale.x(t.at_ms))
        when = escape(_local(t.at_ms, tz))
        out.append(
            f'<path class="dst" d="M{x} {TOP - 6}V{LANE_MANUAL + 6}"><title>DST: '
            f"{escape(t.before)} → {escape(t.after)} at {when}</title></path>"
        )
        out.append(
            f'<text class="dstlabel" x="{x}" y="{TOP - 8}">{escape(t.before)} → '
            f"{escape(t.after)}</text>"
        )
    return out


def _x_axis(tl: Timeline, scale: _Scale, tz: str) -> list[str]:
    span_s = (scale.hi - scale.lo) / 1000
    step = next((s for s in X_STEPS if span_s / s <= 8), X_STEPS[-1])
    z = cron.zone(tz)
    fmt = "%H:%M" if step < 86400 else "%m-%d" if step < 365 * 86400 else "%Y"
    first = datetime.fromtimestamp(scale.lo / 1000, UTC).astimezone(z)
    # Ticks at whole steps of local time (midnights, hours), so labels read as round times.
    base = first.replace(minute=0, second=0, microsecond=0)
    if step >= 86400:
        base = base.replace(hour=0)
    t = base.timestamp()
    out = [f'<path class="axis" d="M{LEFT} {AXIS - 12}H{RIGHT}"/>']
    while t * 1000 <= scale.hi:
        ms = int(t * 1000)
        if ms >= scale.lo:
            x = _f(scale.x(ms))
            label = datetime.fromtimestamp(t, UTC).astimezone(z).strftime(fmt)
            out.append(f'<path class="tick" d="M{x} {AXIS - 12}v4"/>')
            out.append(f'<text class="xlabel" x="{x}" y="{AXIS + 2}">{label}</text>')
        t += step
    return out


def _draw_slot(
    slot: FireSlot,
    tl: Timeline,
    scale: _Scale,
    bar: float,
    paths: _Paths,
    points: list[str] | None,
    tz: str,
) -> None:
    x = scale.x(slot.at_ms)
    if slot.state == "gap":
        paths.rect("flag-gap", x - 0.75, TOP, 1.5, PLOT_BOTTOM - TOP)
        paths.rect("flag-gap", x - 3, LANE_NO_RECORD - 3, 6, 6)
        if points is not None:
            points.append(_hit(x, LANE_NO_RECORD, "no record at all for this fire", slot, tz))
        return
    ticks = len(tl.fires) <= TICKS
    if slot.state in ("before", "pending"):
        if ticks:
            paths.rect(f"fire-{slot.state}", x - 0.5, AXIS - 16, 1, 4)
        return
    if slot.state == "duplicate":
        paths.rect("flag-duplicate", x - 3, TOP - 4, 6, PLOT_BOTTOM - TOP + 8)
    for run in slot.runs:
        _draw_run(run, slot.at_ms, LANE_NOT_RUN, tl, scale, bar, paths)
        if points is not None:
            points.append(_point(run, slot.at_ms, scale, bar, tz, LANE_NOT_RUN))
    if ticks:
        paths.rect("fire", x - 0.5, AXIS - 16, 1, 4)


def _draw_run(
    run: RunSummary,
    fire_ms: int,
    lane: int,
    tl: Timeline,
    scale: _Scale,
    bar: float,
    paths: _Paths,
) -> None:
    x = scale.x(fire_ms)
    cls = f"st-{run.status}"
    if run.started_ms is None and run.status is not RunStatus.QUEUED:
        paths.rect(cls, x - 3, lane - 3, 6, 6)  # missed, skipped, killed while queued
        return
    if run.started_ms is None:  # queued: waiting since its fire
        y0, y1 = scale.y(0.001), scale.y((tl.now_ms - fire_ms) / 1000)
    else:
        delay = (run.started_ms - fire_ms) / 1000
        y0 = scale.y(delay)
        y1 = scale.y(delay + (_run_duration(run, tl.now_ms) or 0.0))
    top = min(y1, y0 - 2)
    paths.rect(cls, x - bar / 2, top, bar, max(y0 - top, 2))


def _point(run: RunSummary, fire_ms: int, scale: _Scale, bar: float, tz: str, lane: int) -> str:
    x = scale.x(fire_ms)
    return (
        f'<a href="{escape(run_href(run.id))}"><rect class="hit" x="{_f(x - max(bar, 6) / 2)}" '
        f'y="{TOP}" width="{_f(max(bar, 6))}" height="{lane + 6 - TOP}">'
        f"<title>{escape(_title(fire_ms, run, tz))}</title></rect></a>"
    )


def _hit(x: float, y: int, what: str, slot: FireSlot, tz: str) -> str:
    return (
        f'<rect class="hit" x="{_f(x - 4)}" y="{TOP}" width="8" height="{y + 6 - TOP}">'
        f"<title>{escape(_title(slot.at_ms, None, tz, what))}</title></rect>"
    )
