"""A slow, obvious reading of crontab(5) and docs/fire-times.md's DST rules, sharing no code with
scheduler.cron: the reference that the brute-force properties compare `next_fire` with.

Fields (crontab(5)): `*` is first-last; `a-b` is inclusive; `/s` after `*` or a range takes
every s-th value of it; a single `a/s` runs from a to the field's maximum (cronie); lists mix
any of these; month and day-of-week take names; day-of-week 0 and 7 are both Sunday. Our
additions: `L` (last day of the month), `15W` (the weekday nearest the 15th, inside the
month), `5#3` (third Friday), `L5` (last Friday), and name ranges that wrap (`FRI-MON`).
Days (Vixie cron): when either day field starts with `*` a date must match both, else either.

Times are found by stepping real instants a minute (for 6 fields a second) at a time and
reading the local clock; a step is widened to the next local day, hour or minute only when
the wall clock cannot match before then and no UTC offset change lies in between.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
BOUNDS = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "dom": (1, 31)}
BOUNDS |= {"month": (1, 12), "dow": (0, 7)}
# crontab(5), EXTENSIONS
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *"}
MACROS |= {"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@hourly": "0 * * * *"}


def number(kind: str, token: str) -> int:
    token = token.lower()
    if kind == "month" and token in MONTHS:
        return MONTHS.index(token) + 1
    if kind == "dow" and token in DAYS:
        return DAYS.index(token)
    if kind == "dom" and token == "l":
        return 31
    return int(token)


def plain_item_matches(kind: str, item: str, value: int) -> bool:
    """Does `value` belong to the list item `item` (no L, W or #)?"""
    lo, hi = BOUNDS[kind]
    base, slash, step_text = item.partition("/")
    step = int(step_text) if slash else 1
    if base == "*":
        a, b = lo, hi
    elif "-" in base:
        first, second = base.split("-")
        a, b = number(kind, first), number(kind, second)
    else:
        a = number(kind, base)
        b = hi if slash else a
    if a <= b:
        return a <= value <= b and (value - a) % step == 0
    top = 6 if kind == "dow" else hi  # a wrap such as NOV-FEB or FRI-MON
    sequence = [*range(a, top + 1), *range(lo, b + 1)]
    return value in sequence[::step]


def weekday(d: date) -> int:
    return (d.weekday() + 1) % 7  # Sunday is 0


def nearest_weekday(year: int, month: int, n: int) -> int:
    last = calendar.monthrange(year, month)[1]
    target = min(n, last)
    weekdays = [d for d in range(1, last + 1) if weekday(date(year, month, d)) in range(1, 6)]
    return min(weekdays, key=lambda d: abs(d - target))


def dom_matches(text: str, d: date) -> bool:
    last = calendar.monthrange(d.year, d.month)[1]
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":
            if d.day == last:
                return True
        elif upper.endswith("W"):
            if d.day == nearest_weekday(d.year, d.month, int(item[:-1])):
                return True
        elif plain_item_matches("dom", item, d.day):
            return True
    return False


def dow_matches(text: str, d: date) -> bool:
    wd = weekday(d)
    last = calendar.monthrange(d.year, d.month)[1]
    for item in text.split(","):
        if "#" in item:
            day, n = item.split("#")
            if number("dow", day) % 7 == wd and (d.day - 1) // 7 + 1 == int(n):
                return True
        elif item.upper().startswith("L"):
            if number("dow", item[1:]) % 7 == wd and d.day + 7 > last:
                return True
        elif plain_item_matches("dow", item, wd) or (
            wd == 0 and plain_item_matches("dow", item, 7)
        ):
            return True
    return False


def field_matches(kind: str, text: str, value: int) -> bool:
    return any(plain_item_matches(kind, item, value) for item in text.split(","))


@lru_cache(maxsize=65536)
def _day_matches(dom_text: str, month_text: str, dow_text: str, d: date) -> bool:
    if not field_matches("month", month_text, d.month):
        return False
    dom, dow = dom_matches(dom_text, d), dow_matches(dow_text, d)
    if dom_text.startswith("*") or dow_text.startswith("*"):
        return dom and dow
    return dom or dow


@dataclass(frozen=True)
class Crontab:
    second: str
    minute: str
    hour: str
    dom: str
    month: str
    dow: str
    six: bool

    @classmethod
    def parse(cls, expr: str) -> Crontab:
        fields = MACROS.get(expr.lower(), expr).split()
        six = len(fields) == 6
        if not six:
            fields = ["0", *fields]
        return cls(*fields, six=six)

    @property
    def interval(self) -> bool:
        """docs/fire-times.md: interval-like when the minute or hour field starts with '*'."""
        return self.minute.startswith("*") or self.hour.startswith("*")

    def day_matches(self, d: date) -> bool:
        return _day_matches(self.dom, self.month, self.dow, d)

    def hour_matches(self, wall: datetime) -> bool:
        return self.day_matches(wall.date()) and field_matches("hour", self.hour, wall.hour)

    def minute_matches(self, wall: datetime) -> bool:
        return self.hour_matches(wall) and field_matches("minute", self.minute, wall.minute)

    def matches(self, wall: datetime) -> bool:
        return self.minute_matches(wall) and field_matches("second", self.second, wall.second)


def fires(expr: str, tz: str, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """Up to `limit` fires in (start, end] by docs/fire-times.md's rules, oldest first."""
    spec, z = Crontab.parse(expr), ZoneInfo(tz)
    unit = timedelta(seconds=1 if spec.six else 60)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    t = epoch + (start.astimezone(UTC) - epoch) // unit * unit
    previous = t.astimezone(z).utcoffset()
    found: list[datetime] = []
    while len(found) < limit and t < end:
        t += _skip(spec, z, t, unit)
        local = t.astimezone(z)
        wall, offset = local.replace(tzinfo=None, fold=0), local.utcoffset()
        assert offset is not None and previous is not None
        hit = spec.matches(wall) and (spec.interval or local.fold == 0)
        if not spec.interval and offset > previous:  # t ends a gap: its wall times fire now
            hit = hit or _any_wall_matches(spec, wall - (offset - previous), wall, unit)
        if hit and start < t <= end:
            found.append(t)
        previous = offset
    return found


def _any_wall_matches(spec: Crontab, lo: datetime, hi: datetime, unit: timedelta) -> bool:
    """Whether a wall time in [lo, hi) matches: the wall times a gap skipped."""
    wall = lo
    while wall < hi:
        if not spec.day_matches(wall.date()):
            wall = datetime.combine(wall.date() + timedelta(days=1), datetime.min.time())
        elif not spec.hour_matches(wall):
            wall = wall.replace(minute=0, second=0) + timedelta(hours=1)
        elif spec.six and not spec.minute_matches(wall):
            wall = wall.replace(second=0) + timedelta(minutes=1)
        elif spec.matches(wall):
            return True
        else:
            wall += unit
    return False


def _skip(spec: Crontab, z: ZoneInfo, t: datetime, unit: timedelta) -> timedelta:
    """How far to step from `t`: one unit, or further when nothing can match before."""
    local = t.astimezone(z)
    wall = local.replace(tzinfo=None)
    widths = []
    if not spec.day_matches(wall.date()):
        widths.append(datetime.combine(wall.date() + timedelta(days=1), datetime.min.time()) - wall)
    if not spec.hour_matches(wall):
        widths.append(wall.replace(minute=0, second=0) + timedelta(hours=1) - wall)
    if spec.six and not spec.minute_matches(wall):
        widths.append(wall.replace(second=0) + timedelta(minutes=1) - wall)
    for width in widths:  # widest first; never across a change of offset
        if width > unit and (t + width).astimezone(z).utcoffset() == local.utcoffset():
            return width
    return unit
