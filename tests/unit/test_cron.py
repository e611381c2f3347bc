"""scheduler.cron against fixed instants: grammar, the DST rules of docs/fire-times.md, catch-up.

Every DST case names its zone and transition. Instants are written in UTC ('...Z'); the
comment beside each gives the local wall time it stands for.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import cron
from scheduler.cron import CronError, fires_between, next_fire, validate
from tests.unit import crontab_reference

EXPECTED_5 = "5 fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
EXPECTED_6 = "6 fields (second minute hour day-of-month month day-of-week), e.g. '30 0 2 * * *'"
EXPECTED_ANY = (
    "5 fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'; "
    "6 fields with seconds first; or a macro: @hourly @daily @weekly @monthly @yearly"
)


def at(text: str) -> datetime:
    """'2025-03-30T01:00Z' -> an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def fires(expr: str, tz: str, after: str | datetime, n: int) -> list[str]:
    """The next `n` fires, each stepped from the previous one, as '...Z' strings."""
    t = at(after) if isinstance(after, str) else after
    out = []
    for _ in range(n):
        t = next_fire(expr, None, tz, t)
        assert t.tzinfo is UTC
        out.append(t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


# --- grammar, in UTC -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/5 * * * *", "2025-06-01T10:03:07Z", ["2025-06-01T10:05:00Z", "2025-06-01T10:10:00Z"]),
        (
            "0,30 9-17/4 * * *",
            "2025-06-01T00:00Z",
            ["2025-06-01T09:00:00Z", "2025-06-01T09:30:00Z", "2025-06-01T13:00:00Z"],
        ),
        # names; day-of-month '*' so month and weekday must both match: Mondays in January
        (
            "0 9 * JAN MON",
            "2025-01-01T00:00Z",
            ["2025-01-06T09:00:00Z", "2025-01-13T09:00:00Z", "2025-01-20T09:00:00Z"],
        ),
        ("0 0 1 nov-feb *", "2025-06-01T00:00Z", ["2025-11-01T00:00:00Z", "2025-12-01T00:00:00Z"]),
        ("0 0 * * 7", "2025-06-01T10:00Z", ["2025-06-08T00:00:00Z", "2025-06-15T00:00:00Z"]),
        ("0 0 * * sat-sun", "2025-06-02T00:00Z", ["2025-06-07T00:00:00Z", "2025-06-08T00:00:00Z"]),
        # croniter reads '5-5' as the whole range; crontab(5) means minute 5 only
        ("5-5 * * * *", "2025-06-01T10:03:07Z", ["2025-06-01T10:05:00Z", "2025-06-01T11:05:00Z"]),
    ],
)
def test_fields_names_ranges_steps_lists(expr: str, after: str, expected: list[str]) -> None:
    assert fires(expr, "UTC", after, len(expected)) == expected


def test_last_day_of_month_l() -> None:
    assert fires("0 0 L * *", "UTC", "2024-02-10T00:00Z", 3) == [
        "2024-02-29T00:00:00Z",  # leap year
        "2024-03-31T00:00:00Z",
        "2024-04-30T00:00:00Z",
    ]


def test_nearest_weekday_w() -> None:
    # 2024-06-15 is a Saturday: the Friday before; 2024-07-15 is a Monday
    assert fires("0 9 15W * *", "UTC", "2024-06-01T00:00Z", 2) == [
        "2024-06-14T09:00:00Z",
        "2024-07-15T09:00:00Z",
    ]
    # 2024-06-01 is a Saturday: W never leaves the month, so Monday the 3rd
    assert fires("0 9 1W * *", "UTC", "2024-06-01T00:00Z", 1) == ["2024-06-03T09:00:00Z"]


def test_nth_weekday_hash_and_last_weekday() -> None:
    assert fires("0 0 * * MON#1", "UTC", "2025-01-01T00:00Z", 2) == [
        "2025-01-06T00:00:00Z",
        "2025-02-03T00:00:00Z",
    ]
    # the last Friday of October 2025 is the 31st, so not the 24th
    assert fires("0 0 * * L5", "UTC", "2025-10-01T00:00Z", 2) == [
        "2025-10-31T00:00:00Z",
        "2025-11-28T00:00:00Z",
    ]
    # third and last Friday
    assert fires("0 0 * * 5#3,L5", "UTC", "2010-01-25T00:00Z", 3) == [
        "2010-01-29T00:00:00Z",
        "2010-02-19T00:00:00Z",
        "2010-02-26T00:00:00Z",
    ]


def test_vixie_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # the 1st OR any Wednesday (2010-01-27 and 2010-02-03 are Wednesdays)
    assert fires("0 0 1 * wed", "UTC", "2010-01-25T00:00Z", 3) == [
        "2010-01-27T00:00:00Z",
        "2010-02-01T00:00:00Z",
        "2010-02-03T00:00:00Z",
    ]
    assert fires("0 0 1,8,15,22,29 * mon", "UTC", "2024-01-30T00:00Z", 2) == [
        "2024-02-01T00:00:00Z",  # a Thursday, by day-of-month
        "2024-02-05T00:00:00Z",  # a Monday, by day-of-week
    ]


def test_vixie_day_of_month_and_day_of_week_when_one_starts_with_star() -> None:
    # '*/7' is days 1,8,15,22,29, but starts with '*': they must also be Mondays.
    # February and March 2024 have none; 2024-04-01 is a Monday.
    assert fires("0 0 */7 * mon", "UTC", "2024-01-30T00:00Z", 2) == [
        "2024-04-01T00:00:00Z",
        "2024-04-08T00:00:00Z",
    ]


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", ["2025-06-11T11:00:00Z", "2025-06-11T12:00:00Z"]),
        ("@daily", ["2025-06-12T00:00:00Z", "2025-06-13T00:00:00Z"]),
        ("@midnight", ["2025-06-12T00:00:00Z", "2025-06-13T00:00:00Z"]),
        ("@weekly", ["2025-06-15T00:00:00Z", "2025-06-22T00:00:00Z"]),  # Sundays
        ("@monthly", ["2025-07-01T00:00:00Z", "2025-08-01T00:00:00Z"]),
        ("@yearly", ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
        ("@annually", ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
        ("@DAILY", ["2025-06-12T00:00:00Z", "2025-06-13T00:00:00Z"]),
    ],
)
def test_macros(macro: str, expected: list[str]) -> None:
    assert fires(macro, "UTC", "2025-06-11T10:30Z", 2) == expected


def test_six_fields_put_seconds_first() -> None:
    assert fires("30 */5 * * * *", "UTC", "2025-06-01T10:03:07Z", 2) == [
        "2025-06-01T10:05:30Z",
        "2025-06-01T10:10:30Z",
    ]
    assert fires("*/20 * * * * *", "UTC", "2025-06-01T10:03:07Z", 3) == [
        "2025-06-01T10:03:20Z",
        "2025-06-01T10:03:40Z",
        "2025-06-01T10:04:00Z",
    ]
    assert fires("0 0 2 * * *", "UTC", "2025-06-01T10:03:07Z", 1) == ["2025-06-02T02:00:00Z"]


def test_next_is_strictly_after_a_fire_time_and_after_any_zone() -> None:
    assert fires("*/5 * * * *", "UTC", "2025-06-01T10:05:00Z", 1) == ["2025-06-01T10:10:00Z"]
    just_before = at("2025-06-01T10:04:59.999999Z")
    assert fires("*/5 * * * *", "UTC", just_before, 1) == ["2025-06-01T10:05:00Z"]
    in_tokyo = datetime(2025, 6, 1, 19, 3, tzinfo=ZoneInfo("Asia/Tokyo"))  # 10:03Z
    assert fires("*/5 * * * *", "UTC", in_tokyo, 1) == ["2025-06-01T10:05:00Z"]


def test_validate_normalises() -> None:
    assert validate("  */5   *  * *\t* ") == "*/5 * * * *"
    assert validate("@Daily") == "@daily"
    assert validate("0  30 2 * * *") == "0 30 2 * * *"
    assert validate("0 0 * * 5#3,L5") == "0 0 * * 5#3,L5"


def test_validate_gives_one_string_per_expression() -> None:
    # 100,000 jobs on a few thousand expressions share their strings instead of copying them.
    assert validate(" ".join(["0", "3", "*", "*", "*"])) is validate("0 3 * * *")
    assert validate("@WEEKLY") == validate("@weekly") == "@weekly"


def test_interval_or_fixed_follows_the_minute_and_hour_fields() -> None:
    assert cron.is_interval("*/5 * * * *")
    assert cron.is_interval("0 * * * *")
    assert cron.is_interval("0 */2 * * *")
    assert cron.is_interval("@hourly")
    assert cron.is_interval("0 * 3 * * *")  # seconds first: minute '*'
    assert not cron.is_interval("30 2 * * *")
    assert not cron.is_interval("0,30 1-3 * * *")
    assert not cron.is_interval("@daily")
    assert not cron.is_interval("* 30 2 * * *")  # every second of 02:30, but minute/hour fixed


# --- validate(): one test per message ------------------------------------------------------


REFUSED = [
    ("61 2 * * *", "minute 61 is outside 0-59", EXPECTED_5),
    ("0 24 * * *", "hour 24 is outside 0-23", EXPECTED_5),
    ("0 0 32 * *", "day-of-month 32 is outside 1-31", EXPECTED_5),
    ("0 0 0 * *", "day-of-month 0 is outside 1-31", EXPECTED_5),
    ("0 0 * 13 *", "month 13 is outside 1-12", EXPECTED_5),
    ("0 0 * * 8", "day-of-week 8 is outside 0-7", EXPECTED_5),
    ("60 0 2 * * *", "second 60 is outside 0-59", EXPECTED_6),
    ("0 0 * JNA *", "month 'JNA' is not a number 1-12 or a name JAN-DEC", EXPECTED_5),
    ("0 0 * * FRY", "day-of-week 'FRY' is not a number 0-7 or a name SUN-SAT", EXPECTED_5),
    ("H * * * *", "minute 'H' is not a number 0-59", EXPECTED_5),
    ("*/0 * * * *", "minute step '0' in '*/0' must be a whole number of 1 or more", EXPECTED_5),
    ("1,,2 * * * *", "minute has an empty list entry", EXPECTED_5),
    ("0 -5 * * *", "hour '-5' is missing a number", EXPECTED_5),
    ("5-1 * * * *", "minute range 5-1 runs backwards; for a wrap write 5-59,0-1", EXPECTED_5),
    ("0 0 30 2 *", "it never fires: day-of-month '30' never occurs in month '2'", EXPECTED_5),
    (
        "0 0 */40 * 1#5",
        "it never fires: no date matches day-of-month '*/40', month '*' and day-of-week '1#5'",
        EXPECTED_5,
    ),
    ("0 0 * * 5L", "day-of-week '5L' is not supported: 'L5' means the last Friday", EXPECTED_5),
    ("0 0 * * 1#6", "day-of-week '1#6': the number after # must be 1-5", EXPECTED_5),
    ("0 0 1,15W * *", "day-of-month '15W': W must stand alone, not in a list", EXPECTED_5),
    ("0 0 L/2 * *", "day-of-month 'L/2': 'L' takes no step", EXPECTED_5),
    ("* * *", "3 fields given", EXPECTED_ANY),
    # peer syntax: Quartz, croniter
    (
        "? * * * *",
        "minute '?': '?' (Quartz's 'no specific value') is not cron; use '*'",
        EXPECTED_5,
    ),
    (
        "0 0 12 * * ?",
        "day-of-week '?': '?' (Quartz's 'no specific value') is not cron; use '*'",
        EXPECTED_6,
    ),
    (
        "0 0 LW * *",
        "day-of-month 'LW' (the last weekday of the month) is not supported: W takes a day "
        "number, e.g. '15W' for the weekday nearest the 15th; 'L' alone is the last day",
        EXPECTED_5,
    ),
    (
        "0 0 * * MON-FRI#1",
        "day-of-week 'MON-FRI#1': '#' takes one day, e.g. 'MON#1' or '1#1'",
        EXPECTED_5,
    ),
    ("0 0 * * *#2", "day-of-week '*#2': '#' takes one day, e.g. 'MON#1' or '1#1'", EXPECTED_5),
    ("0 0 1#2 * *", "day-of-month '1#2': '#' belongs in day-of-week, e.g. 'MON#1'", EXPECTED_5),
    (
        "0 0 12 * * ? 2027",
        "7 fields given: there is no year field (Quartz has one; cron does not)",
        EXPECTED_ANY,
    ),
    (
        "0 0 1 1 * 2027",
        "6 fields mean seconds first, so '2027' would be the day-of-week; "
        "it looks like a year, and there is no year field",
        EXPECTED_6,
    ),
    (
        "0 0 12 1 1 2026-2030",
        "6 fields mean seconds first, so '2026-2030' would be the day-of-week; "
        "it looks like a year, and there is no year field",
        EXPECTED_6,
    ),
    ("daily", "1 field given", EXPECTED_ANY),
    ("", "the expression is empty", EXPECTED_ANY),
    (
        "@reboot",
        "unknown macro '@reboot'",
        "one of @annually @daily @hourly @midnight @monthly @weekly @yearly",
    ),
]


@pytest.mark.parametrize(("expr", "why", "expected"), REFUSED)
def test_validate_rejects_with_an_actionable_message(expr: str, why: str, expected: str) -> None:
    with pytest.raises(CronError) as caught:
        validate(expr)
    assert (caught.value.value, caught.value.why, caught.value.expected) == (expr, why, expected)
    assert str(caught.value) == f"{expr!r}: {why}"


def test_no_message_blames_croniter_for_our_own_rules() -> None:
    for expr, _, _ in REFUSED:
        with pytest.raises(CronError) as caught:
            validate(expr)
        assert "croniter" not in str(caught.value) + caught.value.expected, expr


def test_next_fire_rejects_bad_expressions_too() -> None:
    with pytest.raises(CronError, match="minute 61 is outside 0-59"):
        next_fire("61 2 * * *", None, "UTC", at("2025-01-01T00:00Z"))


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "America", "../etc/passwd", "utc "])
def test_zone_rejects_unknown_zones(name: str) -> None:
    with pytest.raises(CronError) as caught:
        cron.zone(name)
    assert caught.value.why == "unknown time zone"
    assert caught.value.expected == "an IANA zone such as 'Europe/Berlin' or 'UTC'"


def test_zone_knows_iana_zones() -> None:
    assert cron.zone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert cron.zone("UTC") == ZoneInfo("UTC")


def test_exactly_one_schedule_and_an_aware_instant() -> None:
    with pytest.raises(CronError, match="exactly one"):
        next_fire(None, None, "UTC", at("2025-01-01T00:00Z"))
    with pytest.raises(CronError, match="exactly one"):
        next_fire("* * * * *", 5, "UTC", at("2025-01-01T00:00Z"))
    with pytest.raises(ValueError, match="naive"):
        next_fire("* * * * *", None, "UTC", datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        next_fire(None, 5, "UTC", datetime(2025, 1, 1))


# --- DST: Europe/Berlin ----------------------------------------------------------------------
# Spring 2025-03-30 at 01:00Z: 02:00 CET (+1) becomes 03:00 CEST (+2); 02:xx does not exist.
# Fall 2025-10-26 at 01:00Z: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.


def test_berlin_spring_interval_skips_the_nonexistent_hour() -> None:
    # croniter fires at 03:00 CEST here; 02:00 does not exist, so nothing fires until 04:00
    assert fires("0 */2 * * *", "Europe/Berlin", "2025-03-29T22:30Z", 3) == [
        "2025-03-29T23:00:00Z",  # 00:00 CET
        "2025-03-30T02:00:00Z",  # 04:00 CEST
        "2025-03-30T04:00:00Z",  # 06:00 CEST
    ]
    assert fires("*/30 * * * *", "Europe/Berlin", "2025-03-30T00:15Z", 3) == [
        "2025-03-30T00:30:00Z",  # 01:30 CET
        "2025-03-30T01:00:00Z",  # 03:00 CEST (02:00 and 02:30 do not exist)
        "2025-03-30T01:30:00Z",  # 03:30 CEST
    ]


def test_berlin_spring_fixed_time_in_the_gap_fires_once_after_it() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2025-03-29T12:00Z", 2) == [
        "2025-03-30T01:00:00Z",  # 03:00 CEST, the first instant after the gap
        "2025-03-31T00:30:00Z",  # 02:30 CEST
    ]
    # two nonexistent wall times, one fire
    assert fires("0,30 2 * * *", "Europe/Berlin", "2025-03-29T12:00Z", 3) == [
        "2025-03-30T01:00:00Z",
        "2025-03-31T00:00:00Z",
        "2025-03-31T00:30:00Z",
    ]


def test_berlin_fall_fixed_time_fires_at_the_first_pass_only() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2025-10-25T12:00Z", 2) == [
        "2025-10-26T00:30:00Z",  # 02:30 CEST
        "2025-10-27T01:30:00Z",  # 02:30 CET, the next day
    ]


def test_berlin_fall_interval_fires_in_both_passes() -> None:
    assert fires("*/30 2 * * *", "Europe/Berlin", "2025-10-25T12:00Z", 5) == [
        "2025-10-26T00:00:00Z",  # 02:00 CEST
        "2025-10-26T00:30:00Z",  # 02:30 CEST
        "2025-10-26T01:00:00Z",  # 02:00 CET
        "2025-10-26T01:30:00Z",  # 02:30 CET
        "2025-10-27T01:00:00Z",
    ]
    assert fires("@hourly", "Europe/Berlin", "2025-10-25T23:30Z", 3) == [
        "2025-10-26T00:00:00Z",  # 02:00 CEST
        "2025-10-26T01:00:00Z",  # 02:00 CET
        "2025-10-26T02:00:00Z",  # 03:00 CET
    ]


def test_berlin_six_fields_follow_the_same_rules() -> None:
    # fixed (minute and hour fixed), in the spring gap: once, at 03:00:00 CEST
    assert fires("30 0 2 * * *", "Europe/Berlin", "2025-03-29T12:00Z", 2) == [
        "2025-03-30T01:00:00Z",
        "2025-03-31T00:00:30Z",
    ]
    assert fires("*/20 30 2 * * *", "Europe/Berlin", "2025-03-29T12:00Z", 2) == [
        "2025-03-30T01:00:00Z",
        "2025-03-31T00:30:00Z",
    ]
    # fixed, fall: every 20 s of 02:30 CEST, not again in CET
    assert fires("*/20 30 2 * * *", "Europe/Berlin", "2025-10-26T00:29:50Z", 4) == [
        "2025-10-26T00:30:00Z",
        "2025-10-26T00:30:20Z",
        "2025-10-26T00:30:40Z",
        "2025-10-27T01:30:00Z",
    ]
    # interval (minute '*/30'), fall: both passes
    assert fires("0 */30 * * * *", "Europe/Berlin", "2025-10-26T00:15Z", 4) == [
        "2025-10-26T00:30:00Z",  # 02:30 CEST
        "2025-10-26T01:00:00Z",  # 02:00 CET
        "2025-10-26T01:30:00Z",  # 02:30 CET
        "2025-10-26T02:00:00Z",  # 03:00 CET
    ]


# --- DST: America/New_York -------------------------------------------------------------------
# Spring 2025-03-09 at 07:00Z: 02:00 EST (-5) becomes 03:00 EDT (-4).
# Fall 2025-11-02 at 06:00Z: 02:00 EDT becomes 01:00 EST; 01:xx happens twice.


def test_new_york_spring() -> None:
    assert fires("30 2 * * *", "America/New_York", "2025-03-08T12:00Z", 2) == [
        "2025-03-09T07:00:00Z",  # 03:00 EDT, the first instant after the gap
        "2025-03-10T06:30:00Z",  # 02:30 EDT
    ]
    assert fires("*/30 * * * *", "America/New_York", "2025-03-09T06:15Z", 3) == [
        "2025-03-09T06:30:00Z",  # 01:30 EST
        "2025-03-09T07:00:00Z",  # 03:00 EDT
        "2025-03-09T07:30:00Z",  # 03:30 EDT
    ]


def test_new_york_fall_fixed_time_fires_once() -> None:
    # croniter fires this twice: 01:30 EDT and 01:30 EST
    assert fires("30 1 * * *", "America/New_York", "2025-11-01T12:00Z", 2) == [
        "2025-11-02T05:30:00Z",  # 01:30 EDT
        "2025-11-03T06:30:00Z",  # 01:30 EST, the next day
    ]


def test_new_york_fall_interval_fires_in_both_passes() -> None:
    assert fires("*/30 * * * *", "America/New_York", "2025-11-02T04:50Z", 5) == [
        "2025-11-02T05:00:00Z",  # 01:00 EDT
        "2025-11-02T05:30:00Z",  # 01:30 EDT
        "2025-11-02T06:00:00Z",  # 01:00 EST
        "2025-11-02T06:30:00Z",  # 01:30 EST
        "2025-11-02T07:00:00Z",  # 02:00 EST
    ]


def test_new_york_start_inside_the_first_pass_of_the_repeated_hour() -> None:
    ny = ZoneInfo("America/New_York")
    first_pass = datetime(2025, 11, 2, 1, 40, tzinfo=ny, fold=0)  # 05:40Z
    assert first_pass.astimezone(UTC) == at("2025-11-02T05:40Z")
    # no wall time after 01:40 is due in the first pass; 01:00 EST (second pass) comes next
    assert fires("*/30 * * * *", "America/New_York", first_pass, 2) == [
        "2025-11-02T06:00:00Z",
        "2025-11-02T06:30:00Z",
    ]
    assert fires("*/10 * * * *", "America/New_York", first_pass, 3) == [
        "2025-11-02T05:50:00Z",  # 01:50 EDT
        "2025-11-02T06:00:00Z",  # 01:00 EST
        "2025-11-02T06:10:00Z",  # 01:10 EST
    ]
    # fixed: 01:30 already fired in the first pass and does not fire again
    assert fires("30 1 * * *", "America/New_York", first_pass, 1) == ["2025-11-03T06:30:00Z"]
    assert fires("0,20,40 1 * * *", "America/New_York", "2025-11-02T05:10Z", 3) == [
        "2025-11-02T05:20:00Z",
        "2025-11-02T05:40:00Z",
        "2025-11-03T06:00:00Z",
    ]


def test_new_york_start_inside_the_second_pass_of_the_repeated_hour() -> None:
    second_pass = datetime(2025, 11, 2, 1, 40, tzinfo=ZoneInfo("America/New_York"), fold=1)
    assert second_pass.astimezone(UTC) == at("2025-11-02T06:40Z")
    assert fires("*/30 * * * *", "America/New_York", second_pass, 2) == [
        "2025-11-02T07:00:00Z",  # 02:00 EST
        "2025-11-02T07:30:00Z",
    ]
    assert fires("*/10 * * * *", "America/New_York", second_pass, 1) == ["2025-11-02T06:50:00Z"]
    assert fires("45 1 * * *", "America/New_York", second_pass, 1) == ["2025-11-03T06:45:00Z"]


# --- DST: Australia/Lord_Howe (a 30-minute shift) ------------------------------------------
# Fall 2025-04-06 at 2025-04-05T15:00Z: 02:00 (+11) becomes 01:30 (+10:30); 01:30-02:00 twice.
# Spring 2025-10-05 at 2025-10-04T15:30Z: 02:00 (+10:30) becomes 02:30 (+11).


def test_lord_howe_fall() -> None:
    assert fires("45 1 * * *", "Australia/Lord_Howe", "2025-04-05T12:00Z", 2) == [
        "2025-04-05T14:45:00Z",  # 01:45 +11, the first pass
        "2025-04-06T15:15:00Z",  # 01:45 +10:30, the next day
    ]
    assert fires("*/15 * * * *", "Australia/Lord_Howe", "2025-04-05T14:20Z", 5) == [
        "2025-04-05T14:30:00Z",  # 01:30 +11
        "2025-04-05T14:45:00Z",  # 01:45 +11
        "2025-04-05T15:00:00Z",  # 01:30 +10:30
        "2025-04-05T15:15:00Z",  # 01:45 +10:30
        "2025-04-05T15:30:00Z",  # 02:00 +10:30
    ]


def test_lord_howe_spring() -> None:
    assert fires("15 2 * * *", "Australia/Lord_Howe", "2025-10-04T12:00Z", 2) == [
        "2025-10-04T15:30:00Z",  # 02:30 +11, the first instant after the gap
        "2025-10-05T15:15:00Z",  # 02:15 +11
    ]
    assert fires("*/15 * * * *", "Australia/Lord_Howe", "2025-10-04T15:10Z", 3) == [
        "2025-10-04T15:15:00Z",  # 01:45 +10:30
        "2025-10-04T15:30:00Z",  # 02:30 +11 (02:00 and 02:15 do not exist)
        "2025-10-04T15:45:00Z",  # 02:45 +11
    ]


# --- Pacific/Apia: 2011-12-30 never happened ------------------------------------------------
# At 2011-12-30T10:00Z, 2011-12-29 23:59:59 (-10) was followed by 2011-12-31 00:00 (+14).


def test_apia_daily_job_skips_the_missing_day_and_carries_on() -> None:
    got = fires("0 0 * * *", "Pacific/Apia", "2011-12-28T12:00Z", 3)
    assert got == [
        "2011-12-29T10:00:00Z",  # 29th 00:00 -10
        "2011-12-30T10:00:00Z",  # 31st 00:00 +14 (the 30th's midnight maps to the same instant)
        "2011-12-31T10:00:00Z",  # 2012-01-01 00:00 +14
    ]
    got = fires("0 9 * * *", "Pacific/Apia", "2011-12-28T12:00Z", 5)
    assert got == [
        "2011-12-28T19:00:00Z",  # 28th 09:00 -10
        "2011-12-29T19:00:00Z",  # 29th 09:00 -10
        "2011-12-30T10:00:00Z",  # 09:00 on the 30th never existed: the first instant after
        "2011-12-30T19:00:00Z",  # 31st 09:00 +14
        "2011-12-31T19:00:00Z",  # 2012-01-01 09:00 +14
    ]
    apia = ZoneInfo("Pacific/Apia")
    assert all(at(t).astimezone(apia).day != 30 for t in got)


def test_apia_interval_job_has_nothing_on_the_missing_day() -> None:
    assert fires("0 */6 * * *", "Pacific/Apia", "2011-12-30T03:00Z", 3) == [
        "2011-12-30T04:00:00Z",  # 29th 18:00 -10
        "2011-12-30T10:00:00Z",  # 31st 00:00 +14
        "2011-12-30T16:00:00Z",  # 31st 06:00 +14
    ]


# --- every_s ---------------------------------------------------------------------------------


def test_every_s_fires_on_multiples_since_the_epoch() -> None:
    assert next_fire(None, 30, "UTC", at("2025-06-01T10:00:10.5Z")) == at("2025-06-01T10:00:30Z")
    assert next_fire(None, 30, "UTC", at("2025-06-01T10:00:30Z")) == at("2025-06-01T10:01:00Z")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert next_fire(None, 7, "UTC", epoch + timedelta(seconds=14)) == epoch + timedelta(seconds=21)
    assert next_fire(None, 7, "UTC", epoch + timedelta(seconds=13.9)) == epoch + timedelta(
        seconds=14
    )


def test_every_s_fractional() -> None:
    assert next_fire(None, 0.5, "UTC", at("2025-06-01T10:00:00.2Z")) == at("2025-06-01T10:00:00.5Z")
    assert next_fire(None, 0.5, "UTC", at("2025-06-01T10:00:00.5Z")) == at("2025-06-01T10:00:01Z")
    assert next_fire(None, 1.5, "UTC", at("2025-06-01T10:00:00Z")) == at("2025-06-01T10:00:01.5Z")


def test_every_s_ignores_the_zone_and_dst() -> None:
    after = at("2025-10-26T00:20Z")  # 02:20 CEST, just before Berlin falls back
    got = fires_between(None, 3600, "Europe/Berlin", after, at("2025-10-26T03:00Z"), 10)
    assert got == [at("2025-10-26T01:00Z"), at("2025-10-26T02:00Z"), at("2025-10-26T03:00Z")]
    assert next_fire(None, 3600, "Europe/Berlin", after) == next_fire(None, 3600, "UTC", after)


@pytest.mark.parametrize("every_s", [0, -5, float("nan"), float("inf"), 1e-9])
def test_every_s_must_be_positive(every_s: float) -> None:
    with pytest.raises(CronError, match="positive number of seconds"):
        next_fire(None, every_s, "UTC", at("2025-01-01T00:00Z"))


# --- fires_between -----------------------------------------------------------------------------


def test_fires_between_is_half_open_and_oldest_first() -> None:
    got = fires_between(
        "*/5 * * * *", None, "UTC", at("2025-06-01T10:00Z"), at("2025-06-01T10:30Z"), 100
    )
    assert got == [at(f"2025-06-01T10:{m:02}Z") for m in (5, 10, 15, 20, 25, 30)]


def test_fires_between_keeps_the_newest_when_over_the_limit() -> None:
    got = fires_between(
        "*/5 * * * *", None, "UTC", at("2025-06-01T10:00Z"), at("2025-06-01T10:31Z"), 2
    )
    assert got == [at("2025-06-01T10:25Z"), at("2025-06-01T10:30Z")]


def test_fires_between_empty_cases() -> None:
    t = at("2025-06-01T10:00Z")
    assert fires_between("*/5 * * * *", None, "UTC", t, t, 10) == []
    assert fires_between("*/5 * * * *", None, "UTC", t, t - timedelta(hours=1), 10) == []
    assert fires_between("*/5 * * * *", None, "UTC", t, t + timedelta(minutes=4), 10) == []
    assert fires_between("*/5 * * * *", None, "UTC", t, t + timedelta(hours=1), 0) == []


def test_fires_between_across_a_repeated_hour() -> None:
    got = fires_between(
        "0 * * * *", None, "Europe/Berlin", at("2025-10-25T23:30Z"), at("2025-10-26T02:00Z"), 10
    )
    assert got == [at("2025-10-26T00:00Z"), at("2025-10-26T01:00Z"), at("2025-10-26T02:00Z")]


def test_fires_between_every_s_with_a_limit() -> None:
    got = fires_between(None, 0.5, "UTC", at("2025-06-01T10:00Z"), at("2025-06-01T10:00:10Z"), 3)
    assert got == [
        at("2025-06-01T10:00:09Z"),
        at("2025-06-01T10:00:09.5Z"),
        at("2025-06-01T10:00:10Z"),
    ]


def test_fires_between_10000_newest_of_43200_missed_quickly() -> None:
    after, until = at("2025-03-01T00:00Z"), at("2025-03-31T00:00Z")  # spans Berlin's spring
    started = time.perf_counter()
    got = fires_between("* * * * *", None, "Europe/Berlin", after, until, 10_000)
    elapsed = time.perf_counter() - started
    assert len(got) == 10_000
    assert got[-1] == until
    assert got[0] == until - timedelta(minutes=9_999)  # the gap is before: one fire per minute
    assert all(a < b for a, b in zip(got, got[1:]))
    assert elapsed < 10.0, f"{elapsed:.2f} s"  # a guard only; benchmarks/ measures
    # 10,000 ticks of an every-second schedule out of a year: the work stays near the limit
    started = time.perf_counter()
    got = fires_between("* * * * * *", None, "UTC", after, after + timedelta(days=365), 10_000)
    assert len(got) == 10_000 and got[-1] == after + timedelta(days=365)
    assert time.perf_counter() - started < 10.0


def test_fires_between_finds_rare_fires_far_back() -> None:
    got = fires_between(
        "0 0 29 2 *", None, "UTC", at("2001-01-01T00:00Z"), at("2025-01-01T00:00Z"), 3
    )
    assert got == [at("2016-02-29T00:00Z"), at("2020-02-29T00:00Z"), at("2024-02-29T00:00Z")]


def test_next_fire_is_cheap() -> None:
    """A scheduler computes first fires for 100,000 schedules at start: keep a call small."""
    start = at("2025-06-01T10:03:07Z")
    afters = [start + timedelta(seconds=7 * i) for i in range(10_000)]
    started = time.perf_counter()
    for after in afters:
        next_fire("*/5 * * * *", None, "Europe/Berlin", after)
    # A guard against a pathological regression only (about 0.1 s here); benchmarks/ measures.
    assert time.perf_counter() - started < 10.0


# --- properties --------------------------------------------------------------------------------

TRANSITIONS = {
    "Europe/Berlin": ["2025-03-30T01:00Z", "2025-10-26T01:00Z"],
    "America/New_York": ["2025-03-09T07:00Z", "2025-11-02T06:00Z"],
    "Australia/Lord_Howe": ["2025-04-05T15:00Z", "2025-10-04T15:30Z"],
    "Pacific/Apia": ["2011-12-30T10:00Z", "2012-03-31T14:00Z"],
    "America/St_Johns": ["2025-03-09T05:30Z", "2025-11-02T04:30Z"],
    "UTC": ["2025-06-01T00:00Z"],
    "Asia/Kolkata": ["2025-06-01T00:00Z"],
}
EXPRESSIONS = [
    "*/5 * * * *",
    "*/7 1,2 * * *",
    "0 */2 * * *",
    "15 * * * *",
    "* 2 * * *",
    "@hourly",
    "30 2 * * *",
    "30 1 * * *",
    "0,30 1-3 * * *",
    "45 0-3 * * *",
    "0 2 * * 1-5",
    "0 0 * * *",
    "20,40 2 * * *",
    "0 9 * * *",
]


def brute_force_fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in (start, end] by the crontab(5) reading that shares no code with cron.py."""
    return crontab_reference.fires(expr, tz, start, end, limit=1_000_000)


@st.composite
def near_a_transition(draw: st.DrawFn) -> tuple[str, datetime]:
    tz = draw(st.sampled_from(sorted(TRANSITIONS)))
    base = at(draw(st.sampled_from(TRANSITIONS[tz])))
    seconds = draw(st.integers(-6 * 3600, 6 * 3600))
    micro = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
    return tz, base + timedelta(seconds=seconds, microseconds=micro)


@settings(max_examples=250, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS + ["*/20 * * * * *", "0 */30 * * * *"]),
    where=near_a_transition(),
)
def test_property_next_fires_match_a_brute_force_reading_of_the_clock(
    expr: str, where: tuple[str, datetime]
) -> None:
    """Strictly after the start, matching in local time (or ending a gap), and none skipped."""
    tz, start = where
    first = next_fire(expr, None, tz, start)
    second = next_fire(expr, None, tz, first)
    assert start < first < second
    assert brute_force_fires(expr, tz, start, second) == [first, second]


@settings(max_examples=100, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS + ["*/20 * * * * *", "0 30 2 * * *", "0 */30 * * * *"]),
    where=near_a_transition(),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_property_next_is_stateless(
    expr: str, where: tuple[str, datetime], fraction: float
) -> None:
    """Any instant between a start and its next fire leads to that same fire."""
    tz, start = where
    first = next_fire(expr, None, tz, start)
    between = start + (first - start - timedelta(microseconds=1)) * fraction
    assert next_fire(expr, None, tz, between) == first
    # ...and so does the same instant written in the local zone
    assert next_fire(expr, None, tz, between.astimezone(ZoneInfo(tz))) == first


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    where=near_a_transition(),
    limit=st.integers(1, 6),
    hours=st.integers(1, 72),
)
def test_property_fires_between_is_next_fire_stepped(
    expr: str, where: tuple[str, datetime], limit: int, hours: int
) -> None:
    tz, start = where
    until = start + timedelta(hours=hours)
    stepped = []
    t = next_fire(expr, None, tz, start)
    while t <= until:
        stepped.append(t)
        t = next_fire(expr, None, tz, t)
    assert fires_between(expr, None, tz, start, until, limit) == stepped[-limit:]


@settings(max_examples=100, deadline=None)
@given(
    every_s=st.sampled_from([0.5, 1, 7, 30, 60, 90.25, 3600, 86400]),
    start=st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)),
)
def test_property_every_s(every_s: float, start: datetime) -> None:
    fire = next_fire(None, every_s, "Europe/Berlin", start)
    since_epoch = (fire - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
    assert since_epoch % round(every_s * 1_000_000) == 0
    assert start < fire <= start + timedelta(seconds=every_s)


# --- DST notes: what a transition does to a schedule ---------------------------------------
# Berlin 2027: spring forward 2027-03-28 at 01:00Z (02:00 CET -> 03:00 CEST), fall back
# 2027-10-31 at 01:00Z (03:00 CEST -> 02:00 CET). New York 2027: 2027-03-14 and 2027-11-07.

YEAR_FROM, YEAR_TO = at("2026-12-01T00:00Z"), at("2027-12-01T00:00Z")


def notes(expr: str, tz: str) -> list[str]:
    return [n.text() for n in cron.dst_notes(expr, tz, YEAR_FROM, YEAR_TO)]


def test_dst_notes_berlin_fixed_time_in_the_gap_and_the_repeated_hour() -> None:
    assert notes("0 2 * * *", "Europe/Berlin") == [
        "2027-03-28 02:00 does not exist; runs at 03:00 CEST",
        "2027-10-31 02:00 happens twice; runs once, at 02:00 CEST",
    ]


def test_dst_notes_two_wall_times_in_one_gap_fire_once() -> None:
    assert notes("0,30 2 * * *", "Europe/Berlin")[0] == (
        "2027-03-28 02:00, 02:30 do not exist; runs once, at 03:00 CEST"
    )
    assert notes("0,30 2 * * *", "Europe/Berlin")[1] == (
        "2027-10-31 02:00, 02:30 happen twice; runs once each, at 02:00 CEST and 02:30 CEST"
    )


def test_dst_notes_new_york_interval_schedule() -> None:
    assert notes("@hourly", "America/New_York") == [
        "2027-03-14 02:00 does not exist; does not run then",
        "2027-11-07 01:00 happens twice; runs in both passes, at 01:00 EDT and 01:00 EST",
    ]


def test_dst_notes_none_outside_the_transitions_or_without_dst() -> None:
    assert notes("0 3 * * *", "Europe/Berlin") == []  # 03:00 exists once on both days
    assert notes("0 2 * * *", "UTC") == []
    assert notes("0 2 * * *", "Asia/Kolkata") == []


def test_dst_notes_say_what_next_fire_does() -> None:
    for note in cron.dst_notes("30 2 * * *", "Europe/Berlin", YEAR_FROM, YEAR_TO):
        (fire,) = note.fires
        before = fire - timedelta(hours=2)
        assert next_fire("30 2 * * *", None, "Europe/Berlin", before) == fire


@settings(max_examples=80, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS + ["*/20 * * * * *", "0 30 2 * * *", "0 0 L * *"]),
    where=near_a_transition(),
    before_s=st.integers(0, 3 * 86400),
    hours=st.integers(1, 24 * 5),
)
def test_property_fire_instants_are_next_fire_stepped(
    expr: str, where: tuple[str, datetime], before_s: int, hours: int
) -> None:
    """The fast walk between offset changes gives exactly next_fire's fires, also across them."""
    tz, middle = where
    start = middle - timedelta(seconds=before_s)
    until = middle + timedelta(hours=hours)
    stepped = []
    t = next_fire(expr, None, tz, start)
    while t <= until:
        stepped.append(t)
        t = next_fire(expr, None, tz, t)
    got = cron.fire_instants_us(expr, None, tz, start, until)
    assert [datetime.fromtimestamp(us / 1e6, UTC) for us in got] == stepped


def test_fire_instants_of_an_interval_job() -> None:
    got = cron.fire_instants_us(
        None, 0.5, "UTC", at("2025-01-01T00:00Z"), at("2025-01-01T00:00:02Z")
    )
    base = int(at("2025-01-01T00:00Z").timestamp()) * 1_000_000
    assert got == [base + 500_000 * k for k in range(1, 5)]
