"""The `sched` command line; the only module that imports click."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from scheduler.model import PENDING, JobSpec, KillCause, Run, RunStatus, format_seconds

if TYPE_CHECKING:  # the store (and redis) is imported only by the commands that use it
    from scheduler.embedded import EmbeddedRedis
    from scheduler.store import Store

EXIT_RUNTIME = 1
EXIT_USAGE = 2


@dataclass
class Config:
    """Options shared by every command."""

    jobs: Path
    redis_url: str | None
    state_dir: Path
    namespace: str
    default_timeout: str | None
    log_format: str = "human"


def _fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"sched: {message}", err=True)
    sys.exit(code)


def _setup_logging(log_format: str = "human") -> None:
    from scheduler.cli_output import log_formatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _load(cfg: Config, *, compare: bool = False) -> dict[str, JobSpec]:
    """The jobs folder's definitions, or every problem and exit 2.

    With `compare` (`check`, `list`), an invalid folder also says what the live processes
    keep running meanwhile.
    """
    from scheduler.errors import DefinitionError
    from scheduler.loader import load_jobs

    try:
        return load_jobs(cfg.jobs, default_timeout_s=_default_timeout_s(cfg))
    except DefinitionError as exc:
        click.echo(str(exc), err=True)
        if compare:
            from scheduler.cli_checks import still_running

            loaded, _why_not = _running(cfg)
            for line in still_running(loaded or {}, int(time.time() * 1000)):
                click.echo(line, err=True)
        sys.exit(EXIT_USAGE)


def _default_timeout_s(cfg: Config) -> float:
    """--default-timeout in seconds (exit 2 when it is no duration)."""
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption
    from scheduler.model import DEFAULT_TIMEOUT_S

    if not cfg.default_timeout:
        return DEFAULT_TIMEOUT_S
    try:
        return parse_duration(cfg.default_timeout, option="--default-timeout")
    except InvalidOption as exc:
        _fail(f"{exc}; expected {exc.expected}", EXIT_USAGE)


@contextmanager
def _store(
    cfg: Config,
    *,
    start_if_needed: bool = True,
    runtime_code: int = EXIT_RUNTIME,
    wait_s: float = 0.0,
) -> Iterator[Store]:
    """A connected Store: the given URL, the running embedded server, or a temporary one.

    No Redis, or Redis failing meanwhile, exits `runtime_code` with the reason; a Redis that
    cannot be reached is waited for up to `wait_s` first (--wait-for-redis).
    """
    from scheduler import embedded
    from scheduler.errors import StoreError
    from scheduler.store import Store

    server = None
    url = _checked_url(cfg)
    if url is None:
        if cfg.state_dir.exists() and not cfg.state_dir.is_dir():
            _fail(f"--state-dir {cfg.state_dir}: is not a folder", EXIT_USAGE)
        url = embedded.socket_url(cfg.state_dir)
        if not embedded.is_alive(url):
            if not start_if_needed or not cfg.state_dir.is_dir():
                _fail(
                    f"no Redis: nothing is running in {cfg.state_dir}/ and no --redis-url / "
                    "SCHED_REDIS_URL was given; start `sched run` first",
                    runtime_code,
                )
            server = _open_state_dir(cfg.state_dir)
            url = server.url if server is not None else url
    store = Store(url, cfg.namespace)
    try:
        try:
            _ping(store, wait_s)
            yield store
        except StoreError as exc:
            _fail(str(exc), runtime_code)
    finally:
        store.close()
        if server is not None:
            server.stop()


def _ping(store: Store, wait_s: float) -> None:
    """Ping `store`; while it cannot be reached, try again for up to `wait_s`, saying so.

    Only an unreachable Redis is waited for: refused credentials or an evicting policy will
    not mend by waiting, and fail at once. Ctrl-C while waiting exits 130 at once.
    """
    try:
        _ping_until(store, wait_s)
    except KeyboardInterrupt:
        _fail("stopped while waiting for Redis", 130)


def _ping_until(store: Store, wait_s: float) -> None:
    from scheduler.errors import StoreUnavailable
    from scheduler.model import format_seconds

    log = logging.getLogger("sched")
    started = time.monotonic()
    said_at = None
    pause = 0.25
    while True:
        try:
            store.ping()
        except StoreUnavailable as exc:
            waited = time.monotonic() - started
            if waited >= wait_s:
                if said_at is None:
                    raise
                _fail(f"{exc}; gave up after waiting {format_seconds(wait_s)} (--wait-for-redis)")
            if said_at is None:
                log.warning(
                    "%s; waiting up to %s for it (--wait-for-redis)", exc, format_seconds(wait_s)
                )
                said_at = waited
            elif waited - said_at >= WAIT_SAY_EVERY_S:
                log.warning(
                    "still waiting for Redis at %s (%s of %s)",
                    store.describe(),
                    format_seconds(round(waited)),
                    format_seconds(wait_s),
                )
                said_at = waited
            time.sleep(min(pause, wait_s - waited))
            pause = min(pause * 2, 2.0)
            continue
        if said_at is not None:
            log.info(
                "Redis at %s answered after %s",
                store.describe(),
                format_seconds(round(time.monotonic() - started, 1)),
            )
        return


# While waiting for Redis at start, a line this often.
WAIT_SAY_EVERY_S = 10.0


def _checked_url(cfg: Config) -> str | None:
    """The --redis-url, refused (exit 2) when it cannot be a Redis URL."""
    from scheduler.cli_checks import redis_url_problem

    if cfg.redis_url is not None:
        problem = redis_url_problem(cfg.redis_url)
        if problem:
            _fail(problem, EXIT_USAGE)
    return cfg.redis_url


def _open_state_dir(state_dir: Path) -> EmbeddedRedis | None:
    """A server over the state folder's data for one command, or None if `sched run` has it.

    When another process holds the folder (a `sched run` starting up), wait for its server
    rather than start a second one on the same files.
    """
    from scheduler import embedded

    try:
        return embedded.EmbeddedRedis(state_dir).start(lock_wait_s=0)
    except embedded.StateDirBusy:
        url = embedded.socket_url(state_dir)
        deadline = time.monotonic() + 15
        while not embedded.is_alive(url):
            if time.monotonic() > deadline:
                _fail(
                    f"{state_dir}/ is locked by another sched process, but its Redis "
                    "does not answer"
                )
            time.sleep(0.05)
        return None
    except embedded.EmbeddedRedisError as exc:
        _fail(str(exc))


def _parse_since(value: str | None, option: str = "--since") -> datetime | None:
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption

    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value, option=option))
    except InvalidOption as exc:
        raise click.BadParameter(
            f"{value!r}: {exc.why}; expected a duration such as 2h or 30m, or an ISO time"
        ) from exc


# -- the group --------------------------------------------------------------------------------


# The options every command shares. Each is accepted before the subcommand (`sched --jobs j
# check`) and after it (`sched check --jobs j`); after it wins. Only the group's copy reads the
# environment, so an option given on the command line always beats a variable.
COMMON_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--jobs",
        {
            "envvar": "SCHED_JOBS",
            "default": "jobs",
            "type": click.Path(path_type=Path),
            "help": "Folder of job definitions.",
        },
    ),
    (
        "--redis-url",
        {
            "envvar": "SCHED_REDIS_URL",
            "default": None,
            "help": "Redis to use (redis://, rediss://, unix://, redis+sentinel://, "
            "redis+cluster://). "
            "Default: an embedded server.",
        },
    ),
    (
        "--state-dir",
        {
            "envvar": "SCHED_STATE_DIR",
            "default": ".sched",
            "type": click.Path(path_type=Path),
            "help": "Where the embedded Redis keeps its data.",
        },
    ),
    (
        "--namespace",
        {
            "envvar": "SCHED_NAMESPACE",
            "default": "sched",
            "help": "Key prefix, so several deployments can share one Redis.",
        },
    ),
    (
        "--default-timeout",
        {
            "envvar": "SCHED_DEFAULT_TIMEOUT",
            "default": None,
            "help": "Timeout of jobs that set none (default 1h).",
        },
    ),
    (
        "--log-format",
        {
            "envvar": "SCHED_LOG_FORMAT",
            "default": "human",
            "type": click.Choice(["human", "json"]),
            "help": "Log lines for people, or one JSON object per line.",
        },
    ),
)


def _group_options(func: Any) -> Any:
    for flag, settings in reversed(COMMON_OPTIONS):
        func = click.option(flag, show_default=settings["default"] is not None, **settings)(func)
    return func


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A common option given after the subcommand: it replaces the group's value."""
    if value is not None and param.name is not None:
        setattr(ctx.ensure_object(Config), param.name.removeprefix("common_"), value)


def _subcommand_option(flag: str, settings: dict[str, Any]) -> click.Option:
    # Named apart from the command's own parameters (`simulate` has a JOBS argument).
    name = "common_" + flag.removeprefix("--").replace("-", "_")
    return click.Option(
        [flag, name],
        default=None,
        type=settings.get("type"),
        expose_value=False,
        callback=_override,
        help=f"{settings['help']} (Also accepted before the subcommand.)",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@_group_options
@click.version_option(package_name="sched", prog_name="sched")
@click.pass_context
def cli(
    ctx: click.Context,
    jobs: Path,
    redis_url: str | None,
    state_dir: Path,
    namespace: str,
    default_timeout: str | None,
    log_format: str,
) -> None:
    """sched: cron for Python teams, with hard timeouts and an honest run history.

    Common options (--jobs, --redis-url, --state-dir, --namespace, --default-timeout,
    --log-format) go before or after the subcommand.

    \b
    Example:
      sched run                 # run the jobs in ./jobs on an embedded Redis
      sched history --limit 20  # what ran, how it ended
    """
    ctx.obj = Config(jobs, redis_url, state_dir, namespace, default_timeout, log_format)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sched")


# -- definitions ------------------------------------------------------------------------------


@cli.command()
@click.pass_obj
def check(cfg: Config) -> None:
    """Load the jobs folder and report every problem (exit 2) or a summary (exit 0).

    Also warns (exit 0) about fixed-time jobs whose wall time falls in a DST gap or a
    repeated hour of their zone in the next 12 months, saying what will happen.

    \b
    Example:
      sched --jobs ./jobs check
    """
    from scheduler.loader import summarize

    specs = _load(cfg, compare=True)
    _check_hooks_env()
    click.echo(summarize(specs, cfg.jobs))
    for line in _dst_warnings(specs.values(), datetime.now(UTC)):
        click.echo(line, err=True)
    loaded, why_not = _running(cfg)
    if loaded is None:
        click.echo(f"not compared with running processes: {why_not}", err=True)
    else:
        _say_differs(cfg, loaded, in_sync=True)


def _running(cfg: Config) -> tuple[dict[str, dict[str, str]] | None, str]:
    """What each live scheduler and worker runs (Store.loaded()), or None and why not.

    Never starts a server and never waits long: for `check`, which must work offline.
    """
    from scheduler import embedded
    from scheduler.errors import StoreError
    from scheduler.store import Store

    url = _checked_url(cfg)
    if url is None:
        url = embedded.socket_url(cfg.state_dir)
        if not embedded.is_alive(url):
            return None, f"none runs in {cfg.state_dir}/ and no --redis-url was given"
    try:
        store = Store(url, cfg.namespace, socket_timeout_s=2.0)
    except (StoreError, ValueError) as exc:
        return None, str(exc)
    try:
        store.ping()
        return store.loaded(), ""
    except StoreError as exc:
        return None, f"could not read what they run: {exc}"
    finally:
        store.close()


def _say_differs(cfg: Config, loaded: dict[str, dict[str, str]], *, in_sync: bool) -> None:
    """Warn (stderr) about live processes running other definitions than the folder holds."""
    from scheduler.cli_checks import running_differs, running_same
    from scheduler.reload import folder_digest

    lines = running_differs(folder_digest(cfg.jobs), cfg.jobs, loaded, int(time.time() * 1000))
    if not lines and in_sync and loaded:
        lines = [running_same(loaded)]
    for line in lines:
        click.echo(line, err=True)


def _dst_warnings(specs: Iterable[JobSpec], now: datetime) -> list[str]:
    """`warning: nightly (jobs/x.py:3): 0 2 * * * Europe/Berlin: 2027-03-28 02:00 does not
    exist; runs at 03:00 CEST`, for each fixed-time job and transition in the next 12 months."""
    from scheduler import cron

    lines = []
    until = now + timedelta(days=366)
    notes: dict[tuple[str, str], list[cron.DstNote]] = {}  # many jobs share schedule and zone
    for spec in sorted(specs, key=lambda s: s.name):
        if spec.cron is None or cron.is_interval(spec.cron):
            continue
        key = (spec.cron, spec.tz)
        if key not in notes:
            notes[key] = cron.dst_notes(spec.cron, spec.tz, now, until)
        for note in notes[key]:
            where = f"{spec.name} ({spec.path}:{spec.line})"
            lines.append(f"warning: {where}: {spec.cron} {spec.tz}: {note.text()}")
    return lines


@cli.command("next")
@click.argument("expr_or_job")
@click.option(
    "--tz",
    default=None,
    help="Zone of a cron expression (default SCHED_TZ or UTC); for a job, the zone the times "
    "are shown in (the job's own zone decides them).",
)
@click.option("--from", "start", default=None, help="ISO instant to start from (default now).")
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def next_cmd(
    cfg: Config, expr_or_job: str, tz: str | None, start: str | None, count: int, as_json: bool
) -> None:
    """Print the next fire times of a job or of a cron expression.

    \b
    Example:
      sched next "30 1 * * *" --tz America/New_York --from 2025-11-01T12:00Z -n 3
      sched next backup.nightly --tz Asia/Tokyo
    """

    spec = _spec_for(cfg, expr_or_job, tz)
    after = _parse_from(start)
    shown = tz or spec.tz
    from scheduler import cli_output

    rows = cli_output.next_rows(spec, after, count, tz)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if shown != spec.tz:
        click.echo(f"{spec.name} fires in {spec.tz}; times shown in {shown}")
    for row in rows:
        click.echo(f"{row['local']}  ({row['at']})")


def _parse_from(start: str | None, option: str = "--from") -> datetime:
    if start is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{start!r} is not an ISO time, e.g. 2025-11-02T05:00Z", param_hint=option
        ) from exc
    if moment.tzinfo is None:
        raise click.BadParameter(f"{start!r} has no offset; add Z or +01:00", param_hint=option)
    return moment


def _spec_for(cfg: Config, expr_or_job: str, tz: str | None) -> JobSpec:
    from scheduler import cron
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption

    zone_name = tz or os.environ.get("SCHED_TZ") or "UTC"
    try:
        cron.zone(zone_name)
    except cron.CronError as exc:
        raise click.BadParameter(f"{exc.why}; expected {exc.expected}", param_hint="--tz") from exc
    if expr_or_job.startswith("every "):
        try:
            every = parse_duration(expr_or_job[6:].strip(), option="every")
        except InvalidOption as exc:
            raise click.BadParameter(f"{exc}; expected {exc.expected}") from exc
        return JobSpec(name="(every)", path="-", line=0, timeout_s=1, every_s=every, tz=zone_name)
    if " " in expr_or_job.strip() or expr_or_job.startswith("@"):
        try:
            expr = cron.validate(expr_or_job)
        except cron.CronError as exc:
            raise click.BadParameter(f"{exc}\n  expected {exc.expected}") from exc
        return JobSpec(name="(expression)", path="-", line=0, timeout_s=1, cron=expr, tz=zone_name)
    specs = _load(cfg)
    if expr_or_job not in specs:
        _fail(
            f"{expr_or_job!r} is neither a cron expression nor a job in {cfg.jobs}/; "
            "`sched list` shows the jobs",
            EXIT_USAGE,
        )
    # A job fires in its own zone: --tz only changes how its times are shown.
    return specs[expr_or_job]


def _utc_option(func: Any) -> Any:
    return click.option(
        "--utc", is_flag=True, envvar="SCHED_UTC", help="Show times in UTC, not the local zone."
    )(func)


def _styled(status: RunStatus | str | None) -> str:
    """A status, coloured on a terminal unless NO_COLOR is set."""
    from scheduler.cli_output import colour_wanted
    from scheduler.display import STATUS_COLOURS

    if status is None:
        return "-"
    if not colour_wanted():
        return str(status)
    return click.style(str(status), fg=STATUS_COLOURS.get(RunStatus(status)))


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_utc_option
@click.pass_obj
def list_cmd(cfg: Config, as_json: bool, utc: bool) -> None:
    """List the jobs: schedule in words, zone, timeout, policies, next fire, last status.

    \b
    Example:
      sched list
      sched list --json | jq '.[] | select(.last_status == "failed")'
    """
    from scheduler import display
    from scheduler.cli_output import fit_table, terminal_width

    specs = _load(cfg, compare=True)
    last, paused, loaded = _last_and_paused(cfg, specs)
    from scheduler import cli_output

    now = datetime.now(UTC)
    rows = [
        cli_output.list_row(spec, last.get(spec.name), spec.name in paused, now)
        for spec in specs.values()
    ]
    if loaded:
        _say_differs(cfg, loaded, in_sync=False)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [["JOB", "SCHEDULE", "TZ", "TIMEOUT", "POLICIES", "NEXT FIRE", "LAST"]]
    for row, spec in zip(rows, specs.values(), strict=True):
        run = last.get(spec.name)
        nxt = row["next_fire"] and datetime.fromisoformat(row["next_fire"].replace("Z", "+00:00"))
        last_text = f"{run.status} {display.ago(run.scheduled_for, now)}" if run else "-"
        table.append(
            [
                spec.name + (" (paused)" if row["paused"] else ""),
                f"{spec.schedule} ({row['description']})",
                spec.tz,
                format_seconds(spec.timeout_s),
                display.policies(spec),
                _local_and_utc(nxt, utc) if nxt else "-",
                last_text,
            ]
        )
    for line in fit_table(table, terminal_width(), shrink=1):
        click.echo(line)


def _local_and_utc(moment: datetime, utc: bool) -> str:
    """`2026-11-27 12:35:00 CET (11:35:00Z)`: both clocks people look at; UTC only with --utc."""
    from scheduler import display
    from scheduler.cli_output import zone_label

    if utc or zone_label(moment) == "UTC":  # a local zone equal to UTC is shown once
        return display.when(moment, utc=True)
    return f"{display.when(moment)} ({moment.astimezone(UTC).strftime('%H:%M:%SZ')})"


def _last_and_paused(
    cfg: Config, specs: dict[str, JobSpec]
) -> tuple[dict[str, Run], set[str], dict[str, dict[str, str]]]:
    """Last run per job, paused jobs and what the live processes run, when a Redis is
    reachable (list works without)."""
    from scheduler import embedded
    from scheduler.errors import StoreError, StoreUnavailable
    from scheduler.store import Store

    url = cfg.redis_url or embedded.socket_url(cfg.state_dir)
    if not cfg.redis_url and not embedded.is_alive(url):
        return {}, set(), {}
    store = Store(url, cfg.namespace)
    try:
        try:
            store.ping()
        except StoreError as exc:
            _fail(str(exc))
        return store.last_runs(list(specs)), store.paused_jobs(), store.loaded()
    except StoreUnavailable:
        return {}, set(), {}  # it went away meanwhile: the definitions still list
    finally:
        store.close()


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option("--from", "start", required=True, help="ISO instant the range starts after.")
@click.option("--to", "end", required=True, help="ISO instant the range ends at (included).")
@click.option(
    "--down",
    "down",
    multiple=True,
    metavar="ISO..ISO",
    help="A span with no scheduler running (repeatable).",
)
@click.option(
    "--duration",
    "durations",
    multiple=True,
    metavar="JOB=5m",
    help="How long each run of JOB takes (default 0; repeatable).",
)
@click.option("--fail", "failing", multiple=True, metavar="JOB", help="Runs of JOB fail.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of run objects.")
@click.pass_obj
def simulate(
    cfg: Config,
    jobs: tuple[str, ...],
    start: str,
    end: str,
    down: tuple[str, ...],
    durations: tuple[str, ...],
    failing: tuple[str, ...],
    workers: int,
    as_json: bool,
) -> None:
    """Every fire the scheduler would make over a range, and what would happen to it.

    Runs the scheduler's own fire-time, DST, catch-up, overlap and retry rules over the
    jobs folder (or the JOBS named), with the scheduler down over each --down span.

    \b
    Example:
      sched simulate backup.nightly --from 2027-03-27T00:00Z --to 2027-03-29T00:00Z \\
        --down 2027-03-28T01:00+01:00..2027-03-28T04:00+02:00 --duration backup.nightly=2h
    """
    from scheduler import simulate as sim

    specs = _load(cfg)
    chosen = _chosen_jobs(specs, jobs)
    durations_s = _job_values(specs, durations)
    for name in failing:
        _known_job(specs, name, "--fail")
    windows = [_window(text) for text in down]
    first, last = _parse_from(start, "--from"), _parse_from(end, "--to")
    if last <= first:
        raise click.BadParameter(f"{end!r} is not after --from {start!r}", param_hint="--to")
    outcome = sim.simulate_fast(
        sim.Simulation(chosen, first, last, windows, durations_s, frozenset(failing), workers)
    )
    import gc

    gc.disable()  # what follows makes objects by the million, none in a cycle
    if as_json:
        sim.write_json(outcome, sys.stdout)
        return
    for line in sim.describe_fast(outcome, chosen):
        click.echo(line)


def _chosen_jobs(specs: dict[str, JobSpec], names: tuple[str, ...]) -> list[JobSpec]:
    for name in names:
        _known_job(specs, name, "JOBS")
    picked = [specs[n] for n in names] if names else list(specs.values())
    return [spec for spec in picked if spec.cron or spec.every_s]


def _known_job(specs: dict[str, JobSpec], name: str, where: str) -> None:
    if name not in specs:
        raise click.BadParameter(
            f"{name!r} is not a job in the jobs folder; `sched list` shows them",
            param_hint=where,
        )


def _job_values(specs: dict[str, JobSpec], items: tuple[str, ...]) -> dict[str, float]:
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption

    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise click.BadParameter(
                f"{item!r}: expected JOB=DURATION, e.g. nightly=5m", param_hint="--duration"
            )
        _known_job(specs, name, "--duration")
        try:
            out[name] = parse_duration(value, option=f"--duration {name}")
        except InvalidOption as exc:
            raise click.BadParameter(
                f"{exc}; expected {exc.expected}", param_hint="--duration"
            ) from exc
    return out


def _window(text: str) -> Any:
    from scheduler.simulate import Window

    lo, dots, hi = text.partition("..")
    if not dots:
        raise click.BadParameter(
            f"{text!r}: expected ISO..ISO, e.g. 2027-03-28T01:00+01:00..2027-03-28T04:00+02:00",
            param_hint="--down",
        )
    first, last = _parse_from(lo, "--down"), _parse_from(hi, "--down")
    if last <= first:
        raise click.BadParameter(f"{text!r}: the end is not after the start", param_hint="--down")
    return Window(first, last)


def _known_jobs(cfg: Config) -> list[str]:
    """The job names of the jobs folder, or none when it does not load (a read command still
    works over the history then)."""
    from scheduler.errors import DefinitionError, InvalidOption
    from scheduler.loader import load_jobs

    try:
        return list(load_jobs(cfg.jobs))
    except (DefinitionError, InvalidOption):
        return []


PREFIX_SCAN_LIMIT = 10_000


def _resolve_run(cfg: Config, store: Store, ref: str) -> str:
    """The run id that `ref` names: a run id, a unique prefix of one, or a job (its latest run).

    An unknown name fails (exit 1) with the close job names.
    """
    from scheduler.cli_checks import did_you_mean
    from scheduler.errors import UnknownRun

    try:
        return store.get_run(ref).id
    except UnknownRun:
        pass
    job, at, _ = ref.partition("@")
    if at:
        found = [
            run.id
            for run in store.iter_history(job=job, limit=PREFIX_SCAN_LIMIT)
            if run.id.startswith(ref)
        ]
        if len(found) == 1:
            return found[0]
        if found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            _fail(f"{ref!r} is the start of {len(found)} run ids ({shown}); give more of it")
    else:
        latest = store.last_runs([job]).get(job)
        if latest is not None:
            return latest.id
    known = _known_jobs(cfg)
    if job in known:
        _fail(f"job {job!r} has no run yet" + ("" if not at else f" matching {ref!r}"))
    _fail(
        f"no run or job {ref!r}{did_you_mean(job, known)}; `sched history` lists recent runs, "
        "`sched list` the jobs"
    )


def _check_job_exists(cfg: Config, store: Store, job: str) -> None:
    """`sched history nosuchjob`: say there is no such job (exit 2), rather than list nothing."""
    from scheduler.cli_checks import did_you_mean

    known = _known_jobs(cfg)
    if job in known or store.last_runs([job]):
        return
    _fail(
        f"no job {job!r} in {cfg.jobs}/ and no run of it in the history"
        f"{did_you_mean(job, known)}; `sched list` shows the jobs",
        EXIT_USAGE,
    )


# -- history ----------------------------------------------------------------------------------

STATUS_CHOICE = click.Choice([str(s) for s in RunStatus])


@cli.command()
@click.argument("job", required=False)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=STATUS_CHOICE,
    help="Only runs with this status (repeatable).",
)
@click.option("--since", default=None, help="Only runs scheduled since: 2h, 30m, or ISO time.")
@click.option("--until", default=None, help="Only runs scheduled until: 1h (ago) or ISO time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of run objects.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON run object per line.")
@_utc_option
@click.pass_obj
def history(
    cfg: Config,
    job: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    as_jsonl: bool,
    utc: bool,
) -> None:
    """Show runs, newest first, with a count per status at the end.

    \b
    Example:
      sched history
      sched history examples.tick --status failed --status timed-out --since 2h
      sched history --since 1d --limit 100000 --jsonl > runs.jsonl
    """
    since_at = _parse_since(since, "--since")
    until_at = _parse_since(until, "--until")
    if since_at and until_at and until_at < since_at:
        raise click.BadParameter(
            f"{until!r} is before --since {since!r}: nothing can match; did you swap them?",
            param_hint="--until",
        )
    with _store(cfg) as store:
        if job is not None:
            _check_job_exists(cfg, store, job)
        runs = store.iter_history(
            job=job,
            statuses=[RunStatus(s) for s in statuses],
            since=since_at,
            until=until_at,
            limit=limit,
        )
        if as_json or as_jsonl:
            _stream_json(runs, lines=as_jsonl)
            return
        _history_table(list(runs), utc)


def _stream_json(runs: Iterator[Run], *, lines: bool) -> None:
    """Write runs as they are read, so a large history never sits in memory at once."""
    if lines:
        for run in runs:
            click.echo(json.dumps(run.to_json()))
        return
    click.echo("[", nl=False)
    for i, run in enumerate(runs):
        click.echo(("," if i else "") + "\n  " + json.dumps(run.to_json()), nl=False)
    click.echo("\n]")


def _history_table(runs: list[Run], utc: bool) -> None:
    from scheduler import display
    from scheduler.cli_output import fit_table, terminal_width

    if not runs:
        click.echo("no runs match")
        return
    table = [["RUN", "STATUS", "SCHEDULED", "DURATION", "EXIT", "REASON"]]
    for run in runs:
        exit_text = run.signal or ("" if run.exit_code is None else str(run.exit_code))
        table.append(
            [
                run.id,
                str(run.status),
                display.when(run.scheduled_for, utc),
                display.human_duration(run.duration_s),
                exit_text,
                run.reason or "",
            ]
        )
    lines = fit_table(table, terminal_width(), shrink=len(table[0]) - 1)
    click.echo(lines[0])
    for run, line in zip(runs, lines[1:], strict=True):
        # Colour only the status word, after the columns are aligned on plain text.
        head, _, rest = line.partition(str(run.status))
        click.echo(head + _styled(run.status) + rest)
    click.echo(display.status_counts([r.status for r in runs]))


@cli.command()
@click.argument("run_id", metavar="RUN_ID|PREFIX|JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the run as one JSON object.")
@_utc_option
@click.pass_obj
def show(cfg: Config, run_id: str, as_json: bool, utc: bool) -> None:
    """Show every field of one run, its output tail and its traceback.

    The run is named by its id, a unique start of its id, or a job (its latest run).

    \b
    Example:
      sched show 'examples.tick@20261127T101500Z'
      sched show examples.tick            # its latest run
      sched show 'examples.tick@2026112'  # a unique prefix
    """
    from scheduler import display
    from scheduler.cli_output import when_ms
    from scheduler.errors import UnknownRun

    with _store(cfg) as store:
        try:
            run = store.get_run(_resolve_run(cfg, store, run_id))
        except UnknownRun as exc:
            _fail(str(exc))
    data = run.to_json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for name, value in data.items():
        if name in ("output", "error", "result") or value is None:
            continue
        moment = getattr(run, name)
        if isinstance(moment, datetime):
            value = when_ms(moment, utc)
        elif name == "duration_s":
            value = display.human_duration(run.duration_s)
        elif name == "status":
            value = _styled(run.status)
        click.echo(f"{name:>14}: {value}")
    if run.result is not None:
        click.echo(f"{'result':>14}: {json.dumps(run.result)}")
    if run.error:
        click.echo(f"\n--- error: {run.error.get('type')}: {run.error.get('message')}")
        click.echo(run.error.get("traceback", "").rstrip())
    click.echo("\n--- output (tail)")
    click.echo((run.output or "(none)").rstrip())


@cli.command()
@click.argument("run_id", metavar="RUN_ID|PREFIX|JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the run ends.")
@click.pass_obj
def logs(cfg: Config, run_id: str, follow: bool) -> None:
    """Print the captured output (tail of stdout and stderr) of a run.

    The run is named by its id, a unique start of its id, or a job (its latest run).

    With -f, a running run's output is shown as it is written (within about a second), and
    the command ends when the run does.

    \b
    Example:
      sched logs -f 'backup.nightly@20261127T020000Z'
    """
    from scheduler.errors import UnknownRun

    with _store(cfg) as store:
        run_id = _resolve_run(cfg, store, run_id)
        try:
            status, total, text = store.live_output(run_id)
        except UnknownRun as exc:
            _fail(str(exc))
        if not follow:
            click.echo(text, nl=False)
            return
        _follow(store, run_id, status, total, text)


def _follow(store: Store, run_id: str, status: str, total: int, text: str) -> None:
    """Print what the run writes, as heartbeats bring it, until it ends."""
    shown = 0  # bytes of the run's output printed so far
    while True:
        body = _without_header(text).encode()
        new = min(total - shown, len(body))
        if new > 0:
            click.echo(body[len(body) - new :].decode(errors="replace"), nl=False)
            shown = total
        if status not in PENDING:
            click.echo(f"\n[{run_id}: {status}]", err=True)
            return
        time.sleep(0.3)  # polling a run's output for a person to read
        status, total, text = store.live_output(run_id)


def _without_header(text: str) -> str:
    """The output tail without the `[... N earlier bytes not kept ...]` line."""
    if text.startswith("[... ") and " earlier bytes not kept ...]\n" in text:
        return text.split("]\n", 1)[1]
    return text


@cli.command()
@click.argument("job")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the run to end and exit as the job would under timeout(1): 0 completed, "
    "the job's exit code when it failed (1 for an exception), 124 timed-out, 128+N killed by "
    "signal N, 125 when sched could not carry it to an end (lost, skipped, no live worker "
    "serves its queue, Redis unreachable).",
)
@click.pass_obj
def trigger(cfg: Config, job: str, wait: bool) -> None:
    """Run a job now (trigger `manual`), whatever its schedule.

    Without --wait: exit 0 once the run is queued.

    \b
    Example:
      sched trigger examples.tick --wait && echo done
    """
    from scheduler import actions

    specs = _load(cfg)
    if job not in specs:
        _no_such_job(cfg, job, specs)
    spec = specs[job]
    runtime_code = EXIT_NOT_CARRIED if wait else EXIT_RUNTIME
    with _store(cfg, start_if_needed=False, runtime_code=runtime_code) as store:
        run_id = actions.trigger(store, spec)
        click.echo(f"queued {run_id}")
        if not wait:
            return
        run = _wait_final(store, run_id, spec.queue)
    click.echo(f"{run.id}: {run.status}" + (f" ({run.reason})" if run.reason else ""))
    sys.exit(wait_exit_code(run))


EXIT_TIMED_OUT = 124
"""`trigger --wait` of a run that timed out (as timeout(1) exits)."""
EXIT_NOT_CARRIED = 125
"""`trigger --wait` when sched could not carry the run to an end (as timeout(1) exits when it
fails itself): lost, skipped, no live worker for its queue, Redis unreachable."""


def wait_exit_code(run: Run) -> int:
    """The exit code of `sched trigger --wait` for a run that ended (docs/cli.md)."""
    import signal

    if run.status is RunStatus.COMPLETED:
        return 0
    if run.status is RunStatus.TIMED_OUT:
        return EXIT_TIMED_OUT
    if run.status is RunStatus.KILLED:
        try:
            return 128 + signal.Signals[run.signal or ""].value
        except KeyError:  # asked to stop, it exited by itself: the stop was a SIGTERM
            return 128 + signal.SIGTERM.value
    if run.status is RunStatus.FAILED:
        code = run.exit_code
        return code if code is not None and 0 < code < 256 else 1
    return EXIT_NOT_CARRIED  # lost, skipped, missed: the job did not run to an end


def _no_such_job(cfg: Config, job: str, specs: dict[str, JobSpec]) -> NoReturn:
    from scheduler.cli_checks import did_you_mean

    _fail(
        f"no job {job!r} in {cfg.jobs}/{did_you_mean(job, specs)}; `sched list` shows the jobs",
        EXIT_USAGE,
    )


# How long `trigger --wait` waits for a worker of the run's queue to show up (a worker
# announces itself within a second of starting) before it gives up.
NO_WORKER_PATIENCE_S = 3.0


def _wait_final(store: Store, run_id: str, queue: str) -> Run:
    """Poll until the run ends; give up (exit 125) while it is queued and no live worker
    serves its queue, rather than wait for ever."""
    delay = 0.05
    unserved_since: float | None = None
    while True:
        run: Run = store.get_run(run_id)
        if run.status.final:
            return run
        if run.status is RunStatus.QUEUED and queue not in _live_queues(store):
            unserved_since = unserved_since or time.monotonic()
            if time.monotonic() - unserved_since >= NO_WORKER_PATIENCE_S:
                _fail(
                    f"no live worker serves queue {queue!r}: {run_id} stays queued until one "
                    f"does (`sched worker --queue {queue}`, or `sched run`); not waiting",
                    EXIT_NOT_CARRIED,
                )
        else:
            unserved_since = None
        time.sleep(delay)  # polling the store for a person waiting at a terminal
        delay = min(delay * 1.5, 1.0)


@cli.command()
@click.argument("run_id")
@click.pass_obj
def kill(cfg: Config, run_id: str) -> None:
    """Stop a run: SIGTERM to its process group, SIGKILL after the grace; status `killed`.

    A queued run is marked killed at once; a running one is stopped by its worker within a
    heartbeat.

    \b
    Example:
      sched kill 'backup.nightly@20261127T020000Z'
    """
    from scheduler.errors import UnknownRun

    with _store(cfg, start_if_needed=False) as store:
        try:
            before = store.kill(run_id, KillCause.OPERATOR)
        except UnknownRun as exc:
            _fail(str(exc))
    if before == "running":
        click.echo(f"asked the worker of {run_id} to stop it (reason: operator)")
    elif before == "queued":
        click.echo(f"{run_id} was queued: recorded killed (reason: operator)")
    else:
        _fail(f"{run_id} already ended: {before}")


@cli.command()
@click.argument("job")
@click.pass_obj
def pause(cfg: Config, job: str) -> None:
    """Pause a job: its fires are recorded `skipped` (reason `paused`) until resumed.

    \b
    Example:
      sched pause backup.nightly
    """
    specs = _load(cfg)
    if job not in specs:
        _no_such_job(cfg, job, specs)
    with _store(cfg) as store:
        changed = store.pause(job)
    click.echo(f"paused {job}" if changed else f"{job} was already paused")


@cli.command()
@click.argument("job")
@click.pass_obj
def resume(cfg: Config, job: str) -> None:
    """Resume a paused job.

    \b
    Example:
      sched resume backup.nightly
    """
    with _store(cfg) as store:
        changed = store.resume(job)
    click.echo(f"resumed {job}" if changed else f"{job} was not paused")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def workers(cfg: Config, as_json: bool) -> None:
    """List live workers: host, pid, queues, current run, last heartbeat.

    \b
    Example:
      sched workers --json
    """
    from scheduler import display
    from scheduler.cli_output import worker_json
    from scheduler.model import from_ms

    with _store(cfg, start_if_needed=False) as store:
        rows = store.workers()
    if as_json:
        click.echo(json.dumps([worker_json(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("no live workers")
        return
    now = datetime.now(UTC)
    table = [["WORKER", "HOST", "PID", "QUEUES", "CURRENT RUN", "HEARTBEAT"]]
    for r in rows:
        beat = r.get("heartbeat_at")
        table.append(
            [
                r["id"],
                r.get("host", ""),
                r.get("pid", ""),
                r.get("queues", ""),
                r.get("current", "-"),
                display.ago(from_ms(int(beat)), now) if beat else "-",
            ]
        )
    for line in display.table(table):
        click.echo(line)


# -- processes --------------------------------------------------------------------------------


def _timing_options(func: Any) -> Any:
    func = click.option(
        "--warm-timeout",
        default=None,
        envvar="SCHED_WARM_TIMEOUT",
        help="After a first SIGTERM/Ctrl-C, stop cold by itself after this long (e.g. 25s, "
        "below your platform's kill timeout). Default: wait for running jobs.",
    )(func)
    func = click.option(
        "--grace",
        default="5s",
        show_default=True,
        envvar="SCHED_GRACE",
        help="How long past its deadline a run may take before its process group is killed.",
    )(func)
    func = click.option(
        "--lease",
        default="15s",
        show_default=True,
        envvar="SCHED_LEASE",
        help="How long a run stays `running` without its worker's heartbeat.",
    )(func)
    return func


def _wait_option(func: Any) -> Any:
    return click.option(
        "--wait-for-redis",
        "wait_for_redis",
        default=None,
        envvar="SCHED_WAIT_FOR_REDIS",
        metavar="DURATION",
        help="At start, wait this long (e.g. 2m) for a Redis that cannot be reached yet, "
        "instead of exiting at once. Default: do not wait.",
    )(func)


def _wait_s(value: str | None) -> float:
    """Seconds of --wait-for-redis (0 when not given); a bad value exits 2 naming it."""
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption

    if value is None:
        return 0.0
    try:
        return parse_duration(value, option="--wait-for-redis")
    except InvalidOption as exc:
        _fail(f"{exc}; expected {exc.expected}", EXIT_USAGE)


def _max_runs_option(func: Any) -> Any:
    return click.option(
        "--max-stored-runs",
        "max_stored_runs",
        default=None,
        envvar="SCHED_MAX_STORED_RUNS",
        type=click.IntRange(1_000, None),
        help="Runs the whole deployment keeps in Redis (all jobs together; default "
        "1,000,000): beyond it the oldest finished runs are forgotten first.",
    )(func)


def _watch_option(func: Any) -> Any:
    return click.option(
        "--no-watch",
        is_flag=True,
        envvar="SCHED_NO_WATCH",
        help="Do not watch the jobs folder for changes; reload it only on SIGHUP.",
    )(func)


def _metrics_option(func: Any) -> Any:
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        envvar="SCHED_METRICS_PORT",
        help="Serve Prometheus metrics on this port (from the scheduler process).",
    )(func)


def _check_hooks_env() -> None:
    """Fail early (exit 2) on a bad SCHED_ON_FAILURE / SCHED_ON_LATE / SCHED_HEARTBEAT_*."""
    from scheduler.errors import InvalidOption
    from scheduler.options import ENV_ON_FAILURE, ENV_ON_LATE, hook_from_env
    from scheduler.pings import heartbeat_from_env

    for name in (ENV_ON_FAILURE, ENV_ON_LATE):
        try:
            hook_from_env(name)
        except InvalidOption as exc:
            _fail(f"{exc}; expected {exc.expected}", EXIT_USAGE)
    try:
        heartbeat_from_env()
    except InvalidOption as exc:
        _fail(f"{exc}; expected {exc.expected}", EXIT_USAGE)


def _timings(grace: str, lease: str, warm_timeout: str | None = None) -> Any:
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption
    from scheduler.runner import Timings

    try:
        return Timings(
            grace_s=parse_duration(grace, option="--grace"),
            lease_s=parse_duration(lease, option="--lease"),
            warm_timeout_s=(
                parse_duration(warm_timeout, option="--warm-timeout") if warm_timeout else None
            ),
        )
    except InvalidOption as exc:
        raise click.BadParameter(f"{exc}; expected {exc.expected}") from exc


DEFAULT_WEB_BIND = "127.0.0.1:8765"


def _web_settings(bind: str, read_only: bool, token: str | None) -> Any:
    from scheduler.web.server import WebConfigError, settings

    try:
        return settings(bind, read_only=read_only, token=token)
    except WebConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


@cli.command()
@click.option(
    "--bind",
    default=DEFAULT_WEB_BIND,
    show_default=True,
    envvar="SCHED_WEB_BIND",
    help="HOST:PORT to listen on; anything but loopback needs --token.",
)
@click.option(
    "--read-only",
    is_flag=True,
    envvar="SCHED_WEB_READ_ONLY",
    help="Pages and API only: no actions.",
)
@click.option(
    "--token",
    default=None,
    envvar="SCHED_WEB_TOKEN",
    help="Access token every request must carry (at least 16 characters).",
)
@click.pass_obj
def web(cfg: Config, bind: str, read_only: bool, token: str | None) -> None:
    """Serve the web dashboard and its JSON API (/api/v1) over a running deployment.

    Pages: overview, each job's fires against its runs, each run (live output), workers;
    actions: trigger, pause, resume, kill (not with --read-only). `sched run` serves it
    too, unless given --no-web.

    \b
    Example:
      sched web                                   # http://127.0.0.1:8765/
      SCHED_WEB_TOKEN=... sched web --bind 0.0.0.0:8765 --read-only
    """
    from scheduler.web.server import WebConfigError, listen, serve

    _setup_logging(cfg.log_format)
    specs = _load(cfg)
    settings = _web_settings(bind, read_only, token)
    try:
        sock = listen(settings)
    except WebConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    with _store(cfg, start_if_needed=False) as store:
        url = store.url
    sys.exit(serve(settings, specs, url, cfg.namespace, sock))


@cli.command()
@click.option(
    "--workers",
    "n_workers",
    default=2,
    show_default=True,
    type=click.IntRange(0, 256),
    help="Worker processes to start; 0: schedule only, runs wait for a `sched worker`.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Queue the workers serve (repeatable). Default: every queue the jobs name.",
)
@_timing_options
@_metrics_option
@click.option(
    "--web-bind",
    default=None,
    envvar="SCHED_WEB_BIND",
    help=f"Where the dashboard listens (default {DEFAULT_WEB_BIND}, or a free port if taken; "
    "anything but loopback needs SCHED_WEB_TOKEN).",
)
@click.option("--no-web", is_flag=True, envvar="SCHED_NO_WEB", help="Do not serve the dashboard.")
@_watch_option
@_wait_option
@_max_runs_option
@click.pass_obj
def run(
    cfg: Config,
    n_workers: int,
    queues: tuple[str, ...],
    grace: str,
    lease: str,
    warm_timeout: str | None,
    metrics_port: int | None,
    web_bind: str | None,
    no_web: bool,
    no_watch: bool,
    wait_for_redis: str | None,
    max_stored_runs: int | None,
) -> None:
    """Start the scheduler and workers (and an embedded Redis unless --redis-url is given).

    First Ctrl-C / SIGTERM: warm shutdown (running jobs finish). Second: cold (they are killed
    and recorded `killed`, reason `shutdown`).

    \b
    Example:
      sched run --workers 4
    """
    from scheduler.errors import StoreError
    from scheduler.runner import Plan, Supervisor
    from scheduler.store import Store
    from scheduler.urls import mask_url

    _setup_logging(cfg.log_format)
    specs = _load(cfg)
    _check_hooks_env()
    timings = _timings(grace, lease, warm_timeout)
    wait_s = _wait_s(wait_for_redis)
    _check_metrics_port(metrics_port)
    server = None
    url = _checked_url(cfg)
    if url is None:
        server = _start_embedded(cfg.state_dir)
        url = server.url
        logging.getLogger("sched").info("embedded Redis on %s (data in %s/)", url, cfg.state_dir)
    try:
        probe = Store(url, cfg.namespace)
        try:
            _ping(probe, wait_s)
        except StoreError as exc:
            _fail(str(exc))
        finally:
            probe.close()
        # The dashboard's port is claimed once Redis answered, so a bad URL or password is
        # the one thing a failing start prints.
        web_settings = None
        if not no_web:
            from scheduler.web.server import WebConfigError, claim_port

            web_settings = _web_settings(
                web_bind or DEFAULT_WEB_BIND, False, os.environ.get("SCHED_WEB_TOKEN")
            )
            try:
                web_settings = claim_port(web_settings, fall_back=web_bind is None)
            except WebConfigError as exc:
                _fail(str(exc), EXIT_USAGE)
        served = _served_queues(cfg, specs, queues, n_workers)
        logging.getLogger("sched").info(
            "sched: %d jobs from %s/, %d workers (queue%s %s), Redis %s",
            len(specs),
            cfg.jobs,
            n_workers,
            "s" if len(served) > 1 else "",
            ", ".join(served),
            mask_url(url),
        )
        plan = Plan(
            specs,
            url,
            cfg.namespace,
            jobs=cfg.jobs,
            workers=n_workers,
            queues=served,
            timings=timings,
            metrics_port=metrics_port,
            web=web_settings,
            default_timeout_s=_default_timeout_s(cfg),
            watch=not no_watch,
            # With no --queue, sched run serves every queue its jobs name, reloads included.
            queues_from_jobs=not queues,
            max_stored_runs=max_stored_runs,
        )
        if web_settings is not None:
            logging.getLogger("sched").info("sched: dashboard on %s", web_settings.url)
        code = Supervisor(plan).run()
    finally:
        if server is not None:
            server.stop()
    sys.exit(code)


def _served_queues(
    cfg: Config, specs: dict[str, JobSpec], queues: tuple[str, ...], n_workers: int
) -> tuple[str, ...]:
    """The queues `sched run`'s workers serve, with a warning for each thing that will wait."""
    from scheduler.cli_checks import queues_of, unserved, unserved_warnings
    from scheduler.cli_output import log_event

    log = logging.getLogger("sched")
    if not specs:
        log_event(
            log,
            logging.WARNING,
            "no_jobs",
            "warning: no jobs in %s/: nothing will be scheduled (add a file with @job, "
            "or pass --jobs DIR)",
            cfg.jobs,
        )
    served = tuple(queues) or queues_of(specs)
    if n_workers == 0:
        log.warning(
            "--workers 0: this process only schedules; runs wait in their queues until a "
            "`sched worker` takes them"
        )
        return served
    for queue, line in unserved_warnings(specs, served, "worker of this `sched run`"):
        jobs = ",".join(sorted(unserved(specs, served)[queue]))
        log_event(log, logging.WARNING, "queue_unserved", "warning: %s", line, job=jobs)
    return served


def _live_queues(store: Store) -> set[str]:
    """Every queue some live worker serves."""
    return {q for row in store.workers() for q in row.get("queues", "").split(",") if q}


def _warn_unserved(store: Store, specs: dict[str, JobSpec], own: Iterable[str]) -> None:
    """Warn about each queue of the jobs that neither this process nor a live worker serves."""
    from scheduler.cli_checks import unserved, unserved_warnings
    from scheduler.cli_output import log_event

    served = _live_queues(store) | set(own)
    for queue, line in unserved_warnings(specs, served, "live worker"):
        log_event(
            logging.getLogger("sched"),
            logging.WARNING,
            "queue_unserved",
            "warning: %s",
            line,
            job=",".join(sorted(unserved(specs, served)[queue])),
        )


def _start_embedded(state_dir: Path) -> EmbeddedRedis:
    """The state folder's server for `sched run`; refused at once when another one owns it."""
    from scheduler import embedded
    from scheduler.cli_checks import state_dir_problem

    problem = state_dir_problem(state_dir)
    if problem:
        _fail(problem, EXIT_USAGE)
    try:
        # A read command may hold the folder for a moment (its own short-lived server): wait
        # that long, not for a `sched run` that will not go away.
        return embedded.EmbeddedRedis(state_dir).start(lock_wait_s=2.0)
    except embedded.EmbeddedRedisError as exc:
        _fail(str(exc))


def _check_metrics_port(port: int | None) -> None:
    """A --metrics-port nothing can listen on stops the command before anything starts."""
    from scheduler.cli_checks import port_problem
    from scheduler.runner import METRICS_ADDR

    if port is not None:
        problem = port_problem(port, METRICS_ADDR)
        if problem:
            _fail(problem, EXIT_USAGE)


@cli.command()
@_timing_options
@_metrics_option
@_watch_option
@_wait_option
@_max_runs_option
@click.pass_obj
def scheduler(
    cfg: Config,
    grace: str,
    lease: str,
    warm_timeout: str | None,
    metrics_port: int | None,
    no_watch: bool,
    wait_for_redis: str | None,
    max_stored_runs: int | None,
) -> None:
    """Run only the scheduler loop (several may run against one Redis).

    \b
    Example:
      SCHED_REDIS_URL=redis://redis:6379/0 sched scheduler
    """
    from scheduler.runner import Plan, run_scheduler

    _setup_logging(cfg.log_format)
    specs = _load(cfg)
    _check_hooks_env()
    _check_metrics_port(metrics_port)
    timings = _timings(grace, lease)
    with _store(cfg, start_if_needed=False, wait_s=_wait_s(wait_for_redis)) as store:
        url = store.url
        _warn_unserved(store, specs, ())
    plan = Plan(
        specs,
        url,
        cfg.namespace,
        jobs=cfg.jobs,
        timings=timings,
        metrics_port=metrics_port,
        default_timeout_s=_default_timeout_s(cfg),
        watch=not no_watch,
        max_stored_runs=max_stored_runs,
    )
    sys.exit(run_scheduler(plan))


@cli.command()
@click.option("--workers", "n_workers", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--queue",
    "queues",
    multiple=True,
    default=("default",),
    show_default=True,
    help="Queue to serve (repeatable; the first is preferred).",
)
@_timing_options
@_metrics_option
@_watch_option
@_wait_option
@click.pass_obj
def worker(
    cfg: Config,
    n_workers: int,
    queues: tuple[str, ...],
    grace: str,
    lease: str,
    warm_timeout: str | None,
    metrics_port: int | None,
    no_watch: bool,
    wait_for_redis: str | None,
) -> None:
    """Run worker processes only.

    \b
    Example:
      SCHED_REDIS_URL=redis://redis:6379/0 sched worker --workers 4 --queue heavy
    """
    from scheduler.runner import Plan, Supervisor, run_worker

    _setup_logging(cfg.log_format)
    specs = _load(cfg)
    _check_hooks_env()
    timings = _timings(grace, lease, warm_timeout)
    _check_metrics_port(metrics_port)
    with _store(cfg, start_if_needed=False, wait_s=_wait_s(wait_for_redis)) as store:
        url = store.url
        _warn_unserved(store, specs, queues)
    plan = Plan(
        specs,
        url,
        cfg.namespace,
        jobs=cfg.jobs,
        workers=n_workers,
        scheduler=False,
        queues=tuple(queues),
        timings=timings,
        metrics_port=metrics_port,
        default_timeout_s=_default_timeout_s(cfg),
        watch=not no_watch,
    )
    if n_workers == 1 and metrics_port is None:
        sys.exit(run_worker(plan))
    sys.exit(Supervisor(plan).run())


for _command in cli.commands.values():
    _command.params.extend(_subcommand_option(flag, settings) for flag, settings in COMMON_OPTIONS)
