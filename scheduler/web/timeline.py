"""Every fire a job's schedule promised over a window, beside the run each one produced.

Pure functions over a JobSpec and RunSummary records: the fires come from the scheduler's own
fire-time function (`cron.fires_between`, what catch-up uses), the runs from the store, and
what does not line up (a fire without any record, two records for one fire, a scheduled run
at an instant the schedule does not give) is named, so the page can flag it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler import cron
from scheduler.model import JobSpec, RunStatus, to_ms
from scheduler.store import RunSummary

# A fire this recent may simply not be enqueued yet: not a gap.
DUE_SLACK_MS = 10_000
# Scheduled runs have deterministic ids per fire; these triggers belong to a fire.
FIRE_TRIGGERS = ("schedule", "catchup", "retry")


@dataclass
class FireSlot:
    """One expected fire and the records it has (first attempt, retries)."""

    at_ms: int
    runs: list[RunSummary] = field(default_factory=list)
    state: str = "ran"
    """`ran`; `gap` (no record at all); `duplicate` (two first attempts); `before` (older
    than the oldest kept run: trimmed, or the job did not exist yet); `pending` (not due
    or not enqueued yet)."""


@dataclass
class Transition:
    """A change of the zone's UTC offset (DST) inside the window."""

    at_ms: int
    before: str
    after: str


@dataclass
class Timeline:
    """What the job page draws."""

    since_ms: int
    until_ms: int
    now_ms: int
    fires: list[FireSlot]
    manual: list[RunSummary]
    unexpected: list[RunSummary]
    transitions: list[Transition]
    down: list[tuple[int, int]]
    truncated: bool
    counts: dict[str, int]

    @property
    def gaps(self) -> list[FireSlot]:
        return [f for f in self.fires if f.state == "gap"]

    @property
    def duplicates(self) -> list[FireSlot]:
        return [f for f in self.fires if f.state == "duplicate"]


def expected_fires(spec: JobSpec, since: datetime, until: datetime, cap: int) -> list[datetime]:
    """The fires in [since, until] by the scheduler's function; the newest `cap` of them."""
    if spec.cron is None and spec.every_s is None:
        return []
    after = since - timedelta(microseconds=1)
    return cron.fires_between(spec.cron, spec.every_s, spec.tz, after, until, cap)


def build(
    spec: JobSpec,
    fires: Sequence[datetime],
    runs: Sequence[RunSummary],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    oldest_ms: int | None,
    last_fire_ms: int | None,
    truncated: bool = False,
) -> Timeline:
    """Match runs to fires by their scheduled instant and judge each fire."""
    slots = [FireSlot(to_ms(at)) for at in fires]
    by_ms = {slot.at_ms: slot for slot in slots}
    manual: list[RunSummary] = []
    unexpected: list[RunSummary] = []
    counts: dict[str, int] = {}
    for run in runs:
        counts[str(run.status)] = counts.get(str(run.status), 0) + 1
        slot = by_ms.get(run.scheduled_ms)
        if run.trigger == "manual":
            manual.append(run)
        elif slot is not None:
            slot.runs.append(run)
        elif not truncated or run.scheduled_ms >= (slots[0].at_ms if slots else 0):
            unexpected.append(run)
    now_ms = to_ms(now)
    for slot in slots:
        slot.state = _judge(slot, now_ms, oldest_ms, last_fire_ms)
    return Timeline(
        since_ms=to_ms(since),
        until_ms=to_ms(until),
        now_ms=now_ms,
        fires=slots,
        manual=manual,
        unexpected=unexpected,
        transitions=transitions(spec.tz, since, until),
        down=_down_windows(slots),
        truncated=truncated,
        counts=counts,
    )


def _judge(slot: FireSlot, now_ms: int, oldest_ms: int | None, last_fire_ms: int | None) -> str:
    firsts = sum(1 for r in slot.runs if r.attempt == 1)
    if firsts > 1:
        return "duplicate"
    if slot.runs:
        return "ran"
    if slot.at_ms > now_ms - DUE_SLACK_MS:
        return "pending"
    if oldest_ms is None or slot.at_ms < oldest_ms:
        return "before"
    if last_fire_ms is not None and slot.at_ms > last_fire_ms and slot.at_ms > now_ms - 60_000:
        return "pending"  # the scheduler has not reached it yet (it enqueues once per fire)
    return "gap"


def _down_windows(slots: Sequence[FireSlot]) -> list[tuple[int, int]]:
    """Spans of consecutive fires that no scheduler ran: recorded `missed` or with no record."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    last = 0
    for slot in slots:
        down = slot.state == "gap" or (
            slot.runs and all(r.status == RunStatus.MISSED for r in slot.runs)
        )
        if down:
            start = slot.at_ms if start is None else start
            last = slot.at_ms
        elif start is not None:
            spans.append((start, last))
            start = None
    if start is not None:
        spans.append((start, last))
    return spans


def transitions(tz: str, since: datetime, until: datetime) -> list[Transition]:
    """Every change of the zone's UTC offset in the window, to the second."""
    if tz in ("UTC", "Etc/UTC"):
        return []
    z = cron.zone(tz)
    step = 6 * 3600
    lo = int(since.timestamp())
    hi = int(until.timestamp())
    out: list[Transition] = []
    offset = _offset(z, lo)
    t = lo
    while t < hi:
        nxt = min(t + step, hi)
        after = _offset(z, nxt)
        if after != offset:
            a, b = t, nxt  # offset(a) == offset, offset(b) == after: bisect to the second
            while b - a > 1:
                mid = (a + b) // 2
                if _offset(z, mid) == offset:
                    a = mid
                else:
                    b = mid
            out.append(Transition(b * 1000, _fmt_offset(offset), _fmt_offset(after)))
            offset = after
        t = nxt
    return out


def _offset(z: ZoneInfo, t: int) -> int:
    delta = datetime.fromtimestamp(t, UTC).astimezone(z).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _fmt_offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    return f"UTC{sign}{hours:02d}:{rest // 60:02d}"
