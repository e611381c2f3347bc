"""The loader and the @job/command API: good folders give JobSpecs, bad ones every problem.

The fixture folders live in tests/unit/fixtures; each test runs from there, so problem paths
read as a user in that folder would type them ("bad/cron.py:4").
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler import api, command, job, loader, options
from scheduler.api import display_path
from scheduler.errors import DefinitionError, Problem
from scheduler.loader import job_files, load_jobs, summarize
from scheduler.model import Catchup, JobSpec, Overlap

FIXTURES = Path(__file__).parent / "fixtures"
DURATION = (
    "expected a positive duration: seconds (30, 0.5) or a string such as '90s', '5m', '1h30m'"
)


@pytest.fixture(autouse=True)
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(FIXTURES)
    monkeypatch.delenv("SCHED_TZ", raising=False)
    yield
    loader._forget()  # leave no fixture folder on sys.path for other tests


# ---------------------------------------------------------------------------- a good folder


def test_good_folder_in_path_then_line_order() -> None:
    specs = load_jobs("good")
    assert list(specs) == [
        "nightly-backup",
        "pg-dump",
        "reports.daily.send",
        "reports.daily.poll",
        "weekly-report",
    ]
    assert [spec.where for spec in specs.values()] == [
        "good/backup.py:5",
        "good/backup.py:23",
        "good/reports/daily.py:5",
        "good/reports/daily.py:10",
        "good/reports/weekly.py:5",
    ]


def test_every_option_is_carried_into_the_spec() -> None:
    spec = load_jobs("good")["nightly-backup"]
    assert spec == JobSpec(
        name="nightly-backup",
        path="good/backup.py",
        line=5,  # the line of `@job(`, not of its last argument or of `def`
        timeout_s=7200.0,
        tz="Europe/Berlin",
        cron="0 3 * * *",
        overlap=Overlap.QUEUE,
        catchup=Catchup.ALL,
        catchup_limit=5,
        retries=2,
        retry_backoff_s=90.0,
        misfire_grace_s=600.0,
        queue="heavy",
        description="Copy the database off site",
    )
    assert spec.kind == "python"
    assert spec.func is not None
    assert spec.func() == "backed up to /backups"


def test_command_spec() -> None:
    spec = load_jobs("good")["pg-dump"]
    assert spec.kind == "command"
    assert spec.argv == ("pg_dump", "-f", "/backups/app.sql", "app")
    assert spec.func is None
    assert (spec.cron, spec.timeout_s, spec.tz, spec.line) == ("30 2 * * *", 3600.0, "UTC", 23)


def test_command_argv_tuple_and_explicit_tz() -> None:
    spec = load_jobs("good")["weekly-report"]
    assert (spec.argv, spec.tz, spec.cron) == (("report", "--week"), "America/New_York", "@weekly")


def test_defaults_and_name_from_the_module_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_TZ", "Asia/Tokyo")
    spec = load_jobs("good")["reports.daily.send"]
    assert (spec.path, spec.line, spec.cron, spec.every_s) == (
        "good/reports/daily.py",
        5,
        "*/5 * * * *",
        None,
    )
    assert spec.tz == "Asia/Tokyo"
    assert spec.timeout_s == 3600.0
    assert (spec.overlap, spec.catchup, spec.catchup_limit) == (Overlap.SKIP, Catchup.LATEST, 100)
    assert (spec.retries, spec.retry_backoff_s, spec.misfire_grace_s) == (0, 60.0, None)
    assert (spec.queue, spec.description) == ("default", "")
    assert spec.func is not None
    assert spec.func() == "hello from good/_helpers.py"  # through the helper import


def test_explicit_tz_wins_over_sched_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_TZ", "Asia/Tokyo")
    assert load_jobs("good")["nightly-backup"].tz == "Europe/Berlin"


def test_default_tz_argument_wins_over_sched_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_TZ", "Asia/Tokyo")
    assert load_jobs("good", default_tz="Europe/Paris")["pg-dump"].tz == "Europe/Paris"


def test_default_timeout_is_configurable() -> None:
    specs = load_jobs("good", default_timeout_s=90.0)
    assert specs["pg-dump"].timeout_s == 3600.0  # written in the file
    assert specs["reports.daily.send"].timeout_s == 90.0


def test_interval_job() -> None:
    spec = load_jobs("good")["reports.daily.poll"]
    assert (spec.cron, spec.every_s, spec.timeout_s, spec.schedule) == (
        None,
        30.0,
        1.5,
        "every 30s",
    )


def test_skips_names_starting_with_underscore_or_dot() -> None:
    root = FIXTURES / "good"
    assert [p.relative_to(root).as_posix() for p in job_files(root)] == [
        "backup.py",
        "reports/daily.py",
        "reports/weekly.py",
    ]


def test_two_folders_with_the_same_module_names_do_not_clash() -> None:
    good = load_jobs("good")
    other = load_jobs("other")
    again = load_jobs("good")
    for specs, expected in [(good, "good"), (other, "other"), (again, "good")]:
        func = specs["reports.daily.send"].func
        assert func is not None
        assert func() == f"hello from {expected}/_helpers.py"
    assert other["reports.daily.send"].cron == "0 * * * *"


def test_helpers_stay_importable_after_loading() -> None:
    load_jobs("good")
    assert importlib.import_module("_helpers").greeting() == "hello from good/_helpers.py"
    load_jobs("other")
    assert importlib.import_module("_helpers").greeting() == "hello from other/_helpers.py"
    assert sys.path.count(str(FIXTURES / "other")) == 1
    assert str(FIXTURES / "good") not in sys.path


def test_paths_are_absolute_outside_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_jobs(FIXTURES / "good")["pg-dump"]
    assert spec.path == str(FIXTURES / "good" / "backup.py")


def test_summary() -> None:
    specs = load_jobs("good")
    assert summarize(specs, "good") == "5 jobs OK in good/ (3 python, 2 commands)"
    assert summarize([specs["pg-dump"]], "good/") == "1 job OK in good/ (1 command)"
    assert summarize([specs["reports.daily.send"]]) == "1 job OK in good/reports/ (1 python)"
    assert summarize({}, "good") == "no jobs defined in good/"


# ------------------------------------------------------------------------ a bad folder


def bad_problems() -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        load_jobs("bad")
    return info.value.problems


def problem_at(where: str) -> str:
    """The one problem reported at `where` ('bad/cron.py:4'), as it is printed."""
    found = [p for p in bad_problems() if f"{p.path}:{p.line}" == where]
    assert len(found) == 1, found
    return str(found[0])


def test_a_bad_folder_reports_every_problem_of_every_file() -> None:
    problems = bad_problems()
    assert [(f"{p.path}:{p.line}", p.job) for p in problems] == [
        ("bad/commands.py:3", "pg-dump"),
        ("bad/commands.py:5", "empty"),
        ("bad/commands.py:7", "mixed"),
        ("bad/counts.py:4", "counts.too_few"),
        ("bad/counts.py:9", "counts.no_limit"),
        ("bad/cron.py:4", "nightly-backup"),
        ("bad/dup_second.py:3", "report"),
        ("bad/durations.py:4", "durations.several"),
        ("bad/durations.py:4", "durations.several"),
        ("bad/durations.py:4", "durations.several"),
        ("bad/exits.py:3", None),
        ("bad/helper_raises.py:3", None),
        ("bad/hooks.py:4", "hooks.ftp"),
        ("bad/hooks.py:9", "hooks.shell_line"),
        ("bad/hooks.py:9", "hooks.shell_line"),
        ("bad/hooks.py:14", "pager"),
        ("bad/hooks.py:14", "pager"),
        ("bad/hooks.py:17", "hooks.no_host"),
        ("bad/missing.py:1", None),
        ("bad/names.py:4", None),
        ("bad/names.py:9", "names.no_queue"),
        ("bad/names.py:14", "names.needs_args"),
        ("bad/policies.py:4", "policies.hourly"),
        ("bad/policies.py:9", "policies.catch_all"),
        ("bad/raises.py:6", None),
        ("bad/schedule.py:4", "schedule.twice"),
        ("bad/schedule.py:9", "schedule.never"),
        ("bad/schedule.py:14", "schedule.busy"),
        ("bad/schedule.py:19", None),
        ("bad/syntax.py:5", None),
        ("bad/timeout.py:4", "timeout.rotate_logs"),
        ("bad/timeout.py:9", "timeout.never_ends"),
        ("bad/typo.py:4", "typo.rotate_logs"),
        ("bad/tz.py:4", "tz.on_mars"),
    ]


def test_the_error_message_lists_them_all() -> None:
    with pytest.raises(DefinitionError) as info:
        load_jobs("bad")
    text = str(info.value)
    assert text.startswith("34 problems in job definitions:\nbad/commands.py:3: job 'pg-dump': ")
    assert text.count("\nbad/") == 34


def test_invalid_cron() -> None:
    assert problem_at("bad/cron.py:4") == (
        "bad/cron.py:4: job 'nightly-backup': "
        "invalid cron '61 2 * * *': minute 61 is outside 0-59\n"
        "  expected 5 fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
    )


def test_invalid_tz() -> None:
    assert problem_at("bad/tz.py:4") == (
        "bad/tz.py:4: job 'tz.on_mars': invalid tz 'Mars/Olympus_Mons': unknown time zone\n"
        "  expected an IANA zone such as 'Europe/Berlin' or 'UTC'"
    )


def test_timeout_with_an_unknown_unit() -> None:
    assert problem_at("bad/timeout.py:4") == (
        "bad/timeout.py:4: job 'timeout.rotate_logs': invalid timeout '5 min': "
        "unknown unit 'min' (units: d, h, m, s, ms)\n  " + DURATION
    )


def test_zero_timeout() -> None:
    assert problem_at("bad/timeout.py:9") == (
        "bad/timeout.py:9: job 'timeout.never_ends': "
        "invalid timeout 0: must be greater than zero\n  " + DURATION
    )


def test_unknown_option_suggests_the_closest() -> None:
    assert problem_at("bad/typo.py:4") == (
        "bad/typo.py:4: job 'typo.rotate_logs': unknown option 'timout'\n  did you mean 'timeout'?"
    )


def test_overlap_lists_the_policies() -> None:
    assert problem_at("bad/policies.py:4") == (
        "bad/policies.py:4: job 'policies.hourly': invalid overlap 'skipp': "
        "not a known overlap policy\n"
        "  expected one of 'skip', 'allow', 'queue', 'replace'; did you mean 'skip'?"
    )


def test_catchup_lists_the_policies() -> None:
    assert problem_at("bad/policies.py:9") == (
        "bad/policies.py:9: job 'policies.catch_all': invalid catchup 'everything': "
        "not a known catchup policy\n"
        "  expected one of 'none', 'latest', 'all'"
    )


def test_negative_retries() -> None:
    assert problem_at("bad/counts.py:4") == (
        "bad/counts.py:4: job 'counts.too_few': invalid retries -1: must be 0 or more\n"
        "  expected a whole number, 0 or more, e.g. retries=2"
    )


def test_zero_catchup_limit() -> None:
    assert problem_at("bad/counts.py:9") == (
        "bad/counts.py:9: job 'counts.no_limit': invalid catchup_limit 0: must be 1 or more\n"
        "  expected a whole number, 1 or more, e.g. catchup_limit=2"
    )


def test_both_cron_and_every() -> None:
    assert problem_at("bad/schedule.py:4") == (
        "bad/schedule.py:4: job 'schedule.twice': both a cron schedule '*/5 * * * *' and "
        "every='30s'; give one\n"
        "  expected one schedule, e.g. '*/5 * * * *' for a cron schedule or every='30s'"
    )


def test_no_schedule() -> None:
    assert problem_at("bad/schedule.py:9") == (
        "bad/schedule.py:9: job 'schedule.never': no schedule\n"
        "  expected a schedule, e.g. '*/5 * * * *' for a cron schedule or every='30s'"
    )


def test_zero_interval() -> None:
    assert problem_at("bad/schedule.py:14") == (
        "bad/schedule.py:14: job 'schedule.busy': invalid every '0s': must be greater than zero\n  "
        + DURATION
    )


def test_bare_decorator() -> None:
    assert problem_at("bad/schedule.py:19") == (
        "bad/schedule.py:19: @job needs a schedule: write @job('*/5 * * * *') above bare()\n"
        "  expected @job(SCHEDULE, ...) or @job(every='30s', ...)"
    )


def test_name_with_a_space() -> None:
    assert problem_at("bad/names.py:4") == (
        "bad/names.py:4: invalid name 'nightly backup': contains ' '\n"
        "  expected letters, digits, '.', '_' and '-' only, e.g. name='nightly-backup'"
    )


def test_empty_queue() -> None:
    assert problem_at("bad/names.py:9") == (
        "bad/names.py:9: job 'names.no_queue': invalid queue '': empty\n"
        "  expected letters, digits, '.', '_' and '-' only, e.g. queue='heavy'"
    )


def test_function_that_needs_arguments() -> None:
    assert problem_at("bad/names.py:14") == (
        "bad/names.py:14: job 'names.needs_args': needs_args() needs arguments, "
        "but a job is called with none\n"
        "  expected a function that can be called as f(), e.g. give its parameters defaults"
    )


def test_command_line_as_one_string() -> None:
    assert problem_at("bad/commands.py:3") == (
        "bad/commands.py:3: job 'pg-dump': invalid argv 'pg_dump -f /backups/app.sql app': "
        "a single string, but commands run without a shell\n"
        "  expected a non-empty list of strings, e.g. ['pg_dump', '-f', '/backups/app.sql'] "
        "(shlex.split turns a command line into one)"
    )


def test_empty_argv() -> None:
    assert problem_at("bad/commands.py:5") == (
        "bad/commands.py:5: job 'empty': invalid argv []: not a non-empty list\n"
        "  expected a non-empty list of strings, e.g. ['pg_dump', '-f', '/backups/app.sql']"
    )


def test_argv_with_a_number() -> None:
    assert problem_at("bad/commands.py:7") == (
        "bad/commands.py:7: job 'mixed': invalid argv ['sleep', 5]: 5 is not a string\n"
        "  expected a non-empty list of strings, e.g. ['pg_dump', '-f', '/backups/app.sql']"
    )


def test_every_problem_of_one_definition() -> None:
    found = [str(p) for p in bad_problems() if p.path == "bad/durations.py"]
    assert found == [
        "bad/durations.py:4: job 'durations.several': invalid overlap 'never': "
        "not a known overlap policy\n"
        "  expected one of 'skip', 'allow', 'queue', 'replace'",
        "bad/durations.py:4: job 'durations.several': invalid retry_backoff 'soon': "
        "not a duration\n  " + DURATION,
        "bad/durations.py:4: job 'durations.several': invalid misfire_grace -5: "
        "must be greater than zero\n  " + DURATION,
    ]


HOOK = (
    "expected an http(s) URL or a command as a list of strings, "
    "e.g. {o}='https://alerts.example.com/sched' or {o}=['notify-send', 'sched']"
)


def test_alert_hooks_and_expected_duration_are_carried_into_the_spec() -> None:
    specs = load_jobs("hooks")
    hourly, sync = specs["alerts.hourly"], specs["sync"]
    assert hourly.on_failure == "https://ops:s3cret@alerts.example.com/sched"
    assert hourly.on_late == ("notify-send", "sched: late")  # a list is kept as a tuple
    assert hourly.expected_duration_s == 600.0
    assert (sync.on_failure, sync.on_late, sync.expected_duration_s) == (
        ("pager", "--ops"),
        None,
        None,
    )


def test_hooks_default_to_none() -> None:
    spec = load_jobs("good")["nightly-backup"]
    assert (spec.on_failure, spec.on_late, spec.expected_duration_s) == (None, None, None)


def test_hook_url_with_another_scheme() -> None:
    assert problem_at("bad/hooks.py:4") == (
        "bad/hooks.py:4: job 'hooks.ftp': invalid on_failure 'ftp://x': "
        "scheme 'ftp' is not http or https\n  " + HOOK.format(o="on_failure")
    )


def test_hook_command_line_as_one_string_and_a_bad_expected_duration() -> None:
    found = [str(p) for p in bad_problems() if f"{p.path}:{p.line}" == "bad/hooks.py:9"]
    assert found == [
        "bad/hooks.py:9: job 'hooks.shell_line': invalid on_late 'notify-send late': "
        "a single string that is not a URL, but commands run without a shell\n  "
        + HOOK.format(o="on_late")
        + " (shlex.split turns a command line into a list)",
        "bad/hooks.py:9: job 'hooks.shell_line': invalid expected_duration 'soon': "
        "not a duration\n  " + DURATION,
    ]


def test_hook_commands_that_are_not_lists_of_strings() -> None:
    found = [str(p) for p in bad_problems() if f"{p.path}:{p.line}" == "bad/hooks.py:14"]
    assert found == [
        "bad/hooks.py:14: job 'pager': invalid on_failure ['pager', 3]: 3 is not a string\n  "
        + HOOK.format(o="on_failure"),
        "bad/hooks.py:14: job 'pager': invalid on_late []: an empty command\n  "
        + HOOK.format(o="on_late"),
    ]


def test_hook_url_without_a_host_does_not_show_its_password() -> None:
    text = problem_at("bad/hooks.py:17")
    assert text == (
        "bad/hooks.py:17: job 'hooks.no_host': invalid on_failure 'https://ops:***@/no-host': "
        "the URL has no host\n  " + HOOK.format(o="on_failure")
    )
    assert "hunter2" not in str(DefinitionError(bad_problems()))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (42, "a int is neither a URL nor a command"),
        ([""], "the program name is empty"),
        ("https://alerts.example.com/a b", "the URL contains whitespace or control characters"),
        (
            "https://ops:pa/ss@alerts.example.com:x/",
            "not a valid URL: its port is not a number or its host is malformed",
        ),
    ],
)
def test_other_bad_hooks_outside_the_loader(value: object, why: str) -> None:
    with pytest.raises(DefinitionError) as info:
        job("0 * * * *", on_failure=value)(_no_args)  # type: ignore[arg-type]
    message = info.value.problems[0].message
    assert message.endswith(f": {why}")
    assert "pa/ss" not in message and "pa/" not in message


def test_duplicate_name_points_at_the_first() -> None:
    assert problem_at("bad/dup_second.py:3") == (
        "bad/dup_second.py:3: job 'report': duplicate job name 'report', "
        "first defined at bad/dup_first.py:4\n"
        "  expected unique names; give one of them another name="
    )


def test_syntax_error() -> None:
    # The wording of the reason is CPython's and varies between versions.
    text = problem_at("bad/syntax.py:5")
    assert text.startswith("bad/syntax.py:5: syntax error: ")
    assert text.endswith(" in 'def broken(:'")


def test_exception_at_import_points_at_the_deepest_line_of_the_job_file() -> None:
    # raises.py:9 calls setup(), whose line 6 raises.
    assert problem_at("bad/raises.py:6") == (
        "bad/raises.py:6: import failed: ValueError: invalid literal for int() with base 10: "
        "'not a port'"
    )


def test_exception_in_a_helper_says_where_it_was_raised() -> None:
    assert problem_at("bad/helper_raises.py:3") == (
        "bad/helper_raises.py:3: import failed: ConnectionError: database unreachable "
        "(raised at bad/_flaky.py:5)"
    )


def test_missing_module() -> None:
    assert problem_at("bad/missing.py:1") == (
        "bad/missing.py:1: import failed: ModuleNotFoundError: "
        "No module named 'not_a_real_module_for_sched_tests'"
    )


def test_sys_exit_at_import() -> None:
    assert (
        problem_at("bad/exits.py:3") == "bad/exits.py:3: import failed: SystemExit: no jobs today"
    )


# ---------------------------------------------------------------- the folder and settings


def test_missing_folder() -> None:
    with pytest.raises(DefinitionError) as info:
        load_jobs("nope")
    assert str(info.value) == (
        "1 problem in job definitions:\n"
        "nope: jobs folder not found\n"
        "  expected a folder of job files (*.py); pass --jobs DIR or set SCHED_JOBS"
    )


def test_folder_that_is_a_file() -> None:
    with pytest.raises(DefinitionError) as info:
        load_jobs("good/backup.py")
    assert str(info.value.problems[0]) == (
        "good/backup.py: jobs folder is not a folder\n"
        "  expected a folder of job files (*.py); pass --jobs DIR or set SCHED_JOBS"
    )


def test_bad_sched_tz_is_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_TZ", "Mars/Base")
    with pytest.raises(DefinitionError) as info:
        load_jobs("good")
    assert [str(p) for p in info.value.problems] == [
        "SCHED_TZ: invalid tz 'Mars/Base': unknown time zone\n"
        "  expected an IANA zone such as 'Europe/Berlin' or 'UTC'"
    ]


def test_bad_default_timeout_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="invalid default timeout 0"):
        load_jobs("good", default_timeout_s=0)


# ------------------------------------------------------------------- outside the loader


def _no_args() -> str:
    return "called"


def test_outside_the_loader_a_good_job_returns_the_function_unchanged() -> None:
    assert job("*/5 * * * *", timeout="30s")(_no_args) is _no_args
    assert _no_args() == "called"


def test_outside_the_loader_a_command_returns_its_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_TZ", "Asia/Tokyo")
    spec = command("pg-dump", "30 2 * * *", ["pg_dump", "app"], timeout="1h")
    assert spec is not None
    assert (spec.name, spec.tz, spec.timeout_s, spec.argv) == (
        "pg-dump",
        "Asia/Tokyo",
        3600.0,
        ("pg_dump", "app"),
    )
    assert spec.path == display_path(__file__)


def test_outside_the_loader_a_bad_job_raises_at_once() -> None:
    line = sys._getframe().f_lineno + 2
    with pytest.raises(DefinitionError) as info:
        job("*/5 * * * *", timeout="0s", overlap="sometimes")(_no_args)
    assert [(p.path, p.line, p.job) for p in info.value.problems] == [
        (display_path(__file__), line, f"{__name__}._no_args"),
        (display_path(__file__), line, f"{__name__}._no_args"),
    ]
    assert str(info.value).startswith("2 problems in job definitions:\n")


def test_outside_the_loader_a_bad_command_raises_at_once() -> None:
    line = sys._getframe().f_lineno + 2
    with pytest.raises(DefinitionError) as info:
        command("pg dump", "30 2 * * *", ["pg_dump"])
    assert str(info.value) == (
        "1 problem in job definitions:\n"
        f"{display_path(__file__)}:{line}: invalid name 'pg dump': contains ' '\n"
        "  expected letters, digits, '.', '_' and '-' only, e.g. name='nightly-backup'"
    )


def test_a_lambda_needs_an_explicit_name() -> None:
    with pytest.raises(DefinitionError) as info:
        job("*/5 * * * *")(lambda: None)
    assert info.value.problems[0].message == (
        f"cannot use '{__name__}.<lambda>' as the job name: "
        "it may only have letters, digits, '.', '_', '-'"
    )
    assert job("*/5 * * * *", name="tidy")(_no_args) is _no_args


def test_retry_on_is_validated_where_written(tmp_path: Path) -> None:
    (tmp_path / "r.py").write_text(
        "from scheduler import job\n\n"
        "@job('@daily', retries=1, retry_on=['failed', 'skipped'])\n"
        "def f() -> None: ...\n"
        "@job('@daily', retries=1, retry_on='lost', name='ok')\n"
        "def g() -> None: ...\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_jobs(tmp_path)
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert "invalid retry_on ['failed', 'skipped']: 'skipped' cannot be retried" in str(problem)
    assert "some of 'failed', 'timed-out', 'lost'" in str(problem)


# ----------------------------------------------------- what one load remembers between jobs


def _needs_one(a: int) -> None: ...


def _keyword_needed(*, a: int) -> None: ...


def _all_defaults(a: int = 1, /, b: int = 2, *args: int, c: int = 3, **kw: int) -> None: ...


@functools.wraps(_needs_one)
def _wraps_needs_one() -> None: ...


@functools.wraps(_no_args)
def _wraps_no_args(a: int) -> None: ...


class _Callable:
    def __call__(self, a: int = 1) -> None: ...

    def method(self, a: int) -> None: ...


def _defaults_removed(a: int = 1) -> None: ...


_defaults_removed.__defaults__ = None


@pytest.mark.parametrize(
    "func",
    [
        _no_args,
        _needs_one,
        _keyword_needed,
        _all_defaults,
        _wraps_needs_one,
        _wraps_no_args,
        _Callable(),
        _Callable().method,
        functools.partial(_needs_one, 1),
        _defaults_removed,
        lambda: None,
        lambda a: None,
        print,
    ],
)
def test_whether_a_function_needs_arguments_is_what_inspect_says(func: Any) -> None:
    try:
        inspect.signature(func).bind()
    except TypeError:
        expected = False
    except ValueError:
        expected = True
    else:
        expected = True
    collector = api.Collector(root=FIXTURES, tz="UTC", timeout_s=60.0)
    assert api._callable_without_arguments(func, None) is expected
    assert api._callable_without_arguments(func, collector) is expected
    assert api._callable_without_arguments(func, collector) is expected  # remembered


def test_functions_with_different_signatures_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "sigs.py").write_text(
        "import functools\n"
        "from scheduler import job\n\n"
        "def ok() -> None: ...\n"
        "def needs(a) -> None: ...\n"
        "job('@daily', name='a')(ok)\n"
        "job('@daily', name='b')(needs)\n"
        "job('@daily', name='c')(ok)\n"
        "job('@daily', name='d')(functools.partial(needs, 1))\n"
        "job('@daily', name='e')(functools.wraps(needs)(lambda: None))\n"
        "needs.__defaults__ = (1,)\n"
        "job('@daily', name='f')(needs)\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_jobs(tmp_path)
    assert [(p.line, p.job, p.message) for p in caught.value.problems] == [
        (7, "b", "needs() needs arguments, but a job is called with none"),
        (10, "e", "needs() needs arguments, but a job is called with none"),
    ]


def test_options_equal_in_value_but_not_in_type_are_each_checked(tmp_path: Path) -> None:
    (tmp_path / "types.py").write_text(
        "from scheduler import job\n\n"
        "def f() -> None: ...\n"
        "job('@daily', name='a', retries=1, timeout=60, retry_on=['failed'])(f)\n"
        "job('@daily', name='b', retries=True, timeout=60, retry_on=['failed'])(f)\n"
        "job('@daily', name='c', retries=1, timeout=60.0, retry_on=['failed'])(f)\n"
        "job('@daily', name='d', retries=1, timeout=True, retry_on=['failed'])(f)\n"
        "job('@daily', name='e', retries=1, timeout=60, retry_on=('failed',))(f)\n"
        "job('@daily', name='f', retries=1, timeout=60, retry_on=[['failed']])(f)\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_jobs(tmp_path)
    assert [(p.line, p.job, p.message) for p in caught.value.problems] == [
        (5, "b", "invalid retries True: not a whole number"),
        (7, "d", "invalid timeout True: a boolean is not a duration"),
        (9, "f", "invalid retry_on [['failed']]: ['failed'] cannot be retried"),
    ]


def test_what_one_load_remembers_does_not_reach_the_next(tmp_path: Path) -> None:
    (tmp_path / "same.py").write_text(
        "from scheduler import job\n\n@job('30 2 * * *', retries=1)\ndef nightly() -> None: ...\n"
    )
    first = load_jobs(tmp_path, default_tz="Europe/Berlin", default_timeout_s=60.0)
    second = load_jobs(tmp_path, default_tz="Asia/Tokyo", default_timeout_s=90.0)
    assert (first["same.nightly"].tz, first["same.nightly"].timeout_s) == ("Europe/Berlin", 60.0)
    assert (second["same.nightly"].tz, second["same.nightly"].timeout_s) == ("Asia/Tokyo", 90.0)
    # Nothing of the load is held after it: not even the module's line table.
    assert api._last_table[0] is None


# ------------------------------------------------------------------ the option declaration


def test_readme_option_table_is_the_declaration() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("| option | default | meaning |")
    table = readme[start : readme.index("\n\n", start)]
    assert table == options.markdown_table(), "paste `python -m scheduler.options` into README"


def test_every_option_fills_a_jobspec_field_whose_default_is_the_options() -> None:
    fields = {f.name for f in dataclasses.fields(JobSpec)}
    assert [o.name for o in options.OPTIONS if o.field not in fields] == []
    spec = command("defaults", "@daily", ["true"])
    assert spec is not None
    for option in options.CHECKED:
        if option.setting is None:
            assert getattr(spec, option.field) == option.default_value(), option.name


@pytest.mark.parametrize("option", options.CHECKED, ids=lambda o: o.name)
def test_every_option_is_checked_even_after_a_job_like_it(
    option: options.Option, tmp_path: Path
) -> None:
    # A load checks each distinct set of written options once; an option left out of what it
    # remembers would let the second definition through unchecked.
    (tmp_path / "twins.py").write_text(
        "from scheduler import command\n"
        "command('plain', '@daily', ['true'])\n"
        f"command('odd', '@daily', ['true'], {option.name}=object())\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_jobs(tmp_path)
    assert [(p.line, p.job) for p in caught.value.problems] == [(3, "odd")]
    assert caught.value.problems[0].message.startswith(f"invalid {option.name} <object ")


def test_none_means_the_default() -> None:
    written = {o.name: None for o in options.OPTIONS if o.name != "name"}
    spec = command("nones", "@daily", ["true"], **written)  # type: ignore[arg-type]
    plain = command("nones", "@daily", ["true"])
    assert spec is not None and plain is not None
    assert spec == dataclasses.replace(plain, line=spec.line)


def test_sched_list_shows_the_listed_options_by_field() -> None:
    row = options.listed(load_jobs("hooks")["alerts.hourly"])
    assert (row["timeout_s"], row["overlap"], row["expected_duration_s"]) == (3600.0, "skip", 600.0)
    assert type(row["overlap"]) is str
    assert row["retry_on"] == ["failed", "timed-out", "lost"]
    assert "on_failure" not in row and "on_late" not in row  # they may hold a password
    assert json.loads(json.dumps(row)) == row


def test_the_listed_options_are_described_by_their_schema() -> None:
    import jsonschema

    schema = {
        "type": "object",
        "properties": options.listed_schema(),
        "additionalProperties": False,
    }
    assert schema["properties"]["misfire_grace_s"] == {"type": ["number", "null"]}
    assert schema["properties"]["overlap"]["enum"] == ["skip", "allow", "queue", "replace"]
    for spec in [*load_jobs("good").values(), *load_jobs("hooks").values()]:
        row = options.listed(spec)
        jsonschema.validate(row, schema)
        assert set(row) == set(schema["properties"])


def test_sched_list_rows_carry_every_listed_option() -> None:
    from datetime import UTC, datetime

    from scheduler.cli_output import list_row

    spec = load_jobs("good")["nightly-backup"]
    row = list_row(spec, None, False, datetime(2026, 11, 27, tzinfo=UTC))
    assert {k: row[k] for k in options.listed_schema()} == options.listed(spec)
    assert (row["catchup_limit"], row["retry_backoff_s"]) == (5, 90.0)  # not listed before


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("1.5G", 3 << 29),
        ("64MiB", 64 << 20),
        (1 << 30, 1 << 30),
    ],
)
def test_memory_limit_takes_sizes(value: object, size: int) -> None:
    spec = command("sized", "@daily", ["true"], memory_limit=value)  # type: ignore[arg-type]
    assert spec is not None and spec.memory_limit_bytes == size


@pytest.mark.parametrize(
    ("value", "why"),
    [("lots", "not a size"), ("1M", "too small for a run to start"), (True, "not a size")],
)
def test_memory_limit_says_what_a_size_is(value: object, why: str) -> None:
    with pytest.raises(DefinitionError) as info:
        command("sized", "@daily", ["true"], memory_limit=value)  # type: ignore[arg-type]
    assert f"invalid memory_limit {value!r}: {why}" in info.value.problems[0].message
    assert "\n  expected a size such as `512M` or `2G`" in str(info.value)
