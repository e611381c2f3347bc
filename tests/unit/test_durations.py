"""parse_duration: what it accepts, and one test per message for what it refuses."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.durations import EXPECTED, parse_duration
from scheduler.errors import InvalidOption
from scheduler.model import format_seconds

EXPECTED_TEXT = "a positive duration: seconds (30, 0.5) or a string such as '90s', '5m', '1h30m'"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0.5, 0.5),
        ("90", 90.0),
        ("0.25", 0.25),
        ("90s", 90.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        (" 2h ", 7200.0),
        ("1H30M", 5400.0),
        ("1d", 86400.0),
        ("1d2h3m4s", 93784.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("90 s", 90.0),
    ],
)
def test_accepts(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_result_is_a_float() -> None:
    assert type(parse_duration(5)) is float


def refusal(value: object, option: str = "timeout") -> InvalidOption:
    with pytest.raises(InvalidOption) as info:
        parse_duration(value, option=option)  # type: ignore[arg-type]
    assert info.value.option == option
    assert info.value.expected == EXPECTED_TEXT
    if not (isinstance(value, float) and math.isnan(value)):
        assert info.value.value == value
    return info.value


def test_expected_text() -> None:
    assert EXPECTED == EXPECTED_TEXT


def test_zero() -> None:
    assert str(refusal(0)) == "invalid timeout 0: must be greater than zero"


def test_zero_string() -> None:
    assert str(refusal("0s")) == "invalid timeout '0s': must be greater than zero"


def test_negative_number() -> None:
    assert str(refusal(-1.5)) == "invalid timeout -1.5: must be greater than zero"


def test_negative_string() -> None:
    assert str(refusal("-5m")) == "invalid timeout '-5m': must be greater than zero"


def test_nan() -> None:
    assert str(refusal(float("nan"))) == "invalid timeout nan: not a finite number"


def test_infinity() -> None:
    assert str(refusal(float("inf"))) == "invalid timeout inf: not a finite number"


def test_int_too_large_for_a_float() -> None:
    assert refusal(10**400).why == "not a finite number"


def test_bool() -> None:
    assert str(refusal(True)) == "invalid timeout True: a boolean is not a duration"


def test_other_type() -> None:
    assert str(refusal([30])) == "invalid timeout [30]: a list is not a duration"


def test_empty_string() -> None:
    assert str(refusal("  ")) == "invalid timeout '  ': empty"


def test_words() -> None:
    assert str(refusal("soon")) == "invalid timeout 'soon': not a duration"


@pytest.mark.parametrize("text", ["nan", "inf", "infinity"])
def test_float_words_are_not_durations(text: str) -> None:
    assert refusal(text).why == "not a duration"


def test_unknown_unit() -> None:
    assert (
        str(refusal("5 min"))
        == "invalid timeout '5 min': unknown unit 'min' (units: d, h, m, s, ms)"
    )


def test_missing_unit() -> None:
    assert (
        str(refusal("1h30"))
        == "invalid timeout '1h30': missing a unit after 30 (units: d, h, m, s, ms)"
    )


@pytest.mark.parametrize("text", ["30m1h", "1h1h", "500ms1s"])
def test_units_out_of_order(text: str) -> None:
    assert refusal(text).why == "units must go from largest to smallest, each once, as in '1h30m'"


def test_option_name_is_in_the_message() -> None:
    assert str(refusal("0", option="every")) == "invalid every '0': must be greater than zero"


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_unit_sums(days: int, hours: int, minutes: int, seconds: int) -> None:
    text = f"{days}d{hours}h{minutes}m{seconds}s"
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total == 0:
        assert refusal(text).why == "must be greater than zero"
    else:
        assert parse_duration(text) == total


@given(st.integers(1, 10 * 86400) | st.sampled_from([0.5, 0.25, 1.5, 59.5]))
def test_reads_what_format_seconds_writes(seconds: float) -> None:
    assert parse_duration(format_seconds(seconds)) == seconds


def test_strings_read_before_are_refused_again_under_each_option() -> None:
    # Strings are read once and remembered: each refusal must still name its own option.
    for _ in range(2):
        assert (
            str(refusal("-5m", option="every")) == "invalid every '-5m': must be greater than zero"
        )
        assert str(refusal("-5m")) == "invalid timeout '-5m': must be greater than zero"
        assert (
            refusal("5x", option="misfire_grace").why == "unknown unit 'x' (units: d, h, m, s, ms)"
        )
        assert parse_duration("5m", option="every") == parse_duration("5m") == 300.0
