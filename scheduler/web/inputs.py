"""Query parameters read the way the CLI reads its options, with errors that say what to give."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from scheduler.durations import parse_duration
from scheduler.errors import InvalidOption
from scheduler.model import RunStatus

MAX_LIMIT = 10_000


class BadInput(ValueError):
    """A query parameter that cannot be used; the message names it and what is expected."""


def parse_when(value: str | None, name: str) -> datetime | None:
    """`2h` (that long ago), or an ISO time with an offset; None when not given."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        if moment.tzinfo is None:
            raise BadInput(f"{name} {value!r} has no offset; add Z or +01:00")
        return moment.astimezone(UTC)
    try:
        seconds = parse_duration(value, option=name)
        return datetime.now(UTC) - timedelta(seconds=seconds)
    except (InvalidOption, OverflowError):
        raise BadInput(
            f"{name} {value!r}: expected a duration such as 2h or 30m, or an ISO time"
        ) from None


def parse_statuses(values: Sequence[str]) -> list[RunStatus]:
    """Run statuses by their names."""
    out = []
    for value in values:
        try:
            out.append(RunStatus(value))
        except ValueError:
            names = ", ".join(str(s) for s in RunStatus)
            raise BadInput(f"status {value!r}: expected one of {names}") from None
    return out


def parse_limit(
    value: str | None, name: str, *, default: int, low: int = 1, high: int = MAX_LIMIT
) -> int:
    """A whole number in [low, high]."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadInput(f"{name} {value!r}: expected a whole number") from None
    if not low <= number <= high:
        raise BadInput(f"{name} {number}: expected {low} to {high}")
    return number


def parse_zone(value: str | None) -> str | None:
    """An IANA zone name, checked; None when not given."""
    if not value:
        return None
    from scheduler import cron

    try:
        cron.zone(value)
    except (cron.CronError, ValueError):
        raise BadInput(f"tz {value!r}: expected an IANA zone such as Europe/Berlin") from None
    return value
