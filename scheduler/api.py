"""The public way to define jobs: `@job(...)` for a function, `command(...)` for a program.

Every option is checked where it is written, and a problem names that line. While the loader
imports a jobs folder, definitions go to its collector so that every problem of every file is
reported together; outside the loader a bad definition raises DefinitionError at once.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import inspect
import os
import sys
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType, FunctionType
from typing import Any, TypeVar, Unpack, cast

from scheduler.durations import parse_duration
from scheduler.errors import DefinitionError, InvalidOption, Problem
from scheduler.model import DEFAULT_TZ, JobSpec
from scheduler.options import (
    CHECKED,
    NAMES,
    CommandOptions,
    JobOptions,
    Option,
    check_cron,
    check_name,
    check_tz,
    is_name,
)

F = TypeVar("F", bound=Callable[..., Any])

_SCHEDULE_EXAMPLE = "e.g. '*/5 * * * *' for a cron schedule or every='30s'"
_KNOWN = frozenset(NAMES)


def default_tz() -> str:
    """The zone of jobs that name none: `SCHED_TZ`, else UTC."""
    return os.environ.get("SCHED_TZ") or DEFAULT_TZ


def display_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the current directory when under it."""
    return _display_path(str(path), os.getcwd())


def _line_of(frame: FrameType) -> int:
    """The frame's current line.

    `frame.f_lineno` scans the code's line table from its start on every call, which made
    a generated file of 20,000 definitions take 19 s to load; a table per code object,
    searched by instruction offset, keeps each lookup short.
    """
    starts, lines = _line_table(frame.f_code)
    index = bisect.bisect_right(starts, frame.f_lasti) - 1
    line = lines[index] if index >= 0 else -1
    return line if line >= 0 else frame.f_lineno


def _line_table(code: CodeType) -> tuple[array[int], array[int]]:
    # Kept for the code object seen last (found by identity: hashing a code object costs as
    # much as its size); consecutive definitions come from the same module. Only the offsets
    # where the line changes, in arrays (-1: no line): for a module of 100,000 definitions,
    # 7 MB where lists of every entry took 114 MB.
    if _last_table[0] is not code:
        starts, lines = array("l"), array("l")
        last = -2
        for start, _end, line in code.co_lines():
            line = -1 if line is None else line
            if line != last:
                starts.append(start)
                lines.append(line)
                last = line
        _last_table[:] = [code, (starts, lines)]
    return _last_table[1]  # type: ignore[no-any-return]


_last_table: list[Any] = [None, (array("l"), array("l"))]


@functools.lru_cache(maxsize=4096)
def _display_path(path: str, cwd: str) -> str:
    # Cached: every definition in a file asks for the same path (100,000 jobs load faster).
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except (ValueError, OSError):  # not under it, or the current directory is gone
        return str(absolute)


@dataclass
class Collector:
    """What the loader gathers while it imports a jobs folder."""

    root: Path
    # The load's settings: the values of the options that name them (options.Option.setting).
    tz: str
    timeout_s: float
    specs: list[JobSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Memos that make 100,000 definitions fast to check; they belong to one load and go with
    # it. Checked option values by what was written (see _checked_options):
    validated: dict[tuple[object, ...], dict[str, Any]] = field(default_factory=dict)
    # Whether f() binds, for callables only inspect can tell about, by id (the callable is
    # kept with its verdict so that its id cannot be reused meanwhile):
    binds: dict[int, tuple[object, bool]] = field(default_factory=dict)
    # The dotted module of each defining file (None: outside the folder):
    modules: dict[str, str | None] = field(default_factory=dict)


_active: ContextVar[Collector | None] = ContextVar("sched_collector", default=None)


@contextmanager
def collecting(collector: Collector) -> Iterator[Collector]:
    """Send every definition made inside the block to `collector` instead of raising."""
    token = _active.set(collector)
    try:
        yield collector
    finally:
        _active.reset(token)


def job(schedule: str | None = None, **options: Unpack[JobOptions]) -> Callable[[F], F]:
    """Define a job that runs the decorated function; the function is returned unchanged.

    The options are scheduler/options.py's JobOptions (README's "Defining jobs" table).
    """
    frame = sys._getframe(1)
    where = (frame.f_code.co_filename, _line_of(frame))
    del frame
    if callable(schedule):
        # Written as a bare `@job`: the "schedule" is the function itself.
        func = schedule
        problem = Problem(
            display_path(where[0]),
            where[1],
            None,
            f"@job needs a schedule: write @job('*/5 * * * *') above {_func_name(func)}()",
            "expected @job(SCHEDULE, ...) or @job(every='30s', ...)",
        )
        _submit(None, [problem])
        return func
    written = cast(dict[str, Any], options)

    def decorate(func: F) -> F:
        spec, problems = _define(where, schedule, written, func=func, argv=None)
        _submit(spec, problems)
        return func

    return decorate


def command(
    name: str,
    schedule: str | None = None,
    argv: list[str] | tuple[str, ...] | None = None,
    **options: Unpack[CommandOptions],
) -> JobSpec | None:
    """Define a job that runs an external program (argv, no shell); None if it has problems.

    The options are scheduler/options.py's CommandOptions (README's "Defining jobs" table).
    """
    frame = sys._getframe(1)
    where = (frame.f_code.co_filename, _line_of(frame))
    del frame
    written: dict[str, Any] = {**options, "name": name}
    spec, problems = _define(where, schedule, written, func=None, argv=argv)
    _submit(spec, problems)
    return spec


def _submit(spec: JobSpec | None, problems: list[Problem]) -> None:
    collector = _active.get()
    if collector is None:
        if problems:
            raise DefinitionError(problems)
        return
    collector.problems.extend(problems)
    if spec is not None:
        collector.specs.append(spec)


class _Checker:
    """Runs option checks for one definition, turning each failure into a Problem."""

    def __init__(self, path: str, line: int) -> None:
        self.path = path
        self.line = line
        self.job: str | None = None
        self.problems: list[Problem] = []

    def add(self, message: str, expected: str | None = None, *, job: bool = True) -> None:
        self.problems.append(
            Problem(self.path, self.line, self.job if job else None, message, expected)
        )

    def invalid(self, exc: InvalidOption, *, job: bool = True) -> None:
        self.add(str(exc), expected_line(exc.expected), job=job)

    def check(self, validate: Callable[[Any], Any], value: object) -> Any:
        """`validate(value)`, or None after recording the InvalidOption it raised."""
        try:
            return validate(value)
        except InvalidOption as exc:
            self.invalid(exc)
            return None


def expected_line(text: str | None) -> str | None:
    """The second line of a problem: 'expected ...' (texts may or may not start with it)."""
    if not text:
        return None
    return text if text.startswith("expected") else f"expected {text}"


def _define(
    where: tuple[str, int],
    schedule: object,
    options: dict[str, Any],
    *,
    func: Callable[..., Any] | None,
    argv: object,
) -> tuple[JobSpec | None, list[Problem]]:
    path, line = display_path(where[0]), where[1]
    checker = _Checker(path, line)
    collector = _active.get()
    checker.job = _check_name(checker, options.get("name"), func, where[0], collector)
    if not _KNOWN.issuperset(options):
        _check_unknown(checker, [key for key in options if key not in _KNOWN])
    if func is not None:
        _check_callable(checker, func, collector)
    checked_argv = _check_argv(checker, argv) if func is None else None
    cron_expr, every_s = _check_schedule(checker, schedule, options.get("every"))
    values = _checked_options(checker, options, collector)
    if checker.problems or checker.job is None:
        return None, checker.problems
    spec = JobSpec(
        name=checker.job,
        path=path,
        line=line,
        cron=cron_expr,
        every_s=every_s,
        func=func,
        argv=checked_argv,
        **values,
    )
    return spec, []


def _checked_options(
    checker: _Checker, options: dict[str, Any], collector: Collector | None
) -> dict[str, Any]:
    """The option values; in a load, definitions that write them alike are checked once."""
    if collector is None:
        return _check_options(checker, options, collector)
    key = _options_key(options)
    values = collector.validated.get(key) if key is not None else None
    if values is None:
        before = len(checker.problems)
        values = _check_options(checker, options, collector)
        valid = len(checker.problems) == before
        if key is not None and valid and len(collector.validated) < _MEMO_MAX:
            collector.validated[key] = values
    return values


# Entries per memo of a load: distinct option sets are usually few (100,000 generated jobs may
# share a handful); the cap bounds the memory of a folder where each job is different.
_MEMO_MAX = 10_000
_CHECKED_NAMES = tuple(option.name for option in CHECKED)


def forget_validated() -> None:
    """Drop what checking keeps between definitions (the loader calls it after a load)."""
    # The line table of the last defining module: for a generated module of 100,000 jobs,
    # its code object and table are tens of MB that nothing else needs after the load.
    _last_table[:] = [None, (array("l"), array("l"))]


def _options_key(options: dict[str, Any]) -> tuple[object, ...] | None:
    """What the option checks of a load depend on, or None when it cannot be a dict key."""
    written = tuple(map(options.get, _CHECKED_NAMES))  # every option the checks read
    # The types too: 1, 1.0 and True are equal keys but not equally valid values.
    key = (written, tuple(map(type, written)))
    try:
        hash(key)
    except TypeError:  # retry_on=['failed'] or a hook command: lists, read as tuples
        key = (tuple(tuple(v) if isinstance(v, list) else v for v in written), key[1])
        try:
            hash(key)
        except TypeError:
            return None
    return key


def _check_name(
    checker: _Checker,
    name: object,
    func: Callable[..., Any] | None,
    filename: str,
    collector: Collector | None,
) -> str | None:
    if name is not None:
        try:
            return check_name("name", name, example="name='nightly-backup'")
        except InvalidOption as exc:
            checker.invalid(exc, job=False)
            return None
    if func is None:
        checker.add("a command needs a name", "expected command('pg-dump', SCHEDULE, ARGV)")
        return None
    default = f"{_module_of(func, filename, collector)}.{_func_name(func)}"
    if is_name(default):
        return default
    checker.add(
        f"cannot use {default!r} as the job name: it may only have letters, digits, '.', '_', '-'",
        "expected an explicit name, e.g. @job(..., name='nightly-backup')",
        job=False,
    )
    return None


def _module_of(func: Callable[..., Any], filename: str, collector: Collector | None) -> str:
    """The dotted path of the defining file relative to the jobs folder, else the module."""
    if collector is not None:
        if filename not in collector.modules:
            collector.modules[filename] = _dotted(filename, collector.root)
        dotted = collector.modules[filename]
        if dotted is not None:
            return dotted
    return str(getattr(func, "__module__", None) or "__main__")


def _dotted(filename: str, root: Path) -> str | None:
    try:
        relative = Path(os.path.abspath(filename)).relative_to(root)
    except ValueError:
        return None
    return ".".join(relative.with_suffix("").parts)


def _func_name(func: object) -> str:
    return str(getattr(func, "__name__", type(func).__name__))


def _check_unknown(checker: _Checker, unknown: list[str]) -> None:
    for key in unknown:
        close = difflib.get_close_matches(key, NAMES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(NAMES)
        checker.add(f"unknown option {key!r}", hint)


def _check_callable(checker: _Checker, func: object, collector: Collector | None) -> None:
    if not callable(func):
        checker.add(
            f"@job decorates a function, not a {type(func).__name__}",
            "expected @job(...) directly above a `def`",
        )
        return
    if not _callable_without_arguments(func, collector):
        checker.add(
            f"{_func_name(func)}() needs arguments, but a job is called with none",
            "expected a function that can be called as f(), e.g. give its parameters defaults",
        )


def _callable_without_arguments(func: Callable[..., Any], collector: Collector | None) -> bool:
    """Whether `func()` binds: `inspect.signature(func).bind()` succeeds or cannot tell."""
    if type(func) is FunctionType and not _signature_hooks(func):
        # A plain function: read what inspect would from its code, defaults and keyword-only
        # defaults, some 20 times faster (100,000 definitions spent 1.5 s in inspect).
        code = func.__code__
        positional, kwonly = code.co_argcount, code.co_kwonlyargcount
        if len(func.__defaults__ or ()) < positional:
            return False
        kwdefaults = func.__kwdefaults__ or {}
        return not kwonly or all(
            name in kwdefaults for name in code.co_varnames[positional : positional + kwonly]
        )
    if collector is None:
        return _binds(func)
    cached = collector.binds.get(id(func))
    if cached is None or cached[0] is not func:
        cached = (func, _binds(func))
        if len(collector.binds) < _MEMO_MAX:
            collector.binds[id(func)] = cached
    return cached[1]


def _signature_hooks(func: FunctionType) -> bool:
    """Whether inspect.signature would look past the function's code (decorators set these)."""
    return (
        hasattr(func, "__wrapped__")
        or hasattr(func, "__signature__")
        or hasattr(func, "_partialmethod")  # Python 3.11 and 3.12
        or hasattr(func, "__partialmethod__")  # Python 3.13
    )


def _binds(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind()
    except TypeError:
        return False
    except ValueError:
        return True  # no signature to inspect (some builtins): trust it
    return True


def _check_argv(checker: _Checker, argv: object) -> tuple[str, ...] | None:
    expected = "expected a non-empty list of strings, e.g. ['pg_dump', '-f', '/backups/app.sql']"
    if isinstance(argv, str):
        checker.add(
            f"invalid argv {argv!r}: a single string, but commands run without a shell",
            expected + " (shlex.split turns a command line into one)",
        )
        return None
    if not isinstance(argv, list | tuple) or not argv:
        checker.add(f"invalid argv {argv!r}: not a non-empty list", expected)
        return None
    wrong = [item for item in argv if not isinstance(item, str)]
    if wrong:
        checker.add(f"invalid argv {argv!r}: {wrong[0]!r} is not a string", expected)
        return None
    return tuple(argv)


def _check_schedule(
    checker: _Checker, schedule: object, every: object
) -> tuple[str | None, float | None]:
    if schedule is not None and every is not None:
        checker.add(
            f"both a cron schedule {schedule!r} and every={every!r}; give one",
            f"expected one schedule, {_SCHEDULE_EXAMPLE}",
        )
        return None, None
    if schedule is None and every is None:
        checker.add("no schedule", f"expected a schedule, {_SCHEDULE_EXAMPLE}")
        return None, None
    if every is not None:
        return None, checker.check(lambda v: parse_duration(v, option="every"), every)
    return checker.check(check_cron, schedule), None


def _check_options(
    checker: _Checker, options: dict[str, Any], collector: Collector | None
) -> dict[str, Any]:
    """The JobSpec fields the declared options fill (all but name and every)."""
    values: dict[str, Any] = {}
    for option in CHECKED:
        value = options.get(option.name)
        if value is not None:
            check = option.check
            assert check is not None  # CHECKED holds the options that have one
            values[option.field] = checker.check(functools.partial(check, option.name), value)
        elif option.setting is not None:
            values[option.field] = _setting(checker, collector, option)
    return values


def _setting(checker: _Checker, collector: Collector | None, option: Option) -> Any:
    """The value of an option not written that a setting gives: the load's, else the default."""
    if collector is not None:
        return getattr(collector, str(option.setting))
    if option.name == "tz":  # SCHED_TZ; a load checks it once, a lone definition each time
        return checker.check(check_tz, default_tz())
    return option.default_value()
