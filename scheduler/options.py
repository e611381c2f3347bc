"""Every option of `@job` and `command`, declared once, and the checks of what was written.

`CommandOptions` and `JobOptions` are the declaration: one entry per option, its type as
written in a job file, and in its `Option` the JobSpec field it fills, its check and its
documentation. The default is the JobSpec field's (model.py), or a setting of the load (`tz`,
`timeout`). Everything else is derived from it: the keywords of `job()` and `command()`
(`**options: Unpack[...]`, so type checkers and editors know them), the checks the loader runs
and the key under which a load remembers checked values (api.py), the unknown-option hint,
README's option table (`python -m scheduler.options` prints it; a test compares) and the
option columns of `sched list --json`. Writing None for an option means its default.

Adding an option, `memory_limit` say, is one entry in CommandOptions:

    memory_limit: Annotated[
        str | int,
        Option(_size, "the most memory a run may use: `512M`, `2G`", field="memory_limit_bytes"),
    ]

plus the code that uses it: the JobSpec field it fills (`memory_limit_bytes: int | None =
None`, whose default is the option's), the check (`_size`, raising InvalidOption), and what
reads `spec.memory_limit_bytes`. tests/unit/test_loader.py fails until README's table has
the new row and JobSpec the new field.
"""

# No `from __future__ import annotations`: the declaration's annotations are read at import,
# and evaluating them from strings would compile each one.
import dataclasses
import difflib
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, TypedDict, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from scheduler import cron
from scheduler.durations import parse_duration
from scheduler.errors import InvalidOption
from scheduler.model import RETRYABLE, Catchup, JobSpec, Overlap, format_seconds

Check = Callable[[str, Any], Any]
"""A check: (option name, value as written) -> the JobSpec value, or raise InvalidOption."""

Hook = str | list[str] | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Option:
    """What the declaration says about one option besides its name and written type."""

    check: Check | None
    """Turns the written value into the JobSpec value; None: the definition reads it itself."""
    doc: str
    """README's description of the option (Markdown)."""
    field: str = ""
    """The JobSpec field it fills (default: the option's name)."""
    setting: str | None = None
    """The load setting that gives its value when it is not written (api.Collector's field)."""
    default: str | None = None
    """README's default, when the JobSpec field's would not say it; `{}` is that default."""
    listed: bool = True
    """Shown by `sched list --json` under the field's name (not: secrets, already shown)."""
    show: Callable[[Any], str] = str
    """A value as people read it."""
    name: str = ""
    """The keyword (filled in from the declaration)."""

    def default_value(self) -> Any:
        """The JobSpec field's default (dataclasses.MISSING for a field without one)."""
        return _SPEC_FIELDS[self.field].default

    def default_text(self) -> str:
        """The default as README's table shows it."""
        value = self.default_value()
        if value is None or value is dataclasses.MISSING:
            shown = "-"
        else:
            shown = "`" + (self.show(value) or '""') + "`"
        return self.default.format(shown) if self.default is not None else shown


# -- checks -----------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_NAME_EXPECTED = "letters, digits, '.', '_' and '-' only, e.g. {example}"
HOOK_EXPECTED = (
    "expected an http(s) URL or a command as a list of strings, "
    "e.g. {option}='https://alerts.example.com/sched' or {option}=['notify-send', 'sched']"
)


def check_name(option: str, value: object, *, example: str) -> str:
    """A job or queue name: non-empty letters, digits, '.', '_', '-'; else InvalidOption."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    expected = _NAME_EXPECTED.format(example=example)
    if not isinstance(value, str):
        raise InvalidOption(option, value, f"a {type(value).__name__} is not a name", expected)
    if not value:
        raise InvalidOption(option, value, "empty", expected)
    bad = sorted({ch for ch in value if not _NAME.fullmatch(ch)})
    if bad:
        why = "contains " + ", ".join(repr(ch) for ch in bad)
        raise InvalidOption(option, value, why, expected)
    return value


def is_name(value: str) -> bool:
    """Whether `value` may be a job name as it is."""
    return _NAME.fullmatch(value) is not None


def check_cron(value: object) -> str:
    """A cron expression normalised by cron.validate, or InvalidOption('cron', ...)."""
    if not isinstance(value, str):
        why = f"a {type(value).__name__} is not a cron expression"
        raise InvalidOption("cron", value, why, "a string such as '*/5 * * * *' or '@daily'")
    try:
        return cron.validate(value)
    except cron.CronError as exc:
        raise InvalidOption("cron", value, exc.why, exc.expected) from None


def check_tz(value: object) -> str:
    """An IANA zone name that zoneinfo knows, or InvalidOption('tz', ...)."""
    if not isinstance(value, str):
        why = f"a {type(value).__name__} is not a zone name"
        raise InvalidOption("tz", value, why, "an IANA zone such as 'Europe/Berlin' or 'UTC'")
    try:
        cron.zone(value)
    except cron.CronError as exc:
        raise InvalidOption("tz", value, exc.why, exc.expected) from None
    return value


E = TypeVar("E", bound=StrEnum)


def check_choice(option: str, value: object, choices: type[E]) -> E:
    """One of the values of a StrEnum, or InvalidOption listing them all."""
    if isinstance(value, str):
        try:
            return choices(value)
        except ValueError:
            pass
    allowed = [member.value for member in choices]
    expected = "one of " + ", ".join(repr(a) for a in allowed)
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), allowed, n=1)
        if close:
            expected += f"; did you mean {close[0]!r}?"
    why = f"not a known {option} policy"
    raise InvalidOption(option, value, why, expected)


def check_count(option: str, value: object, *, minimum: int) -> int:
    """A whole number >= minimum (not a bool), or InvalidOption."""
    expected = f"a whole number, {minimum} or more, e.g. {option}={max(minimum, 2)}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(option, value, "not a whole number", expected)
    if value < minimum:
        raise InvalidOption(option, value, f"must be {minimum} or more", expected)
    return value


def check_retry_on(option: str, value: object) -> tuple[str, ...]:
    """Statuses that earn a retry: some of failed, timed-out, lost."""
    items = (value,) if isinstance(value, str) else value
    expected = f"some of {', '.join(repr(s) for s in RETRYABLE)}, e.g. {option}=['failed']"
    if not isinstance(items, list | tuple) or not items:
        raise InvalidOption(option, value, "not a status or a list of them", expected)
    for item in items:
        if item not in RETRYABLE:
            raise InvalidOption(option, value, f"{item!r} cannot be retried", expected)
    return tuple(dict.fromkeys(str(item) for item in items))


def check_description(option: str, value: object) -> str:
    """A description is any string."""
    if not isinstance(value, str):
        raise InvalidOption(option, value, f"a {type(value).__name__}", "a string")
    return value


ENV_ON_FAILURE = "SCHED_ON_FAILURE"
ENV_ON_LATE = "SCHED_ON_LATE"
_ENV_EXPECTED = (
    "expected an http(s) URL or a command line, "
    "e.g. {option}=https://alerts.example.com/sched or {option}='notify-send sched'"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def hook_from_env(
    name: str, environ: Mapping[str, str] | None = None
) -> str | tuple[str, ...] | None:
    """The hook in environment variable `name` (a URL or a shlex-split command line), or None."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return None
    expected = _ENV_EXPECTED.format(option=name)
    if _SCHEME.match(raw):
        return check_hook(name, raw, expected=expected)
    try:
        argv = shlex.split(raw)
    except ValueError as exc:
        raise InvalidOption(name, raw, f"not a command line: {exc}", expected) from None
    return check_hook(name, argv, expected=expected)


def check_hook(option: str, value: object, *, expected: str | None = None) -> str | tuple[str, ...]:
    """An alert hook: an http(s) URL, or a command as a non-empty list of strings (a tuple)."""
    expected = expected or HOOK_EXPECTED.format(option=option)
    if isinstance(value, str):
        return _check_hook_url(option, value, expected)
    if not isinstance(value, list | tuple):
        why = f"a {type(value).__name__} is neither a URL nor a command"
        raise InvalidOption(option, value, why, expected)
    if not value:
        raise InvalidOption(option, value, "an empty command", expected)
    wrong = [item for item in value if not isinstance(item, str)]
    if wrong:
        raise InvalidOption(option, value, f"{wrong[0]!r} is not a string", expected)
    if not value[0]:
        raise InvalidOption(option, value, "the program name is empty", expected)
    return tuple(value)


def check_url(option: str, value: object) -> str:
    """An http(s) URL (a ping or heartbeat URL), or InvalidOption."""
    expected = f"expected an http(s) URL, e.g. {option}=https://hc-ping.com/<uuid>"
    if not isinstance(value, str):
        raise InvalidOption(option, value, f"a {type(value).__name__} is not a URL", expected)
    if "://" not in value:
        raise InvalidOption(option, _mask_password(value), "not a URL", expected)
    return _check_hook_url(option, value, expected)


def _check_hook_url(option: str, value: str, expected: str) -> str:
    # Problems are printed by `sched check` and land in CI logs: never show a password.
    shown = _mask_password(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        # Not urllib's text: it quotes the "port", which may be part of a password.
        why = "not a valid URL: its port is not a number or its host is malformed"
        raise InvalidOption(option, shown, why, expected) from None
    scheme = parts.scheme.lower()
    if "://" not in value:
        why = "a single string that is not a URL, but commands run without a shell"
        expected += " (shlex.split turns a command line into a list)"
    elif scheme not in ("http", "https"):
        why = f"scheme {scheme!r} is not http or https"
    elif not parts.hostname:
        why = "the URL has no host"
    elif any(ch.isspace() or not ch.isprintable() for ch in value):
        why = "the URL contains whitespace or control characters"
    else:
        return value
    raise InvalidOption(option, shown, why, expected)


def _mask_password(url: str) -> str:
    """The URL with any password replaced by `***`, for messages about malformed URLs too."""
    # Not urls.mask_url, which stops at the first '/': a malformed URL may hold an unencoded
    # '/' (or '@') in its password, so the last '@' is used; an '@' in the query may hide more
    # than the password, which is the safe side.
    head, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{head}://{userinfo.split(':', 1)[0]}:***@{host}"


def _duration(option: str, value: object) -> float:
    return parse_duration(value, option=option)  # type: ignore[arg-type]


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Below this a Python interpreter cannot even start its job.
MIN_MEMORY_LIMIT = 32 << 20


def _size(option: str, value: object) -> int:
    """A memory size: bytes as an int, or `512M`, `2G`, `1.5G` (powers of 1024)."""
    expected = "a size such as `512M` or `2G` (K, M, G, T are powers of 1024), at least 32M"
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match:
        size = int(float(match[1]) * _SIZE_UNITS[match[2].upper()])
    else:
        raise InvalidOption(option, value, "not a size", expected)
    if size < MIN_MEMORY_LIMIT:
        raise InvalidOption(option, value, "too small for a run to start", expected)
    return size


def format_size(size: int) -> str:
    """A size as people write it: 536870912 -> '512M'."""
    for unit in ("T", "G", "M", "K"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


def _choice(choices: type[StrEnum]) -> Check:
    return lambda option, value: check_choice(option, value, choices)


def _count(minimum: int) -> Check:
    return lambda option, value: check_count(option, value, minimum=minimum)


def _name(example: str) -> Check:
    return lambda option, value: check_name(option, value, example=example)


def _tz(option: str, value: object) -> str:
    return check_tz(value)


def _statuses(value: Sequence[str]) -> str:
    return ", ".join(value)


# -- the declaration --------------------------------------------------------------------------

_HOOK = (
    "an `https://` webhook (POST, JSON body with the run record) or a command (argv list, JSON "
    "on stdin)"
)


class CommandOptions(TypedDict, total=False):
    """The keyword options of `command()`, and of `@job` but for `name`."""

    every: Annotated[
        str | float | None,
        Option(None, 'an interval instead of a cron schedule: `30`, `"30s"`, `"1h"`', "every_s"),
    ]
    tz: Annotated[
        str | None,
        Option(_tz, "IANA zone of the schedule", setting="tz", default="`SCHED_TZ`, else {}"),
    ]
    timeout: Annotated[
        str | float | None,
        Option(
            _duration,
            '`30`, `"90s"`, `"5m"`, `"1h30m"`; every run has one',
            "timeout_s",
            setting="timeout_s",
            default="`--default-timeout`, else {}",
            show=format_seconds,
        ),
    ]
    overlap: Annotated[
        str | None,
        Option(
            _choice(Overlap),
            "while an earlier run is queued or running: `skip` (recorded `skipped`), `allow`, "
            "`queue` (at most one waiting), `replace` (the running one is stopped, reason "
            "`replaced`)",
        ),
    ]
    catchup: Annotated[
        str | None,
        Option(
            _choice(Catchup),
            "fires missed while no scheduler ran: `latest` (run the newest), `none`, `all` (up "
            "to `catchup_limit`); dropped fires are recorded `missed`",
        ),
    ]
    catchup_limit: Annotated[
        int | None, Option(_count(1), 'how many missed fires `catchup="all"` runs at most')
    ]
    retries: Annotated[
        int | None,
        Option(
            _count(0),
            "attempts after a status in `retry_on`; each attempt is its own record "
            "(`job@instant#2`, trigger `retry`, `retry_of`)",
        ),
    ]
    retry_backoff: Annotated[
        str | float | None,
        Option(
            _duration,
            "delay before the first retry, doubling for each next one, with jitter",
            "retry_backoff_s",
            show=format_seconds,
        ),
    ]
    retry_on: Annotated[
        str | list[str] | tuple[str, ...] | None,
        Option(check_retry_on, "the statuses that earn a retry", show=_statuses),
    ]
    misfire_grace: Annotated[
        str | float | None,
        Option(
            _duration,
            "a scheduled run that cannot start within this of its fire time is recorded "
            "`missed` instead",
            "misfire_grace_s",
            default="no limit",
            show=format_seconds,
        ),
    ]
    queue: Annotated[
        str | None,
        Option(_name("queue='heavy'"), "which workers take it (`sched worker --queue heavy`)"),
    ]
    description: Annotated[
        str | None,
        # Not listed: `sched list --json` has "description" for the schedule in words.
        Option(check_description, "what the job is for, in words", listed=False),
    ]
    on_failure: Annotated[
        Hook | None,
        Option(
            check_hook,
            f"alert hook for a last attempt that ended failed, timed-out, killed or lost: {_HOOK}",
            default=f"`{ENV_ON_FAILURE}`",
            listed=False,  # a webhook URL may hold a password
        ),
    ]
    on_late: Annotated[
        Hook | None,
        Option(
            check_hook,
            "alert hook for a run not started within `misfire_grace` or running past "
            f"`expected_duration`: {_HOOK}",
            default=f"`{ENV_ON_LATE}`",
            listed=False,
        ),
    ]
    ping: Annotated[
        str | None,
        Option(
            check_url,
            "a healthchecks.io check URL: the scheduler GETs `<url>/start` when it sees a run "
            "running, `<url>` when its last attempt completed, `<url>/fail` when it ended "
            "failed, timed-out, killed or lost, each with `?rid=` the run's UUID",
            "ping_url",
            default="none",
            listed=False,  # a check URL lets anyone ping it
        ),
    ]
    expected_duration: Annotated[
        str | float | None,
        Option(
            _duration,
            "a run still running after this is late (`on_late`)",
            "expected_duration_s",
            default="none",
            show=format_seconds,
        ),
    ]
    memory_limit: Annotated[
        str | int | None,
        Option(
            _size,
            "the most memory one run may allocate: `512M`, `2G` (the horse's data limit, "
            "and its cgroup's `memory.max` where the memory controller is enabled)",
            "memory_limit_bytes",
            default="none",
            show=format_size,
        ),
    ]


class _Named(TypedDict, total=False):
    name: Annotated[
        str | None,
        Option(
            None,
            "the job's name: letters, digits, `.`, `_`, `-`; unique (`command()` takes it first)",
            default="`module.function` in the jobs folder",
            listed=False,  # `sched list` shows it as "job"
        ),
    ]


class JobOptions(_Named, CommandOptions, total=False):
    """The keyword options of `@job`: `name` and those of `command()`."""


def _declared() -> tuple[Option, ...]:
    out = []
    for name, hint in get_type_hints(JobOptions, include_extras=True).items():
        (option,) = (m for m in hint.__metadata__ if isinstance(m, Option))
        out.append(dataclasses.replace(option, name=name, field=option.field or name))
    return tuple(out)


_SPEC_FIELDS = {f.name: f for f in dataclasses.fields(JobSpec)}
OPTIONS: tuple[Option, ...] = _declared()
"""Every option, in the order of the declaration."""
CHECKED: tuple[Option, ...] = tuple(o for o in OPTIONS if o.check is not None)
"""The options the generic checks read (not `every` and `name`: the definition reads those)."""
NAMES: tuple[str, ...] = ("schedule", *(o.name for o in OPTIONS))
"""What can be written in a definition, for the unknown-option hint."""

SCHEDULE_DOC = (
    "5-field cron (names, ranges, steps, lists, `L`, `W`, `#`), `@hourly @daily @weekly "
    "@monthly @yearly`, or 6 fields with seconds first; the first argument (`command()`: the "
    "second)"
)


def listed(spec: JobSpec) -> dict[str, Any]:
    """The listed options of a spec as JSON values, by JobSpec field (`sched list --json`)."""
    out: dict[str, Any] = {}
    for option in OPTIONS:
        if option.listed:
            value = getattr(spec, option.field)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, StrEnum):
                value = value.value
            out[option.field] = value
    return out


def listed_schema() -> dict[str, dict[str, Any]]:
    """JSON Schema properties of what `listed` returns, from the JobSpec fields' types."""
    hints = get_type_hints(JobSpec)
    return {o.field: _json_schema(hints[o.field]) for o in OPTIONS if o.listed}


def _json_schema(hint: Any) -> dict[str, Any]:
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) in (Union, UnionType):  # X | None: the one other type, or null
        (inner,) = args
        schema = _json_schema(inner)
        return {**schema, "type": [schema["type"], "null"]}
    if get_origin(hint) is tuple:
        return {"type": "array", "items": _json_schema(args[0])}
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return {"type": "string", "enum": [member.value for member in hint]}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[hint]}


def markdown_table() -> str:
    """README's option table, from the declaration."""
    rows = ["| option | default | meaning |", "|---|---|---|", f"| schedule | - | {SCHEDULE_DOC} |"]
    rows += [f"| `{o.name}` | {o.default_text()} | {o.doc} |" for o in OPTIONS]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
