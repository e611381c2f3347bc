"""Pure fire-time math: the cron grammar of crontab(5), with the DST rules of docs/fire-times.md.

Each field is read into its set of allowed values (names, ranges, steps, lists, `L`, `W`, `#`)
here, not by croniter: croniter 6 and 7 both drop a bare `*` inside a list (`*,30` as minute
30 only) and stop a day-of-week step at Saturday (`1/3` without Sunday, `7/1` as every day).
We then step through LOCAL wall-clock times (naive datetimes) and map each matching wall time
to real instants ourselves with zoneinfo's `fold`, so that interval schedules never fire at a
nonexistent time (`0 */2 * * *` at 03:00 on a Berlin spring-forward day) and fixed-time
schedules fire once in a repeated hour (`30 1 * * *` in New York on a fall-back day).
Stepping wall times with bisect over the parsed sets keeps a call to `next_fire` near 7
microseconds.
"""

from __future__ import annotations

import calendar
import math
import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EXPECTED_5 = "5 fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
EXPECTED_6 = "6 fields (second minute hour day-of-month month day-of-week), e.g. '30 0 2 * * *'"
EXPECTED_ANY = (
    f"{EXPECTED_5}; 6 fields with seconds first; "
    "or a macro: @hourly @daily @weekly @monthly @yearly"
)
EXPECTED_ZONE = "an IANA zone such as 'Europe/Berlin' or 'UTC'"

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Any expression that fires at all fires within one 400-year Gregorian cycle.
_MAX_MONTHS = 400 * 12
# Bounds the walk over matching wall times; only a pathological zone could need more.
_MAX_WALLS = 1_000_000


class CronError(ValueError):
    """A schedule or zone that cannot be used: what is wrong and what was expected."""

    def __init__(self, value: str, why: str, expected: str) -> None:
        self.value = value
        self.why = why
        self.expected = expected
        super().__init__(f"{value!r}: {why}")


class _Bad(Exception):
    """A problem in one field; _parse turns it into a CronError naming the expression."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


# --- zones -----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or CronError naming what was expected."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError/OSError: keys such as '', '/etc/x' or 'America' (a folder, not a zone).
        raise CronError(name, "unknown time zone", EXPECTED_ZONE) from None


def _offset_s(z: ZoneInfo, moment: datetime) -> int:
    """The UTC offset in seconds of a naive wall time (its `fold` picks the pass) or instant."""
    offset = z.utcoffset(moment)
    assert offset is not None, "a ZoneInfo always has an offset"
    return offset.days * 86400 + offset.seconds


def _transition(z: ZoneInfo, lo: int, hi: int) -> int:
    """The instant in (lo, hi] (epoch seconds) at which `z` changes its UTC offset."""
    before = _offset_s(z, datetime.fromtimestamp(lo, z))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_s(z, datetime.fromtimestamp(mid, z)) == before:
            lo = mid
        else:
            hi = mid
    return hi


_Wall = tuple[int, int, int, int, int, int]  # year, month, day, hour, minute, second
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def _wall_s(w: _Wall) -> int:
    """A wall time as seconds since 1970-01-01 00:00 on the same (zone-less) clock."""
    return (
        (date(w[0], w[1], w[2]).toordinal() - _EPOCH_DAY) * 86400 + w[3] * 3600 + w[4] * 60 + w[5]
    )


def _wall(seconds: int) -> _Wall:
    day, rest = divmod(seconds, 86400)
    d = date.fromordinal(day + _EPOCH_DAY)
    return d.year, d.month, d.day, rest // 3600, rest // 60 % 60, rest % 60


# --- parsing: one field --------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Kind:
    """One field of the grammar; compared and hashed by identity."""

    name: str
    lo: int
    hi: int
    names: Mapping[str, int]
    name_hint: str


_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_SEC = _Kind("second", 0, 59, {}, "")
_MIN = _Kind("minute", 0, 59, {}, "")
_HOUR = _Kind("hour", 0, 23, {}, "")
_DOM = _Kind("day-of-month", 1, 31, {}, "")
_MON = _Kind("month", 1, 12, _MONTHS, " or a name JAN-DEC")
_DOW = _Kind("day-of-week", 0, 7, _DAYS, " or a name SUN-SAT")  # 7 is Sunday too
_WRAPS = (_MON, _DOW)  # ranges such as NOV-FEB or FRI-MON may wrap around

_DIGITS = re.compile(r"[0-9]+")
_W_DAY = re.compile(r"([0-9]+)W|W([0-9]+)", re.IGNORECASE)
_LAST_DOW = re.compile(r"L(\w+)", re.IGNORECASE)
_YEAR = re.compile(r"(19|20)[0-9]{2}([-/,][0-9]+)*")


@dataclass(frozen=True, slots=True)
class _Field:
    """The values one field allows."""

    values: tuple[int, ...]
    last: bool = False  # day-of-month `L`
    w_day: int = 0  # day-of-month `15W`: the weekday nearest the 15th
    nth: tuple[tuple[int, int], ...] = ()  # (weekday, n): `5#3` -> (5, 3); `L5` -> (5, 0)
    star: bool = False  # the text starts with `*`: Vixie's DOM_STAR / DOW_STAR
    full: bool = False  # every value of the field


@dataclass(slots=True)
class _Parts:
    """What the items of one field add up to, while it is read."""

    values: set[int] = field(default_factory=set)
    last: bool = False
    w_day: int = 0
    nth: set[tuple[int, int]] = field(default_factory=set)


def _value(kind: _Kind, token: str, item: str) -> int:
    if _DIGITS.fullmatch(token):
        number = int(token)
        if not kind.lo <= number <= kind.hi:
            raise _Bad(f"{kind.name} {number} is outside {kind.lo}-{kind.hi}")
        return number
    if token.lower() in kind.names:
        return kind.names[token.lower()]
    if not token:
        raise _Bad(f"{kind.name} {item!r} is missing a number")
    raise _Bad(f"{kind.name} {token!r} is not a number {kind.lo}-{kind.hi}{kind.name_hint}")


def _day_of_month_special(base: str, item: str, parts: _Parts) -> str:
    upper = base.upper()
    if upper == "L":
        parts.last = True
        return "L"
    if upper == "LW":
        raise _Bad(
            f"day-of-month {item!r} (the last weekday of the month) is not supported: "
            "W takes a day number, e.g. '15W' for the weekday nearest the 15th; "
            "'L' alone is the last day"
        )
    if w := _W_DAY.fullmatch(base):
        parts.w_day = _value(_DOM, w.group(1) or w.group(2), item)
        return "W"
    return ""


def _day_of_week_special(base: str, item: str, parts: _Parts) -> str:
    day, hash_, n = base.partition("#")
    if hash_:
        if not day or any(c in day for c in "-*"):
            raise _Bad(f"day-of-week {item!r}: '#' takes one day, e.g. 'MON#1' or '1#1'")
        weekday = _value(_DOW, day, item) % 7
        if not (_DIGITS.fullmatch(n) and 1 <= int(n) <= 5):
            raise _Bad(f"day-of-week {item!r}: the number after # must be 1-5")
        parts.nth.add((weekday, int(n)))
        return "#"
    if last := _LAST_DOW.fullmatch(base):
        parts.nth.add((_value(_DOW, last.group(1), item) % 7, 0))
        return "L"
    upper, before_l = base.upper(), base[:-1].lower()
    if upper == "L" or (upper.endswith("L") and (before_l.isdigit() or before_l in _DAYS)):
        raise _Bad(f"day-of-week {item!r} is not supported: 'L5' means the last Friday")
    return ""


def _special(kind: _Kind, base: str, item: str, parts: _Parts) -> str:
    """Read an `L`, `W` or `#` item into `parts` and return which it is; '' for a plain item."""
    if kind is _DOW:
        return _day_of_week_special(base, item, parts)
    if "#" in base:
        raise _Bad(f"{kind.name} {item!r}: '#' belongs in day-of-week, e.g. 'MON#1'")
    return _day_of_month_special(base, item, parts) if kind is _DOM else ""


def _span(kind: _Kind, first: str, second: str, item: str) -> list[int]:
    """The values of the range first-second, in order (a wrap such as FRI-MON included)."""
    lo = _value(kind, first, item)
    hi = 31 if kind is _DOM and second.upper() == "L" else _value(kind, second, item)
    if lo <= hi:
        return list(range(lo, hi + 1))
    if kind not in _WRAPS:
        fix = f"{first}-{kind.hi},{kind.lo}-{second}"
        raise _Bad(f"{kind.name} range {first}-{second} runs backwards; for a wrap write {fix}")
    top = 6 if kind is _DOW else kind.hi
    return list(range(lo, top + 1)) + list(range(kind.lo, hi + 1))


def _item(kind: _Kind, item: str, in_list: bool, parts: _Parts) -> None:
    """Read one list item into `parts` (crontab(5): `*`, `a`, `a-b`, each with `/step`)."""
    if not item:
        raise _Bad(f"{kind.name} has an empty list entry")
    if "?" in item:
        raise _Bad(f"{kind.name} {item!r}: '?' (Quartz's 'no specific value') is not cron; use '*'")
    base, slash, step = item.partition("/")
    if slash and not (_DIGITS.fullmatch(step) and int(step) > 0):
        raise _Bad(f"{kind.name} step {step!r} in {item!r} must be a whole number of 1 or more")
    if base != "*" and (special := _special(kind, base, item, parts)):
        if slash:
            raise _Bad(f"{kind.name} {item!r}: {special!r} takes no step")
        if special == "W" and in_list:
            raise _Bad(f"day-of-month {item!r}: W must stand alone, not in a list")
        return
    first, dash, second = base.partition("-")
    if base == "*":
        values = list(range(kind.lo, kind.hi + 1))
    elif dash:
        values = _span(kind, first, second, item)
    elif slash:  # cronie: a single start with a step runs to the field's maximum
        values = list(range(_value(kind, first, item), kind.hi + 1))
    else:
        values = [_value(kind, first, item)]
    parts.values.update(values[:: int(step) if slash else 1])


@lru_cache(maxsize=4096)
def _field(kind: _Kind, text: str) -> _Field:
    """Check and expand one field; cached because many schedules share their fields."""
    items = text.split(",")
    parts = _Parts()
    for item in items:
        _item(kind, item, len(items) > 1, parts)
    hi = kind.hi
    if kind is _DOW:  # 7 is another name for Sunday
        parts.values = {v % 7 for v in parts.values}
        hi = 6
    values = tuple(sorted(parts.values))
    return _Field(
        values,
        last=parts.last,
        w_day=parts.w_day,
        nth=tuple(sorted(parts.nth)),
        star=text.startswith("*"),
        full=values == tuple(range(kind.lo, hi + 1)),
    )


# --- matching days ---------------------------------------------------------------------------


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """`15W`: the weekday (Monday-Friday) nearest `day`, never leaving the month."""
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    weekday = calendar.weekday(year, month, day)  # Monday is 0
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < last else day - 2
    return day


class _Days:
    """Which dates a schedule's day-of-month, month and day-of-week fields select."""

    __slots__ = ("dom", "months", "dow", "either", "every_day", "_cache")

    def __init__(self, dom: _Field, month: _Field, dow: _Field) -> None:
        self.dom, self.months, self.dow = dom, frozenset(month.values), dow
        # Vixie cron: either field starting with '*' makes the two an AND, else an OR.
        self.either = not (dom.star or dow.star)
        days_all = (dom.full or dow.full) if self.either else (dom.full and dow.full)
        self.every_day = month.full and days_all
        self._cache: dict[int, tuple[int, ...]] = {}

    def in_month(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of one month, ascending."""
        key = year * 12 + month
        days = self._cache.get(key)
        if days is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            days = self._cache[key] = self._compute(year, month)
        return days

    def _compute(self, year: int, month: int) -> tuple[int, ...]:
        if month not in self.months:
            return ()
        first_weekday, last = calendar.monthrange(year, month)
        dom, dow = self.dom, self.dow
        w_day = _nearest_weekday(year, month, dom.w_day) if dom.w_day else 0
        found = []
        for day in range(1, last + 1):
            weekday = (first_weekday + day) % 7  # cron numbering: Sunday is 0
            dom_hit = day in dom.values or (dom.last and day == last) or day == w_day
            dow_hit = weekday in dow.values or any(
                weekday == wd and (n == (day - 1) // 7 + 1 or (n == 0 and day + 7 > last))
                for wd, n in dow.nth
            )
            if (dom_hit or dow_hit) if self.either else (dom_hit and dow_hit):
                found.append(day)
        return tuple(found)

    def first_from(self, year: int, month: int, day: int) -> tuple[int, int, int]:
        """The first matching date on or after the given one (day may pass the month's end)."""
        for _ in range(_MAX_MONTHS):
            if self.every_day:
                if day <= calendar.monthrange(year, month)[1]:
                    return year, month, day
            else:
                days = self.in_month(year, month)
                i = bisect_left(days, day)
                if i < len(days):
                    return year, month, days[i]
            year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
        raise _Bad("it never fires: no date matches its day and month fields")


# --- parsing: whole expressions --------------------------------------------------------------


class _Schedule:
    """A parsed expression: sorted seconds, minutes and hours, the matching days, the DST rule,
    and the expression as validate() normalises it."""

    __slots__ = ("seconds", "minutes", "hours", "days", "interval", "text", "_tod")

    def __init__(self, fields: list[_Field], days: _Days, interval: bool, text: str) -> None:
        self.seconds, self.minutes, self.hours = (f.values for f in fields[:3])
        self.days = days
        self.interval = interval
        self.text = text
        self._tod: list[int] | None = None

    def times_of_day(self) -> list[int]:
        """Every matching time of day as seconds after midnight, ascending."""
        if self._tod is None:
            self._tod = [
                h * 3600 + m * 60 + sec
                for h in self.hours
                for m in self.minutes
                for sec in self.seconds
            ]
        return self._tod

    def wall_from(self, y: int, m: int, d: int, hour: int, minute: int, second: int) -> _Wall:
        """The first matching wall time at or after the given one (second may be 60)."""
        if self.days.every_day or d in self.days.in_month(y, m):
            hms = self._time_from(hour, minute, second)
            if hms is not None:
                return y, m, d, *hms
        y, m, d = self.days.first_from(y, m, d + 1)
        return y, m, d, self.hours[0], self.minutes[0], self.seconds[0]

    def _time_from(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return hour, minute, seconds[k]
                j += 1
            if j < len(minutes):
                return hour, minutes[j], seconds[0]
            i += 1
        if i < len(hours):
            return hours[i], minutes[0], seconds[0]
        return None


@lru_cache(maxsize=4096)
def _days(dom_text: str, month_text: str, dow_text: str) -> _Days:
    days = _Days(_field(_DOM, dom_text), _field(_MON, month_text), _field(_DOW, dow_text))
    try:
        days.first_from(2000, 1, 1)
    except _Bad:
        why = f"it never fires: day-of-month {dom_text!r} never occurs in month {month_text!r}"
        if dow_text != "*":
            why = (
                f"it never fires: no date matches day-of-month {dom_text!r}, "
                f"month {month_text!r} and day-of-week {dow_text!r}"
            )
        raise _Bad(why) from None
    return days


def _split(expr: str) -> tuple[list[str], str]:
    """The fields, seconds first (defaulting to '0'), and the `expected` text for errors."""
    text = " ".join(expr.split())
    if not text:
        raise CronError(expr, "the expression is empty", EXPECTED_ANY)
    if text.startswith("@"):
        if text.lower() not in MACROS:
            why = f"unknown macro {text!r}"
            raise CronError(expr, why, "one of " + " ".join(sorted(MACROS)))
        return ["0", *MACROS[text.lower()].split()], EXPECTED_5
    fields = text.split(" ")
    if len(fields) == 5:
        return ["0", *fields], EXPECTED_5
    if len(fields) == 6:
        if _YEAR.fullmatch(fields[5]):
            why = (
                f"6 fields mean seconds first, so {fields[5]!r} would be the day-of-week; "
                "it looks like a year, and there is no year field"
            )
            raise CronError(expr, why, EXPECTED_6)
        return fields, EXPECTED_6
    given = f"{len(fields)} field{'s' if len(fields) != 1 else ''} given"
    if len(fields) == 7:
        given += ": there is no year field (Quartz has one; cron does not)"
    raise CronError(expr, given, EXPECTED_ANY)


@lru_cache(maxsize=1 << 17)
def _parse(expr: str) -> _Schedule:
    texts, expected = _split(expr)
    try:
        fields = [
            _field(kind, text) for kind, text in zip((_SEC, _MIN, _HOUR), texts[:3], strict=True)
        ]
        days = _days(texts[3], texts[4], texts[5])
    except _Bad as bad:
        raise CronError(expr, bad.why, expected) from None
    # docs/fire-times.md: a schedule is interval-like when its minute or hour field starts with '*'.
    interval = texts[1].startswith("*") or texts[2].startswith("*")
    text = " ".join(expr.split())
    return _Schedule(fields, days, interval, text.lower() if text.startswith("@") else text)


def validate(expr: str) -> str:
    """Check a cron expression (5 fields, 6 seconds-first, or a macro); return it normalised."""
    # The parsed schedule's own string: one per distinct expression, however many jobs use it.
    return _parse(expr).text


def is_interval(expr: str) -> bool:
    """Whether `expr` follows the interval-like DST rule (its minute or hour starts with '*')."""
    return _parse(expr).interval


# --- fire times ------------------------------------------------------------------------------


def _first_after(s: _Schedule, z: ZoneInfo, start: _Wall, after: int) -> tuple[int, int]:
    """The first fire after `after` (epoch seconds) among wall times from `start` on, in order,
    and the UTC offset it fires at."""
    for _ in range(_MAX_WALLS):
        w = s.wall_from(*start)
        early = _offset_s(z, datetime(*w))  # fold=0: the offset before a transition
        late = _offset_s(z, datetime(*w, fold=1))
        wall_s = _wall_s(w)
        if early >= late:  # exists, twice when early > late: fold 0 is the first pass
            if wall_s - early > after:
                return wall_s - early, early
            if s.interval and wall_s - late > after:
                return wall_s - late, late
        else:  # w falls in a gap, which ends at the transition instant
            gap_end = _transition(z, wall_s - late, wall_s - early)
            if not s.interval and gap_end > after:
                return gap_end, late
            wall_s = max(wall_s, gap_end + late - 1)  # interval: resume at the gap's end
            w = _wall(wall_s)
        start = (*w[:5], w[5] + 1)
    raise RuntimeError(f"no fire time found after {after} in {z}")


def _next_cron(s: _Schedule, z: ZoneInfo, local: datetime) -> int:
    """The first fire strictly after the instant `local` (aware, in `z`), in epoch seconds."""
    wall = local.year, local.month, local.day, local.hour, local.minute, local.second
    first = _offset_s(z, local)
    a = _wall_s(wall) - first  # `local` rounded down to its second
    fire, _ = _first_after(s, z, (*wall[:5], wall[5] + 1), a)
    if s.interval and local.fold == 0:
        second = _offset_s(z, datetime(*wall, fold=1))
        if second < first:
            # `local` lies in the first pass of a repeated hour: the second pass of the wall
            # times already behind it is still to come, and may come before `fire`.
            w = s.wall_from(*_wall(_transition(z, a, a + first - second) + second))
            if _wall_s(w) <= _wall_s(wall):
                fire = min(fire, _wall_s(w) - second)
    return fire


def _every_us(every_s: float) -> int:
    step = round(every_s * 1_000_000) if math.isfinite(every_s) else 0
    if step <= 0:
        raise CronError(
            str(every_s), "the interval must be a positive number of seconds", "e.g. 30 or 0.5"
        )
    return step


def _epoch_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} is naive; an aware datetime is required")
    return (moment - _EPOCH) // _MICROSECOND


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _which(cron: str | None, every_s: float | None) -> None:
    if (cron is None) == (every_s is None):
        why = "give exactly one of a cron expression and every_s"
        raise CronError(f"{cron!r}/{every_s!r}", why, EXPECTED_5)


def next_fire(cron: str | None, every_s: float | None, tz: str, after: datetime) -> datetime:
    """The first fire instant strictly after `after` (aware), as an aware UTC datetime."""
    _which(cron, every_s)
    if every_s is not None:
        step = _every_us(every_s)
        return _at((_epoch_us(after) // step + 1) * step)
    assert cron is not None
    if after.tzinfo is None:
        raise ValueError(f"{after!r} is naive; an aware datetime is required")
    z = zone(tz)
    return datetime.fromtimestamp(_next_cron(_parse(cron), z, after.astimezone(z)), UTC)


def _collect(s: _Schedule, z: ZoneInfo, start: int, until: int, cap: int) -> list[int] | None:
    """Fires in (start, until] (epoch seconds), or None when there are more than `cap`."""
    found: list[int] = []
    fire = _next_cron(s, z, datetime.fromtimestamp(start, z))
    while fire <= until:
        if len(found) == cap:
            return None
        found.append(fire)
        fire = _next_cron(s, z, datetime.fromtimestamp(fire, z))
    return found


def _newest_cron(s: _Schedule, z: ZoneInfo, after: datetime, until: int, limit: int) -> list[int]:
    """The newest `limit` fires in (after, until].

    Walking forward from `after` could mean millions of steps after a long outage, so grow a
    window back from `until` until it holds `limit` fires, and bisect when a try overshoots
    (more than 4 * limit): the work stays a small multiple of `limit`.
    """
    first = _next_cron(s, z, after.astimezone(z))  # windows start at whole seconds from here
    span = until - first + 1
    if span <= 0:
        return []
    short, long = 0, 0  # windows known to hold too few fires / too many (0: none yet)
    window = min(limit, span)
    while True:
        found = _collect(s, z, until - window, until, 4 * limit)
        if found is not None and (len(found) >= limit or window == span):
            return found[-limit:]
        if found is None:
            long = window
        else:
            short = window
            grow = 8.0 if not found else min(max(1.5 * limit / len(found), 2.0), 64.0)
            window = min(math.ceil(window * grow), span)
        if long:
            window = (short + long + 1) // 2


def fires_between(
    cron: str | None, every_s: float | None, tz: str, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Fire instants in (after, until], oldest first, at most `limit` of the newest."""
    _which(cron, every_s)
    if limit <= 0 or until <= after:
        return []
    if every_s is not None:
        step = _every_us(every_s)
        first, last = _epoch_us(after) // step + 1, _epoch_us(until) // step
        return [_at(k * step) for k in range(max(first, last - limit + 1), last + 1)]
    assert cron is not None
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("after and until must be aware datetimes")
    until_s = _epoch_us(until) // 1_000_000
    fires = _newest_cron(_parse(cron), zone(tz), after, until_s, limit)
    return [datetime.fromtimestamp(fire, UTC) for fire in fires]


def _walk_period(s: _Schedule, z: ZoneInfo, fire: int, end: int, out: list[int]) -> int:
    """Append the fires from `fire` (included) to `end` (excluded), all at `fire`'s offset, day
    by matching day; return the first fire at or after `end` at that offset."""
    offset = _offset_s(z, datetime.fromtimestamp(fire, z))
    tod = s.times_of_day()
    y, m, d = _wall(fire + offset)[:3]
    day_s = _wall_s((y, m, d, 0, 0, 0))
    i = bisect_left(tod, fire + offset - day_s)
    while True:
        base = day_s - offset
        j = bisect_left(tod, end - base)
        out.extend([base + x for x in tod[i:j]])
        if j < len(tod):
            return base + tod[j]
        y, m, d = s.days.first_from(y, m, d + 1)
        day_s, i = _wall_s((y, m, d, 0, 0, 0)), 0


def fire_instants_us(
    cron: str | None, every_s: float | None, tz: str, after: datetime, until: datetime
) -> list[int]:
    """Every fire in (after, until], oldest first, as epoch microseconds: next_fire stepped.

    For a year of a per-minute schedule next_fire is called half a million times; between
    two offset changes of the zone a fire is just its wall time minus the one offset, so there
    the matching wall times are walked directly, and next_fire's own code runs for the day
    after each change (where a repeated hour or a gap's end need its rules) and at the ends.
    """
    _which(cron, every_s)
    lo_us, hi_us = _epoch_us(after), _epoch_us(until)
    if hi_us <= lo_us:
        return []
    if every_s is not None:
        step = _every_us(every_s)
        return list(range((lo_us // step + 1) * step, hi_us + 1, step))
    assert cron is not None
    s, z = _parse(cron), zone(tz)
    until_s = hi_us // 1_000_000
    changes = [_epoch_us(at) // 1_000_000 for at, _, _ in transitions(tz, after, until)]
    changes.append(until_s + 1)
    out: list[int] = []
    fire = _next_cron(s, z, after.astimezone(z))
    for change in changes:
        # exact steps through the day after the previous change (or from `after`) ...
        settled = min(fire + 86400, change, until_s + 1)
        while fire < settled:
            out.append(fire)
            fire = _next_cron(s, z, datetime.fromtimestamp(fire, z))
        # ... then wall times minus the period's one offset, up to the next change
        if fire < change and fire <= until_s:
            fire = _walk_period(s, z, fire, min(change, until_s + 1), out)
            if fire >= change:  # the first fire after the change, by next_fire's rules
                fire = _next_cron(s, z, datetime.fromtimestamp(out[-1], z))
        if fire > until_s:
            break
    return [f * 1_000_000 for f in out]


# --- DST notes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DstNote:
    """Wall times of a schedule that a DST transition skips or repeats, and what fires instead.

    `walls` are the schedule's matching local wall times (naive) that do not exist (`gap`) or
    happen twice (`repeat`); `fires` the instants (aware, UTC) at which the scheduler
    fires for them, as next_fire computes them; `fixed` whether the schedule is fixed-time.
    """

    tz: str
    gap: bool
    walls: tuple[datetime, ...]
    more: int  # matching wall times beyond those listed
    fires: tuple[datetime, ...]
    fixed: bool

    def text(self) -> str:
        """`2027-03-28 02:00 does not exist; runs at 03:00 CEST`."""
        shown = ", ".join(w.strftime("%H:%M:%S" if w.second else "%H:%M") for w in self.walls)
        day = self.walls[0].strftime("%Y-%m-%d")
        if self.more:
            shown += f" and {self.more} more"
        plural = len(self.walls) > 1 or self.more
        at = " and ".join(_clock(f.astimezone(zone(self.tz))) for f in self.fires[:2])
        if len(self.fires) > 2:
            at += f" and {len(self.fires) - 2} more"
        if self.gap:
            what = f"{day} {shown} {'do' if plural else 'does'} not exist"
            then = f"runs once, at {at}" if self.fires else "does not run then"
            if len(self.fires) == 1 and not plural:
                then = f"runs at {at}"
            return f"{what}; {then}"
        what = f"{day} {shown} {'happen' if plural else 'happens'} twice"
        if self.fixed:
            return f"{what}; runs once{' each' if plural else ''}, at {at}"
        return f"{what}; runs in both passes, at {at}"


def _clock(moment: datetime) -> str:
    text = moment.strftime("%H:%M:%S" if moment.second else "%H:%M")
    return f"{text} {moment.tzname()}"


def transitions(tz: str, start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
    """The offset changes of zone `tz` in (start, end]: (instant, offset before, after) in s."""
    return list(_transitions(tz, _epoch_us(start) // 1_000_000, _epoch_us(end) // 1_000_000))


@lru_cache(maxsize=1024)
def _transitions(tz: str, lo: int, hi: int) -> tuple[tuple[datetime, int, int], ...]:
    z = zone(tz)
    found = []
    previous = _offset_s(z, datetime.fromtimestamp(lo, z))
    t = lo
    while t < hi:
        step = min(t + 86400, hi)
        offset = _offset_s(z, datetime.fromtimestamp(step, z))
        if offset != previous:
            at = _transition(z, t, step)
            found.append((datetime.fromtimestamp(at, UTC), previous, offset))
            # a second change within the same day is found from the first one on
            step, offset = at, _offset_s(z, datetime.fromtimestamp(at, z))
        t, previous = step, offset
    return tuple(found)


def dst_notes(cron: str, tz: str, start: datetime, end: datetime) -> list[DstNote]:
    """What each DST transition in (start, end] does to the schedule `cron` in zone `tz`."""
    s = _parse(cron)
    notes = []
    for at, before, after in transitions(tz, start, end):
        t = _epoch_us(at) // 1_000_000
        lo, hi = (t + before, t + after) if after > before else (t + after, t + before)
        walls: list[datetime] = []
        more = 0
        w = s.wall_from(*_wall(lo))
        while _wall_s(w) < hi:
            if len(walls) < 3:
                walls.append(datetime(*w))
            else:
                more += 1
            w = s.wall_from(*w[:5], w[5] + 1)
        if not walls:
            continue
        # what the scheduler does with them: its own fires over the affected instants
        first = datetime.fromtimestamp(lo - before, UTC)
        last = datetime.fromtimestamp(hi - after, UTC)
        fired = fires_between(cron, None, tz, first - _MICROSECOND, last - _MICROSECOND, 10_000)
        if after > before:  # a gap: first..last is its end alone
            fired = fires_between(cron, None, tz, first - _MICROSECOND, first, 1)
            if s.interval:
                fired = []  # what fires at the gap's end fires for its own wall time
        notes.append(DstNote(tz, after > before, tuple(walls), more, tuple(fired), not s.interval))
    return notes
