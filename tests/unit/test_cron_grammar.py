"""The cron grammar against crontab(5): one test per form that was once wrong, and a property
comparing `next_fire` with the brute-force reference in crontab_reference.py over generated
expressions that use every form, in UTC and in zones with DST transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.cron import CronError, next_fire, validate
from tests.unit import crontab_reference


def fires(expr: str, after: str, n: int, tz: str = "UTC") -> list[str]:
    t = datetime.fromisoformat(after).astimezone(UTC)
    out = []
    for _ in range(n):
        t = next_fire(expr, None, tz, t)
        out.append(t.strftime("%a %Y-%m-%d %H:%M:%S"))
    return out


# --- a bare `*` inside a list means every value, in every field ------------------------------


def test_star_30_every_minute() -> None:
    assert fires("*,30 * * * *", "2025-06-01T10:00Z", 3) == [
        "Sun 2025-06-01 10:01:00",
        "Sun 2025-06-01 10:02:00",
        "Sun 2025-06-01 10:03:00",
    ]


def test_0_star_5_every_hour() -> None:
    assert fires("0 *,5 * * *", "2025-06-01T10:00Z", 2) == [
        "Sun 2025-06-01 11:00:00",
        "Sun 2025-06-01 12:00:00",
    ]


def test_0_0_star_star_star_0_every_day() -> None:
    # 2025-06-02 is a Monday: '*,0' is every day, not Sundays only
    assert fires("0 0 * * *,0", "2025-06-01T10:00Z", 2) == [
        "Mon 2025-06-02 00:00:00",
        "Tue 2025-06-03 00:00:00",
    ]


def test_0_0_star_star_1_star_every_day() -> None:
    # '1,*' is every day, not Mondays only; it starts with '1', so day-of-month ORs with it
    assert fires("0 0 * * 1,*", "2025-06-03T10:00Z", 2) == [
        "Wed 2025-06-04 00:00:00",
        "Thu 2025-06-05 00:00:00",
    ]


def test_0_0_star_5_star_star_every_day() -> None:
    assert fires("0 0 *,5 * *", "2025-06-01T10:00Z", 2) == [
        "Mon 2025-06-02 00:00:00",
        "Tue 2025-06-03 00:00:00",
    ]


def test_0_0_1_star_3_star_every_month() -> None:
    assert fires("0 0 1 *,3 *", "2025-06-01T10:00Z", 2) == [
        "Tue 2025-07-01 00:00:00",
        "Fri 2025-08-01 00:00:00",
    ]


def test_seconds_star_15_every_second() -> None:
    assert fires("*,15 * * * * *", "2025-06-01T10:00:00Z", 2) == [
        "Sun 2025-06-01 10:00:01",
        "Sun 2025-06-01 10:00:02",
    ]


# --- `N/S` runs from N to the field's maximum, every S, in every field -----------------------


def test_0_0_star_star_1_slash_3_mon_thu_sun() -> None:
    # day-of-week runs 0-7 and 7 is Sunday: 1, 4, 7 -> Monday, Thursday, Sunday
    assert fires("0 0 * * 1/3", "2025-06-01T10:00Z", 3) == [
        "Mon 2025-06-02 00:00:00",
        "Thu 2025-06-05 00:00:00",
        "Sun 2025-06-08 00:00:00",
    ]


def test_0_0_star_star_5_slash_1_fri_sat_sun() -> None:
    assert fires("0 0 * * 5/1", "2025-06-05T10:00Z", 4) == [
        "Fri 2025-06-06 00:00:00",
        "Sat 2025-06-07 00:00:00",
        "Sun 2025-06-08 00:00:00",
        "Fri 2025-06-13 00:00:00",
    ]


def test_0_0_star_star_7_slash_1_sundays_only() -> None:
    assert fires("0 0 * * 7/1", "2025-06-01T10:00Z", 2) == [
        "Sun 2025-06-08 00:00:00",
        "Sun 2025-06-15 00:00:00",
    ]


def test_0_0_star_star_sun_slash_2_sun_tue_thu_sat() -> None:
    assert fires("0 0 * * sun/2", "2025-06-01T10:00Z", 4) == [
        "Tue 2025-06-03 00:00:00",
        "Thu 2025-06-05 00:00:00",
        "Sat 2025-06-07 00:00:00",
        "Sun 2025-06-08 00:00:00",
    ]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("50/5 * * * *", "2025-06-01T10:00Z", ["10:50:00", "10:55:00", "11:50:00"]),
        ("0 20/3 * * *", "2025-06-01T10:00Z", ["20:00:00", "23:00:00", "20:00:00"]),
        ("10/20 * * * * *", "2025-06-01T10:00Z", ["10:00:10", "10:00:30", "10:00:50"]),
    ],
)
def test_n_slash_s_in_minutes_hours_seconds(expr: str, after: str, expected: list[str]) -> None:
    assert [f[-8:] for f in fires(expr, after, 3)] == expected


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # a start whose first step passes the maximum is that start alone, not '*/S'
        (
            "59/2 * * * *",
            "2025-06-01T10:00Z",
            ["Sun 2025-06-01 10:59:00", "Sun 2025-06-01 11:59:00"],
        ),
        (
            "0 23/2 * * *",
            "2025-06-01T10:00Z",
            ["Sun 2025-06-01 23:00:00", "Mon 2025-06-02 23:00:00"],
        ),
        (
            "0 0 31/2 * *",
            "2025-06-01T10:00Z",
            ["Thu 2025-07-31 00:00:00", "Sun 2025-08-31 00:00:00"],
        ),
        (
            "0 0 1 12/2 *",
            "2025-06-01T10:00Z",
            ["Mon 2025-12-01 00:00:00", "Tue 2026-12-01 00:00:00"],
        ),
        (
            "0 0 * * 6/2",
            "2025-06-01T10:00Z",
            ["Sat 2025-06-07 00:00:00", "Sat 2025-06-14 00:00:00"],
        ),
        (
            "59/1 * * * *",
            "2025-06-01T10:00Z",
            ["Sun 2025-06-01 10:59:00", "Sun 2025-06-01 11:59:00"],
        ),
    ],
)
def test_n_slash_s_near_the_maximum(expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, after, 2) == expected


def test_0_0_27_slash_2_star_star_until_the_month_ends() -> None:
    assert fires("0 0 27/2 * *", "2025-02-01T00:00Z", 4) == [
        "Thu 2025-02-27 00:00:00",
        "Thu 2025-03-27 00:00:00",
        "Sat 2025-03-29 00:00:00",
        "Mon 2025-03-31 00:00:00",
    ]


def test_0_0_1_nov_slash_1_star_until_december() -> None:
    assert fires("0 0 1 nov/1 *", "2025-06-01T00:00Z", 3) == [
        "Sat 2025-11-01 00:00:00",
        "Mon 2025-12-01 00:00:00",
        "Sun 2026-11-01 00:00:00",
    ]


def test_plain_days_mix_with_hash_and_l_entries() -> None:
    # Mondays, the third Friday and the last Sunday of June 2025
    assert fires("0 0 * * 1,5#3,L0", "2025-06-15T12:00Z", 4) == [
        "Mon 2025-06-16 00:00:00",
        "Fri 2025-06-20 00:00:00",
        "Mon 2025-06-23 00:00:00",
        "Sun 2025-06-29 00:00:00",
    ]


# --- the brute-force property ----------------------------------------------------------------

NAMES = {
    "month": ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    "dow": ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}
BOUNDS = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "dom": (1, 31)}
BOUNDS |= {"month": (1, 12), "dow": (0, 7)}


def plain_items(kind: str) -> list[str]:
    """`*`, `*/s`, `a`, `a-b`, `a-b/s` and `a/s` over the field, names where it has them, and
    for month and day-of-week ranges that wrap (`FRI-MON`); for day-of-month also `a-L`."""
    lo, hi = BOUNDS[kind]
    names = NAMES.get(kind, [])
    values = sorted({lo, lo + 1, lo + 2, (lo + hi) // 2, hi - 1, hi, *range(lo, hi + 1, 7)})
    spelled = [str(v) for v in values] + names[1::2]
    steps = [2, 3, 5, 7, 13]
    out = ["*", *(f"*/{s}" for s in steps), *spelled]
    for a in spelled:
        out += [f"{a}/{s}" for s in steps]
        av = number(kind, a)
        for b in spelled:
            bv = number(kind, b)
            if av < bv or (names and bv < av <= (6 if kind == "dow" else hi)):
                out += [f"{a}-{b}", f"{a}-{b}/{steps[(av + bv) % len(steps)]}"]
    if kind == "dom":
        out += ["L", "25-L", "1-L/7"]
    if kind == "dow":
        out += [f"{d}#{n}" for d in ("0", "1", "5", "7", "fri") for n in (1, 2, 5)]
        out += ["L0", "L5", "L7", "Lmon"]
    return out


def number(kind: str, token: str) -> int:
    names = NAMES.get(kind, [])
    lo = BOUNDS[kind][0]
    return names.index(token) + lo if token in names else int(token)


ITEMS = {kind: st.sampled_from(plain_items(kind)) for kind in BOUNDS}


@st.composite
def cron_field(draw: st.DrawFn, kind: str) -> str:
    if kind == "dom" and draw(st.integers(0, 7)) == 0:
        return f"{draw(st.integers(1, 31))}W"  # W stands alone
    items = draw(st.lists(ITEMS[kind], min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        items.insert(draw(st.integers(0, len(items))), "*")  # a bare `*` inside a list
    return ",".join(items)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    kinds = ["minute", "hour", "dom", "month", "dow"]
    if draw(st.integers(0, 3)) == 0:
        kinds.insert(0, "second")
    fields = [draw(cron_field(kind)) for kind in kinds]
    return " ".join(fields)


TRANSITIONS = {
    "UTC": ["2025-06-01T00:00Z"],
    "Europe/Berlin": ["2025-03-30T01:00Z", "2025-10-26T01:00Z"],
    "America/New_York": ["2025-03-09T07:00Z", "2025-11-02T06:00Z"],
    "Australia/Lord_Howe": ["2025-04-05T15:00Z", "2025-10-04T15:30Z"],
    "America/St_Johns": ["2025-03-09T05:30Z", "2025-11-02T04:30Z"],
    "Pacific/Apia": ["2011-12-30T10:00Z"],  # a whole day skipped
}


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    tz = draw(st.sampled_from(sorted(TRANSITIONS)))
    if draw(st.booleans()):
        base = datetime.fromisoformat(draw(st.sampled_from(TRANSITIONS[tz])))
        start = base + timedelta(seconds=draw(st.integers(-2 * 86400, 86400)))
    else:
        start = draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC))
        )
    return tz, start + timedelta(microseconds=draw(st.sampled_from([0, 0, 1, 999_999])))


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(expr=expressions(), where=starts())
def test_property_next_fire_matches_a_brute_force_reading_of_crontab5(
    expr: str, where: tuple[str, datetime]
) -> None:
    """Every generated expression is accepted (or never fires), and its next two fires are
    exactly the first two that the minute-by-minute (second-by-second) reference finds."""
    tz, start = where
    try:
        validate(expr)
    except CronError as exc:
        assert exc.why.startswith("it never fires"), exc.why
        return
    first = next_fire(expr, None, tz, start)
    second = next_fire(expr, None, tz, first)
    assert crontab_reference.fires(expr, tz, start, second, limit=3) == [first, second]
