"""The `sched` command line; the only module that imports click."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click

from scheduler.model import JobSpec, Run, RunStatus, format_seconds, iso

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


def _fail(message: str, code: int = EXIT_RUNTIME) -> NoReturn:
    click.echo(f"sched: {message}", err=True)
    sys.exit(code)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s.%(msecs)03d %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def _load(cfg: Config) -> dict[str, JobSpec]:
    from scheduler.durations import parse_duration
    from scheduler.errors import DefinitionError, InvalidOption
    from scheduler.loader import load_jobs

    timeout_s = 3600.0
    if cfg.default_timeout:
        try:
            timeout_s = parse_duration(cfg.default_timeout, option="--default-timeout")
        except InvalidOption as exc:
            _fail(f"{exc}; expected {exc.expected}", EXIT_USAGE)
    try:
        return load_jobs(cfg.jobs, default_timeout_s=timeout_s)
    except DefinitionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)


@contextmanager
def _store(cfg: Config, *, start_if_needed: bool = True) -> Iterator[Any]:
    """A connected Store: the given URL, the running embedded server, or a temporary one."""
    from scheduler import embedded
    from scheduler.errors import StoreError
    from scheduler.store import Store

    server = None
    url = cfg.redis_url
    if url is None:
        url = embedded.socket_url(cfg.state_dir)
        if not embedded.is_alive(url):
            if not start_if_needed or not cfg.state_dir.is_dir():
                _fail(
                    f"no Redis: nothing is running in {cfg.state_dir}/ and no --redis-url / "
                    "SCHED_REDIS_URL was given; start `sched run` first"
                )
            # `sched run` is not running: open its data read-write for this one command.
            server = embedded.EmbeddedRedis(cfg.state_dir).start()
            url = server.url
    store = Store(url, cfg.namespace)
    try:
        try:
            store.ping()
        except StoreError as exc:
            _fail(str(exc))
        yield store
    finally:
        store.close()
        if server is not None:
            server.stop()


def _parse_since(value: str | None) -> datetime | None:
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption

    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value, option="--since"))
    except InvalidOption as exc:
        raise click.BadParameter(
            f"{value!r}: {exc.why}; expected a duration such as 2h or 30m, or an ISO time"
        ) from exc


# -- the group --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--jobs",
    "jobs",
    default="jobs",
    envvar="SCHED_JOBS",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder of job definitions.",
)
@click.option(
    "--redis-url",
    envvar="SCHED_REDIS_URL",
    default=None,
    help="Redis to use (redis://, rediss://, unix://). Default: an embedded server.",
)
@click.option(
    "--state-dir",
    envvar="SCHED_STATE_DIR",
    default=".sched",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the embedded Redis keeps its data.",
)
@click.option(
    "--namespace",
    envvar="SCHED_NAMESPACE",
    default="sched",
    show_default=True,
    help="Key prefix, so several deployments can share one Redis.",
)
@click.option(
    "--default-timeout",
    envvar="SCHED_DEFAULT_TIMEOUT",
    default=None,
    help="Timeout of jobs that set none (default 1h).",
)
@click.version_option(package_name="sched", prog_name="sched")
@click.pass_context
def cli(
    ctx: click.Context,
    jobs: Path,
    redis_url: str | None,
    state_dir: Path,
    namespace: str,
    default_timeout: str | None,
) -> None:
    """sched: cron for Python teams, with hard timeouts and an honest run history.

    \b
    Example:
      sched run                 # run the jobs in ./jobs on an embedded Redis
      sched history --limit 20  # what ran, how it ended
    """
    ctx.obj = Config(jobs, redis_url, state_dir, namespace, default_timeout)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sched")


# -- definitions ------------------------------------------------------------------------------


@cli.command()
@click.pass_obj
def check(cfg: Config) -> None:
    """Load the jobs folder and report every problem (exit 2) or a summary (exit 0).

    \b
    Example:
      sched --jobs ./jobs check
    """
    from scheduler.loader import summarize

    specs = _load(cfg)
    _check_hooks_env()
    click.echo(summarize(specs, cfg.jobs))


@cli.command("next")
@click.argument("expr_or_job")
@click.option("--tz", default=None, help="Zone of a cron expression (default SCHED_TZ or UTC).")
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
      sched next backup.nightly
    """
    from scheduler import beat, cron

    spec = _spec_for(cfg, expr_or_job, tz)
    after = _parse_from(start)
    rows = []
    zone = cron.zone(spec.tz)
    for _ in range(count):
        after = beat.next_fire(spec, after)
        rows.append(
            {
                "job": spec.name,
                "at": iso(after),
                "local": after.astimezone(zone).isoformat(),
                "tz": spec.tz,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['local']}  ({row['at']})")


def _parse_from(start: str | None) -> datetime:
    if start is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{start!r} is not an ISO time, e.g. 2025-11-02T05:00Z", param_hint="--from"
        ) from exc
    if moment.tzinfo is None:
        raise click.BadParameter(f"{start!r} has no offset; add Z or +01:00", param_hint="--from")
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
    spec = specs[expr_or_job]
    if tz is not None:
        from dataclasses import replace

        spec = replace(spec, tz=tz)
    return spec


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def list_cmd(cfg: Config, as_json: bool) -> None:
    """List the jobs: schedule, zone, timeout, next fire and last status.

    \b
    Example:
      sched list --json
    """
    from scheduler import beat, embedded
    from scheduler.store import Store

    specs = _load(cfg)
    last: dict[str, Run] = {}
    url = cfg.redis_url or embedded.socket_url(cfg.state_dir)
    if cfg.redis_url or embedded.is_alive(url):
        store = Store(url, cfg.namespace)
        try:
            last = store.last_runs(list(specs))
        finally:
            store.close()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for spec in specs.values():
        nxt = beat.next_fire(spec, now) if (spec.cron or spec.every_s) else None
        run = last.get(spec.name)
        rows.append(
            {
                "job": spec.name,
                "kind": spec.kind,
                "schedule": spec.schedule,
                "tz": spec.tz,
                "timeout_s": spec.timeout_s,
                "overlap": str(spec.overlap),
                "catchup": str(spec.catchup),
                "queue": spec.queue,
                "where": spec.where,
                "next_fire": iso(nxt) if nxt else None,
                "last_status": str(run.status) if run else None,
                "last_run": run.id if run else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [["JOB", "SCHEDULE", "TZ", "TIMEOUT", "NEXT FIRE (UTC)", "LAST"]]
    for r in rows:
        table.append(
            [
                r["job"],
                r["schedule"],
                r["tz"],
                format_seconds(r["timeout_s"]),
                r["next_fire"] or "-",
                r["last_status"] or "-",
            ]
        )
    _print_table(table)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


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
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of run objects.")
@click.pass_obj
def history(
    cfg: Config,
    job: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show runs, newest first.

    \b
    Example:
      sched history examples.tick --status failed --status timed-out --since 2h
    """
    since_at = _parse_since(since)
    with _store(cfg) as store:
        runs = store.history(
            job=job, statuses=[RunStatus(s) for s in statuses], since=since_at, limit=limit
        )
    if as_json:
        click.echo(json.dumps([r.to_json() for r in runs], indent=2))
        return
    if not runs:
        click.echo("no runs match")
        return
    table = [["RUN", "STATUS", "SCHEDULED (UTC)", "DURATION", "EXIT", "REASON"]]
    for run in runs:
        exit_text = run.signal or ("" if run.exit_code is None else str(run.exit_code))
        table.append(
            [
                run.id,
                str(run.status),
                iso(run.scheduled_for),
                "" if run.duration_s is None else f"{run.duration_s:.3f}s",
                exit_text,
                (run.reason or "")[:70],
            ]
        )
    _print_table(table)


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as one JSON object.")
@click.pass_obj
def show(cfg: Config, run_id: str, as_json: bool) -> None:
    """Show every field of one run, its output tail and its traceback.

    \b
    Example:
      sched show 'examples.tick@20261127T101500Z'
    """
    from scheduler.errors import UnknownRun

    with _store(cfg) as store:
        try:
            run = store.get_run(run_id)
        except UnknownRun as exc:
            _fail(str(exc))
    data = run.to_json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for name, value in data.items():
        if name in ("output", "error", "result") or value is None:
            continue
        click.echo(f"{name:>14}: {value}")
    if run.result is not None:
        click.echo(f"{'result':>14}: {json.dumps(run.result)}")
    if run.error:
        click.echo(f"\n--- error: {run.error.get('type')}: {run.error.get('message')}")
        click.echo(run.error.get("traceback", "").rstrip())
    click.echo("\n--- output (tail)")
    click.echo((run.output or "(none)").rstrip())


@cli.command()
@click.argument("run_id")
@click.pass_obj
def logs(cfg: Config, run_id: str) -> None:
    """Print the captured output (tail of stdout and stderr) of a run.

    \b
    Example:
      sched logs 'examples.tick@20261127T101500Z'
    """
    from scheduler.errors import UnknownRun

    with _store(cfg) as store:
        try:
            run = store.get_run(run_id)
        except UnknownRun as exc:
            _fail(str(exc))
    click.echo(run.output or "", nl=False)


@cli.command()
@click.argument("job")
@click.option("--wait", is_flag=True, help="Wait for the end; exit with the job's exit code.")
@click.pass_obj
def trigger(cfg: Config, job: str, wait: bool) -> None:
    """Run a job now (trigger `manual`), whatever its schedule.

    \b
    Example:
      sched trigger examples.tick --wait
    """
    from scheduler.beat import run_policy

    specs = _load(cfg)
    if job not in specs:
        _fail(f"no job {job!r} in {cfg.jobs}/; `sched list` shows the jobs", EXIT_USAGE)
    spec = specs[job]
    now = datetime.now(UTC)
    run_id = f"{job}@manual-{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with _store(cfg, start_if_needed=False) as store:
        store.enqueue(
            run_id=run_id,
            job=job,
            scheduled_for=now,
            queue=spec.queue,
            overlap="allow",
            trigger="manual",
            timeout_s=spec.timeout_s,
            advance_last_fire=False,
            policy=run_policy(spec),
        )
        click.echo(f"queued {run_id}")
        if not wait:
            return
        run = _wait_final(store, run_id)
    click.echo(f"{run.id}: {run.status}" + (f" ({run.reason})" if run.reason else ""))
    if run.status is RunStatus.COMPLETED:
        sys.exit(0)
    sys.exit(run.exit_code or 1)


def _wait_final(store: Any, run_id: str) -> Run:
    delay = 0.05
    while True:
        run: Run = store.get_run(run_id)
        if run.status.final:
            return run
        time.sleep(delay)
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
            before = store.kill(run_id, "operator")
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
        _fail(f"no job {job!r} in {cfg.jobs}/; `sched list` shows the jobs", EXIT_USAGE)
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
    with _store(cfg, start_if_needed=False) as store:
        rows = store.workers()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no live workers")
        return
    table = [["WORKER", "QUEUES", "CURRENT RUN"]]
    table += [[r["id"], r.get("queues", ""), r.get("current", "-")] for r in rows]
    _print_table(table)


# -- processes --------------------------------------------------------------------------------


def _timing_options(func: Any) -> Any:
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


def _metrics_option(func: Any) -> Any:
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        envvar="SCHED_METRICS_PORT",
        help="Serve Prometheus metrics on this port (from the scheduler process).",
    )(func)


def _check_hooks_env() -> None:
    """Fail early (exit 2) on a bad SCHED_ON_FAILURE / SCHED_ON_LATE."""
    from scheduler.alerts import ENV_ON_FAILURE, ENV_ON_LATE, hook_from_env
    from scheduler.errors import InvalidOption

    for name in (ENV_ON_FAILURE, ENV_ON_LATE):
        try:
            hook_from_env(name)
        except InvalidOption as exc:
            _fail(f"{exc}; expected {exc.expected}", EXIT_USAGE)


def _timings(grace: str, lease: str) -> Any:
    from scheduler.durations import parse_duration
    from scheduler.errors import InvalidOption
    from scheduler.runner import Timings

    try:
        return Timings(
            grace_s=parse_duration(grace, option="--grace"),
            lease_s=parse_duration(lease, option="--lease"),
        )
    except InvalidOption as exc:
        raise click.BadParameter(f"{exc}; expected {exc.expected}") from exc


@cli.command()
@click.option(
    "--workers",
    "n_workers",
    default=2,
    show_default=True,
    type=click.IntRange(0, 256),
    help="Worker processes to start.",
)
@_timing_options
@_metrics_option
@click.pass_obj
def run(cfg: Config, n_workers: int, grace: str, lease: str, metrics_port: int | None) -> None:
    """Start the scheduler and workers (and an embedded Redis unless --redis-url is given).

    First Ctrl-C / SIGTERM: warm shutdown (running jobs finish). Second: cold (they are killed
    and recorded `killed`, reason `shutdown`).

    \b
    Example:
      sched run --workers 4
    """
    from scheduler import embedded
    from scheduler.errors import StoreError
    from scheduler.runner import Plan, Supervisor
    from scheduler.store import Store, mask_url

    _setup_logging()
    specs = _load(cfg)
    _check_hooks_env()
    timings = _timings(grace, lease)
    server = None
    url = cfg.redis_url
    if url is None:
        try:
            server = embedded.EmbeddedRedis(cfg.state_dir).start()
        except embedded.EmbeddedRedisError as exc:
            _fail(str(exc))
        url = server.url
        logging.getLogger("sched").info("embedded Redis on %s (data in %s/)", url, cfg.state_dir)
    try:
        probe = Store(url, cfg.namespace)
        try:
            probe.ping()
        except StoreError as exc:
            _fail(str(exc))
        finally:
            probe.close()
        logging.getLogger("sched").info(
            "sched: %d jobs from %s/, %d workers, Redis %s",
            len(specs),
            cfg.jobs,
            n_workers,
            mask_url(url),
        )
        plan = Plan(
            specs,
            url,
            cfg.namespace,
            workers=n_workers,
            timings=timings,
            metrics_port=metrics_port,
        )
        code = Supervisor(plan).run()
    finally:
        if server is not None:
            server.stop()
    sys.exit(code)


@cli.command()
@_timing_options
@_metrics_option
@click.pass_obj
def scheduler(cfg: Config, grace: str, lease: str, metrics_port: int | None) -> None:
    """Run only the scheduler loop (several may run against one Redis).

    \b
    Example:
      SCHED_REDIS_URL=redis://redis:6379/0 sched scheduler
    """
    from scheduler.runner import Plan, run_scheduler

    _setup_logging()
    specs = _load(cfg)
    _check_hooks_env()
    with _store(cfg, start_if_needed=False) as store:
        url = store.url
    plan = Plan(
        specs, url, cfg.namespace, timings=_timings(grace, lease), metrics_port=metrics_port
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
@click.pass_obj
def worker(
    cfg: Config,
    n_workers: int,
    queues: tuple[str, ...],
    grace: str,
    lease: str,
    metrics_port: int | None,
) -> None:
    """Run worker processes only.

    \b
    Example:
      SCHED_REDIS_URL=redis://redis:6379/0 sched worker --workers 4 --queue heavy
    """
    from scheduler.runner import Plan, Supervisor, run_worker

    _setup_logging()
    specs = _load(cfg)
    _check_hooks_env()
    timings = _timings(grace, lease)
    with _store(cfg, start_if_needed=False) as store:
        url = store.url
    plan = Plan(
        specs,
        url,
        cfg.namespace,
        workers=n_workers,
        scheduler=False,
        queues=tuple(queues),
        timings=timings,
        metrics_port=metrics_port,
    )
    if n_workers == 1 and metrics_port is None:
        sys.exit(run_worker(plan))
    sys.exit(Supervisor(plan).run())
