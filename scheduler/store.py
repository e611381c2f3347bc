"""The only module that talks to Redis: key builders, one Lua script per transition, typed methods.

Every key lives under one prefix with a hash tag (`{sched}:` by default) so that all of them
hash to one Redis Cluster slot and each script's keys are passed in KEYS.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions

from scheduler import scripts
from scheduler.errors import StoreCorrupt, StoreError, StoreUnavailable, UnknownRun
from scheduler.model import PENDING, RUN_FIELDS, Overlap, Run, RunStatus, Trigger, from_ms, to_ms
from scheduler.policy import Retry, RunPolicy, retry_plan
from scheduler.urls import mask_url

DEFAULT_NAMESPACE = "sched"
STATUSES = tuple(RunStatus)

# Server replies (their first word) after which the same call may succeed later.
RETRYABLE_REPLIES = {
    "OOM": "Redis is out of memory (maxmemory reached, noeviction)",
    "READONLY": "Redis is a read-only replica (failover or demotion)",
    "LOADING": "Redis is loading its data",
    "BUSY": "Redis is busy running a script",
    "MASTERDOWN": "the replica lost its primary",
    "TRYAGAIN": "Redis asks to try again",
    "CLUSTERDOWN": "the Redis cluster is down",
    "UNBLOCKED": "Redis ended a blocking call (the server changed role)",
    "NOREPLICAS": "Redis lacks the replicas it requires for writes",
    "NOAUTH": "Redis asks for authentication",
    "WRONGPASS": "Redis refused the credentials",
    "NOPERM": "Redis refused this user access (ACL)",
    "MISCONF": "Redis cannot persist its data (MISCONF)",
}
# Replies that mean a record is not what the scripts expect.
CORRUPT_REPLIES = ("WRONGTYPE",)


def translate(exc: BaseException) -> StoreError:
    """The package's own error for a redis-py (or socket) failure.

    Anything that is not plainly bad data is an outage: retrying is safe, crashing is not.
    A script error names the reply the script got (`user_script:12: OOM ...`), so the first
    known code anywhere in the message decides.
    """
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, redis.exceptions.TimeoutError):
        return StoreUnavailable("Redis did not answer in time", text)
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return StoreUnavailable(RETRYABLE_REPLIES["LOADING"], text)
    if isinstance(exc, redis.exceptions.ConnectionError | OSError):
        return StoreUnavailable("connection to Redis lost", text)
    if isinstance(exc, redis.exceptions.ResponseError):
        words = [word.lstrip("-") for word in text.replace(":", " ").split()]
        for word in words:
            if word in RETRYABLE_REPLIES:
                return StoreUnavailable(RETRYABLE_REPLIES[word], text)
        if any(word in CORRUPT_REPLIES for word in words) or "user_script" in text:
            return StoreCorrupt(f"Redis refused a transition: {text}")
        return StoreUnavailable("Redis refused a command", text)
    if isinstance(exc, redis.exceptions.DataError):
        return StoreCorrupt(f"a value cannot be sent to Redis: {text}")
    return StoreUnavailable("Redis failed", text)


P = ParamSpec("P")
R = TypeVar("R")


def guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Let only StoreUnavailable / StoreCorrupt (and UnknownRun) out of a store method."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except (redis.exceptions.RedisError, OSError) as exc:
            raise translate(exc) from exc

    return wrapper


def guarded_iter(method: Callable[P, Iterator[R]]) -> Callable[P, Iterator[R]]:
    """guarded() for a generator: errors raised while it is consumed are translated too."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        try:
            yield from method(*args, **kwargs)
        except StoreError:
            raise
        except (redis.exceptions.RedisError, OSError) as exc:
            raise translate(exc) from exc

    return wrapper


def decode_run(fields: Mapping[str, str]) -> Run:
    """A stored run as a Run; StoreCorrupt naming the record and the field when it is unusable."""
    try:
        return Run.from_fields(fields)
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise StoreCorrupt(_field_problem(fields, exc), fields.get("id") or "a run") from None


_REQUIRED = ("id", "job", "status", "scheduled_for")


def _field_problem(fields: Mapping[str, str], exc: BaseException) -> str:
    """Which field of a stored run cannot be read, and why."""
    for name in _REQUIRED:
        if not fields.get(name):
            return f"field {name} is missing"
    base = {name: fields[name] for name in _REQUIRED}
    for name in RUN_FIELDS:
        raw = fields.get(name)
        if not raw:
            continue
        try:
            Run.from_fields({**base, "status": "queued", "scheduled_for": "0", name: raw})
        except (ValueError, TypeError, OverflowError, OSError):
            return f"field {name} is {raw[:80]!r}, which cannot be read"
    return f"unusable record ({exc})"


class Keys:
    """Builds every key the project uses; no other module writes a key string."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.prefix = f"{{{namespace}}}:"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def queue(self, name: str) -> str:
        return f"{self.prefix}queue:{name}"

    def inbox(self, worker: str) -> str:
        return f"{self.prefix}inbox:{worker}"

    def active(self, job: str) -> str:
        return f"{self.prefix}active:{job}"

    def by_job(self, job: str) -> str:
        return f"{self.prefix}idx:job:{job}"

    def by_status(self, status: RunStatus | str) -> str:
        return f"{self.prefix}idx:status:{status}"

    def worker(self, worker: str) -> str:
        return f"{self.prefix}worker:{worker}"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    @property
    def all_runs(self) -> str:
        return f"{self.prefix}idx:all"

    @property
    def last_fire(self) -> str:
        return f"{self.prefix}last_fire"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def paused(self) -> str:
        return f"{self.prefix}paused"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def clock(self) -> str:
        return f"{self.prefix}clock"

    @property
    def ended(self) -> str:
        return f"{self.prefix}ended"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch"


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def connect(url: str, *, timeout_s: float, connect_timeout_s: float) -> redis.Redis:
    """A client for `url`: redis://, rediss:// (TLS options as query parameters, e.g.
    `?ssl_ca_certs=/etc/sched/ca.pem`), unix://, or redis+sentinel://host:port[,host:port]/name.
    """
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=timeout_s,
            health_check_interval=30,
        )
    from redis.sentinel import Sentinel

    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(
            f"{mask_url(url)}: a Sentinel URL names the monitored master, e.g. "
            "redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster"
        )
    query = {k: v for k, v in parse_qsl(parts.query)}
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    tls: dict[str, Any] = {}
    if parts.scheme.startswith("rediss"):
        tls = {"ssl": True, **{k: v for k, v in query.items() if k.startswith("ssl_")}}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        socket_timeout=timeout_s,
        sentinel_kwargs={
            "socket_timeout": timeout_s,
            "password": query.get("sentinel_password", password) or None,
            **tls,
        },
        **tls,
    )
    auth = {"username": username, "password": password}
    return cast(
        redis.Redis,
        sentinel.master_for(  # type: ignore[no-untyped-call]
            path[0],
            db=int(path[1]) if len(path) > 1 else 0,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            **{k: v for k, v in auth.items() if v is not None},
        ),
    )


def _advice(exc: BaseException) -> str:
    """What to change for a connection that failed."""
    if "certificate verify failed" in str(exc):
        return (
            "the server's TLS certificate is not trusted: give its CA in the URL, e.g. "
            "rediss://host:6380/0?ssl_ca_certs=/etc/sched/ca.pem"
        )
    return (
        "start it or set --redis-url / SCHED_REDIS_URL (without either, `sched run` starts its own)"
    )


@dataclass(frozen=True)
class Retention:
    """How much history to keep per job."""

    keep_runs: int = 1000
    max_age_s: float = 30 * 24 * 3600


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat learned: whether the worker still holds its run, and why to stop it."""

    held: bool
    kill_requested: str | None = None


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: whether it created the run, and the run's status.

    `status` is None for a stale fire (not after the job's last fire): nothing was created.
    """

    run_id: str
    created: bool
    status: RunStatus | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A run this worker holds now: its record as claimed, and the policy stored on it."""

    run: Run
    policy: RunPolicy

    def fields(self) -> dict[str, object]:
        """The record as stored (to write it back if Redis loses it)."""
        out: dict[str, object] = {}
        for name in RUN_FIELDS:
            value = getattr(self.run, name)
            if name == "result" and value is not None:
                value = json.dumps(value)
            out[name] = value
        out.update(self.policy.fields())
        return {name: value for name, value in out.items() if value is not None}


def decode_claimed(fields: Mapping[str, str]) -> Claimed:
    """The claimed record; StoreCorrupt when a field cannot be read."""
    run = decode_run(fields)
    try:
        policy = RunPolicy.from_fields(fields)
    except ValueError as exc:
        raise StoreCorrupt(str(exc), run.id) from None
    return Claimed(run, policy)


def _encode(value: object) -> str:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, datetime):
        return str(to_ms(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _pairs(fields: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for name, value in fields.items():
        if value is None:
            continue
        out += [name, _encode(value)]
    return out


# Fires per call of the enqueue script: a few arguments each, so a call stays far below
# Redis's limits and holds the server for milliseconds, not seconds.
ENQUEUE_BATCH = 1000

# The outcomes an enqueue may record instead of queueing the run.
_RECORDED = (RunStatus.MISSED, RunStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class FireSettings:
    """How to enqueue a fire (see fire_settings); shared by every fire of a job definition."""

    queue: str
    overlap: Overlap = Overlap.SKIP
    trigger: Trigger = Trigger.SCHEDULE
    attempt: int = 1
    timeout_s: float | None = None
    policy: RunPolicy = RunPolicy()
    scheduled: bool = True
    # QUEUED to queue the run, or MISSED / SKIPPED to record it so with `reason`.
    outcome: RunStatus = RunStatus.QUEUED
    reason: str = ""

    @property
    def reads_active(self) -> bool:
        """Whether the script needs the job's active runs: overlap queue/replace, to be queued."""
        return self.overlap in _READS_ACTIVE and self.outcome is RunStatus.QUEUED


_READS_ACTIVE = (Overlap.QUEUE, Overlap.REPLACE)


def fire_settings(
    queue: str,
    *,
    overlap: Overlap = Overlap.SKIP,
    trigger: Trigger = Trigger.SCHEDULE,
    attempt: int = 1,
    timeout_s: float | None = None,
    policy: RunPolicy | None = None,
    scheduled: bool = True,
    outcome: RunStatus = RunStatus.QUEUED,
    reason: str = "",
) -> FireSettings:
    """How to enqueue a fire; the arguments of Store.enqueue() other than the fire itself.

    A `scheduled` fire must come after the job's last fire, advances it and honours pause
    (a manual run is not scheduled). With `outcome` MISSED or SKIPPED the run is recorded
    with that status and `reason` instead of being queued.
    """
    if outcome not in (RunStatus.QUEUED, *_RECORDED):
        raise ValueError(f"outcome {outcome!r}: expected queued, missed or skipped")
    return FireSettings(
        queue,
        Overlap(overlap),
        Trigger(trigger),
        attempt,
        timeout_s,
        policy or RunPolicy(),
        scheduled,
        RunStatus(outcome),
        reason,
    )


def _settings_args(settings: FireSettings) -> tuple[str, ...]:
    """The settings as the enqueue script reads them (see its comment)."""
    fields: dict[str, object] = {
        "trigger": settings.trigger,
        "attempt": settings.attempt,
        "queue": settings.queue,
        "timeout_s": settings.timeout_s,
        **settings.policy.fields(),
    }
    outcome = "queue" if settings.outcome is RunStatus.QUEUED else str(settings.outcome)
    scheduled = "1" if settings.scheduled else "0"
    head = (str(settings.overlap), scheduled, outcome, settings.reason, settings.queue)
    return head + tuple(_pairs(fields))


class Fire(NamedTuple):
    """One fire to enqueue: the run's id, its job and instant, and fire_settings()."""

    run_id: str
    job: str
    scheduled_for: datetime
    settings: FireSettings


# The fields of a RunSummary, in its order; the first must be present on every run.
SUMMARY_FIELDS = (
    "id",
    "status",
    "scheduled_for",
    "enqueued_at",
    "started_at",
    "finished_at",
    "duration_s",
    "trigger",
    "attempt",
    "reason",  # free text: last (see RUN_ROWS)
)


# Runs per RUN_ROWS call: a bounded argument list and a short hold on the server.
SUMMARY_BATCH = 5000


class RunSummary(NamedTuple):
    """The few fields of a run that views over thousands of runs draw (times in epoch ms)."""

    id: str
    status: RunStatus
    scheduled_ms: int
    enqueued_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    duration_s: float | None
    trigger: str
    attempt: int
    reason: str | None


def _summary(row: Sequence[str]) -> RunSummary | None:
    if len(row) < len(SUMMARY_FIELDS) or not row[0]:
        return None  # the run was forgotten between the index read and this one
    v = [x or None for x in row]
    return RunSummary(
        id=str(v[0]),
        status=RunStatus(v[1] or "queued"),
        scheduled_ms=int(v[2] or 0),
        enqueued_ms=int(v[3]) if v[3] is not None else None,
        started_ms=int(v[4]) if v[4] is not None else None,
        finished_ms=int(v[5]) if v[5] is not None else None,
        duration_s=float(v[6]) if v[6] is not None else None,
        trigger=str(v[7] or "schedule"),
        attempt=int(v[8] or 1),
        reason=str(v[9]) if v[9] is not None else None,
    )


class Store:
    """Typed operations over one Redis database and namespace."""

    def __init__(
        self,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        socket_timeout_s: float = 10.0,
        clock_gap_s: float = 5.0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.keys = Keys(namespace)
        # Redis silent for longer than this (stopped, restarted, cut off) counts as an outage.
        self.clock_gap_s = clock_gap_s
        self.socket_timeout_s = socket_timeout_s
        # A bounded wait, so a stalled Redis cannot hold a caller forever.
        self.redis: redis.Redis = connect(url, timeout_s=socket_timeout_s, connect_timeout_s=5)
        self._settings_args: dict[FireSettings, tuple[str, ...]] = {}
        self._enqueue = self.redis.register_script(scripts.ENQUEUE)
        self._claim = self.redis.register_script(scripts.CLAIM)
        # Heartbeats go through their own client with a short timeout: a worker waiting on
        # its horse must never be held long by a stalled Redis.
        self.heartbeat_timeout_s = min(1.0, socket_timeout_s)
        self._fast: redis.Redis = connect(
            url, timeout_s=self.heartbeat_timeout_s, connect_timeout_s=self.heartbeat_timeout_s
        )
        self._heartbeat = self._fast.register_script(scripts.HEARTBEAT)
        self._finish = self.redis.register_script(scripts.FINISH)
        self._restore = self.redis.register_script(scripts.RESTORE)
        self._fail_queued = self.redis.register_script(scripts.FAIL_QUEUED)
        self._reap = self.redis.register_script(scripts.REAP)
        self._promote = self.redis.register_script(scripts.PROMOTE)
        self._kill = self.redis.register_script(scripts.KILL)
        self._requeue = self.redis.register_script(scripts.REQUEUE_INBOX)
        self._drop = self.redis.register_script(scripts.DROP)
        self._run_rows = self.redis.register_script(scripts.RUN_ROWS)
        self._newest_ids = self.redis.register_script(scripts.NEWEST_IDS)

    # -- connection ----------------------------------------------------------------------

    def describe(self) -> str:
        """The Redis URL with any password masked."""
        return mask_url(self.url)

    def ping(self) -> None:
        """Check that Redis answers, lets us use our keys and keeps them.

        StoreUnavailable when it cannot be reached now, StoreError when it is set up wrong.
        """
        try:
            self.redis.ping()
            # A harmless read of one of our keys: an ACL user confined to other keys fails here.
            self.redis.exists(self.keys.epoch)
        except redis.exceptions.NoPermissionError as exc:
            raise StoreError(
                f"Redis at {self.describe()} does not let this user use namespace "
                f"{self.namespace!r} (keys {self.keys.prefix}*): {exc}; use the namespace the "
                "user is allowed (--namespace / SCHED_NAMESPACE) or widen its ACL"
            ) from exc
        except redis.exceptions.AuthenticationError as exc:
            raise StoreError(
                f"Redis at {self.describe()} refused the credentials: {exc}; "
                "check the user and password in --redis-url / SCHED_REDIS_URL"
            ) from exc
        except (redis.exceptions.RedisError, OSError) as exc:
            problem = translate(exc)
            if isinstance(problem, StoreUnavailable):
                what = f"cannot reach Redis at {self.describe()}"
                raise StoreUnavailable(what, f"{exc}; {_advice(exc)}") from exc
            raise problem from exc
        policy = self._config_value("maxmemory-policy")
        if policy and policy != "noeviction" and not policy.startswith("volatile"):
            raise StoreError(
                f"Redis at {self.describe()} has maxmemory-policy {policy!r}, which may evict "
                "run records and queues; set maxmemory-policy to 'noeviction'"
            )

    @guarded
    def _config_value(self, name: str) -> str | None:
        try:
            reply = cast(dict[str, str], self.redis.config_get(name))
        except redis.exceptions.ResponseError:
            return None  # CONFIG is often disabled on managed Redis; nothing to check then.
        return reply.get(name)

    def close(self) -> None:
        """Close the connection pools."""
        self.redis.close()
        self._fast.close()

    # -- scheduling ----------------------------------------------------------------------

    @guarded
    def enqueue(
        self,
        *,
        run_id: str,
        job: str,
        scheduled_for: datetime,
        queue: str,
        overlap: Overlap = Overlap.SKIP,
        trigger: Trigger = Trigger.SCHEDULE,
        attempt: int = 1,
        timeout_s: float | None = None,
        advance_last_fire: bool = True,
        outcome: RunStatus = RunStatus.QUEUED,
        reason: str = "",
        policy: RunPolicy | None = None,
    ) -> Enqueued:
        """Create the run for one fire (once per id) and queue it, skip it or record it missed.

        `policy` is stored on the run for later transitions (retries, misfire grace). With
        overlap `queue` or `replace` the job's active runs are read first and the script
        re-checks them, retrying if they changed.
        """
        settings = fire_settings(
            queue,
            overlap=overlap,
            trigger=trigger,
            attempt=attempt,
            timeout_s=timeout_s,
            policy=policy,
            scheduled=advance_last_fire,
            outcome=outcome,
            reason=reason,
        )
        return self.enqueue_many([Fire(run_id, job, scheduled_for, settings)])[0]

    @guarded
    def enqueue_many(self, fires: Sequence[Fire]) -> list[Enqueued]:
        """Enqueue fires in order, up to ENQUEUE_BATCH per script call.

        Each fire is judged exactly as enqueue() would judge it after the ones before it:
        created at most once per run id, with its overlap policy, pause and last-fire guard.
        """
        results: list[Enqueued] = []
        for start in range(0, len(fires), ENQUEUE_BATCH):
            results += self._enqueue_batch(fires[start : start + ENQUEUE_BATCH])
        return results

    @guarded
    def record_missed(
        self,
        job: str,
        fires: Sequence[tuple[str, datetime]],
        *,
        queue: str,
        timeout_s: float | None,
        reason: str,
    ) -> int:
        """Record many (run id, fire) pairs as `missed`; return how many were created."""
        settings = fire_settings(
            queue,
            overlap=Overlap.ALLOW,
            timeout_s=timeout_s,
            outcome=RunStatus.MISSED,
            reason=reason,
        )
        batch = [Fire(run_id, job, fire_at, settings) for run_id, fire_at in fires]
        return sum(result.created for result in self.enqueue_many(batch))

    def _enqueue_batch(self, fires: Sequence[Fire]) -> list[Enqueued]:
        """One script call for all the fires, in order. When a job's active runs changed
        between reading them and the call (overlap queue/replace), the script stops at that
        fire; they are read again and the rest is sent again."""
        done: list[Enqueued] = []
        tries = 0
        while len(done) < len(fires):
            rest = fires[len(done) :]
            keys, args = self._enqueue_args(rest, self._active_runs(rest))
            reply = cast(str, self._enqueue(keys=keys, args=args))
            progress = len(done)
            for fire, outcome in zip(rest, reply.split(" "), strict=False):
                if outcome == "0retry":
                    break
                status = None if outcome == "0stale" else RunStatus(outcome[1:])
                done.append(Enqueued(fire.run_id, outcome[0] == "1", status))
            tries = 0 if len(done) > progress else tries + 1
            if tries >= 100:
                job = fires[len(done)].job
                raise RuntimeError(f"the active runs of {job!r} keep changing; enqueue gave up")
        return done

    def _active_runs(self, fires: Sequence[Fire]) -> list[list[str]]:
        """The ids of each fire's job's active runs, read for overlap queue/replace only."""
        reads = [i for i, fire in enumerate(fires) if fire.settings.reads_active]
        active: list[list[str]] = [[] for _ in fires]
        if reads:
            pipe = self.redis.pipeline(transaction=False)
            for i in reads:
                pipe.smembers(self.keys.active(fires[i].job))
            for i, members in zip(reads, pipe.execute(), strict=True):
                active[i] = sorted(cast(set[str], members))
        return active

    def _enqueue_args(
        self, fires: Sequence[Fire], active: Sequence[Sequence[str]]
    ) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of the enqueue script; see its comment for the layout."""
        k = self.keys
        settings: dict[FireSettings, int] = {}
        millis: dict[datetime, int] = {}
        # Runs of consecutive fires with the same settings and instant.
        groups: list[tuple[int, int, list[tuple[Fire, Sequence[str]]]]] = []
        for fire, ids in zip(fires, active, strict=True):
            number = settings.setdefault(fire.settings, len(settings) + 1)
            ms = millis.get(fire.scheduled_for)
            if ms is None:
                ms = millis[fire.scheduled_for] = to_ms(fire.scheduled_for)
            if not groups or groups[-1][:2] != (number, ms):
                groups.append((number, ms, []))
            groups[-1][2].append((fire, ids))
        queues: dict[str, int] = {}
        args: list[str | int] = [0, len(settings)]
        for each in settings:
            encoded = self._settings_args.get(each)
            if encoded is None:
                if len(self._settings_args) > 10_000:
                    self._settings_args.clear()
                encoded = self._settings_args[each] = _settings_args(each)
            overlap, scheduled, outcome, reason, queue, *pairs = encoded
            number = queues.setdefault(queue, len(queues) + 1)
            args += (overlap, scheduled, outcome, reason, number, len(pairs) // 2, *pairs)
        args[0] = len(queues)
        keys = [
            k.all_runs,
            k.by_status(RunStatus.QUEUED),
            k.by_status(RunStatus.SKIPPED),
            k.by_status(RunStatus.MISSED),
            k.last_fire,
            k.paused,
            k.ended,
            *(k.queue(name) for name in queues),
        ]
        for number, ms, members in groups:
            args += (number, ms, len(members))
            for fire, ids in members:
                keys += (k.run(fire.run_id), k.active(fire.job), k.by_job(fire.job))
                args += (fire.run_id, fire.job)
                if fire.settings.reads_active:
                    keys += (k.run(other) for other in ids)
                    args += (len(ids), *ids)
        return keys, args

    @guarded
    def pause(self, job: str) -> bool:
        """Pause a job's schedule (fires are recorded skipped); False if it already was."""
        return bool(self.redis.sadd(self.keys.paused, job))

    @guarded
    def resume(self, job: str) -> bool:
        """Resume a paused job; False if it was not paused."""
        return bool(self.redis.srem(self.keys.paused, job))

    @guarded
    def paused_jobs(self) -> set[str]:
        """The names of paused jobs."""
        return cast(set[str], self.redis.smembers(self.keys.paused))

    @guarded
    def claim_epoch(self) -> bool:
        """Mark this Redis as holding our data; True if the mark was missing (new or emptied)."""
        return bool(self.redis.set(self.keys.epoch, str(self.server_time_ms()), nx=True))

    @guarded
    def last_fires(self) -> dict[str, datetime]:
        """The newest fire instant enqueued (or recorded) for each job."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.last_fire))
        return {job: from_ms(int(ms)) for job, ms in raw.items()}

    # -- workers -------------------------------------------------------------------------

    @guarded
    def wait_for_run(self, worker: str, queues: Sequence[str], timeout_s: float) -> str | None:
        """Move the next queued run id into the worker's inbox, waiting up to timeout_s."""
        k = self.keys
        inbox = k.inbox(worker)
        if len(queues) > 1:
            # In order of preference; only the first queue can be waited on, so the others
            # are looked at again at least twice a second.
            for name in queues:
                moved = self.redis.lmove(k.queue(name), inbox, "LEFT", "RIGHT")
                if moved is not None:
                    return cast(str, moved)
            timeout_s = min(timeout_s, 0.5)
        # BLMOVE takes fractional seconds (Redis 6+); redis-py only annotates int.
        wait = cast(int, timeout_s)
        moved = self.redis.blmove(k.queue(queues[0]), inbox, wait, "LEFT", "RIGHT")
        return cast(str | None, moved)

    @guarded
    def claim(self, worker: str, run_id: str, lease_s: float) -> Claimed | None:
        """Turn a run in the worker's inbox into `running`; None when it is not to be run."""
        k = self.keys
        job = run_id.split("@", 1)[0]
        flat = self._claim(
            keys=[
                k.inbox(worker),
                k.run(run_id),
                k.running,
                k.by_status(RunStatus.QUEUED),
                k.by_status(RunStatus.RUNNING),
                k.worker(worker),
                k.by_status(RunStatus.MISSED),
                k.active(job),
                k.ended,
            ],
            args=[run_id, worker, int(lease_s * 1000)],
        )
        if not flat:
            return None
        return decode_claimed(dict(zip(flat[::2], flat[1::2], strict=True)))

    @guarded
    def refuse(self, worker: str, run_id: str, job: str, reason: str) -> bool:
        """Fail a queued run the worker will not execute, without starting it."""
        k = self.keys
        return bool(
            self._fail_queued(
                keys=[
                    k.inbox(worker),
                    k.run(run_id),
                    k.active(job),
                    k.by_status(RunStatus.QUEUED),
                    k.by_status(RunStatus.FAILED),
                    k.ended,
                ],
                args=[run_id, worker, reason],
            )
        )

    @guarded
    def heartbeat(
        self,
        worker: str,
        lease_s: float,
        run_id: str | None = None,
        horse_pid: int | None = None,
        live: tuple[int, str] | None = None,
        info: Mapping[str, object] | None = None,
    ) -> Heartbeat:
        """Renew the worker's presence and its run's lease, and collect any kill request.

        With `horse_pid`, the horse's pid is recorded on the run (so it can be seen while it
        runs); with `live`, (bytes so far, tail) of its output, for `sched logs -f`; `info`
        updates the worker's own fields (host, pid, queues).
        """
        k = self.keys
        reply = self._heartbeat(
            keys=[k.workers, k.worker(worker), k.running, k.run(run_id or "-"), k.clock],
            args=[
                worker,
                int(lease_s * 1000),
                run_id or "",
                horse_pid or "",
                int(self.clock_gap_s * 1000),
                live[0] if live else "",
                live[1] if live else "",
                *_pairs(info or {}),
            ],
        )
        return Heartbeat(bool(reply[0]), str(reply[1]) or None)

    @guarded
    def finish(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
        retry: Retry | None = None,
    ) -> tuple[bool, str]:
        """Record a run's final status; (False, current status) if the worker did not hold it.

        With `retry`, the next attempt is created in the same step, due after its backoff.
        """
        keys, args = self._finish_call(worker, run_id, job, status, duration_s, fields, retry)
        reply = self._finish(keys=keys, args=args)
        return bool(reply[0]), str(reply[1])

    @guarded
    def finish_and_take(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
        retry: Retry | None,
        queue: str,
    ) -> tuple[bool, str, str | None]:
        """`finish`, and move the next run id of `queue` into the worker's inbox, in one trip.

        The third value is that id (None when the queue is empty); claim it next, or give it
        back. The id is moved even when the report is refused.
        """
        keys, args = self._finish_call(worker, run_id, job, status, duration_s, fields, retry)
        pipe = self.redis.pipeline(transaction=False)
        # EVALSHA by hand: a registered script in a pipeline costs a SCRIPT EXISTS round trip
        # on every execute. The script is loaded only when Redis says it lacks it.
        pipe.evalsha(self._finish.sha, len(keys), *keys, *args)
        pipe.lmove(self.keys.queue(queue), self.keys.inbox(worker), "LEFT", "RIGHT")
        reply, moved = pipe.execute(raise_on_error=False)
        taken = moved if isinstance(moved, str) else None
        try:
            if isinstance(reply, redis.exceptions.NoScriptError):
                reply = self._finish(keys=keys, args=args)
            elif isinstance(reply, Exception):
                raise reply
        except BaseException:
            if taken is not None:
                with contextlib.suppress(StoreError):
                    self.give_back(worker, taken, queue)
            raise
        return bool(reply[0]), str(reply[1]), taken

    @guarded
    def inbox_head(self, worker: str) -> str | None:
        """The first run id in the worker's inbox (moved from a queue, not claimed yet)."""
        return cast(str | None, self.redis.lindex(self.keys.inbox(worker), 0))

    @guarded
    def give_back(self, worker: str, run_id: str, queue: str) -> bool:
        """Return a run id this worker moved into its inbox, unclaimed, to the head of `queue`."""
        k = self.keys
        return bool(
            self._requeue(keys=[k.inbox(worker), k.queue(queue), k.run(run_id)], args=[run_id])
        )

    def _finish_call(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
        retry: Retry | None,
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        retry_id = retry.run_id if retry else ""
        keys = [
            k.run(run_id),
            k.running,
            k.active(job),
            k.by_status(RunStatus.RUNNING),
            k.by_status(status),
            k.worker(worker),
            *self._retry_keys(job, retry_id),
            k.ended,
        ]
        args: list[Any] = [
            run_id,
            worker,
            str(status),
            int(duration_s * 1000),
            retry_id,
            retry.delay_ms if retry else 0,
            retry.attempt if retry else 0,
            *_pairs(fields),
        ]
        return keys, args

    def _retry_keys(self, job: str, retry_id: str) -> list[str]:
        k = self.keys
        return [
            k.run(retry_id or "-"),
            k.delayed,
            k.all_runs,
            k.by_job(job),
            k.by_status(RunStatus.QUEUED),
        ]

    @guarded
    def restore(self, fields: Mapping[str, object]) -> bool:
        """Re-create a finished run's record from a worker's copy (after Redis lost it)."""
        k = self.keys
        run_id, job = str(fields["id"]), str(fields["job"])
        return bool(
            self._restore(
                keys=[k.run(run_id), k.all_runs, k.by_job(job), k.by_status(str(fields["status"]))],
                args=[run_id, str(fields["scheduled_for"]), *_pairs(fields)],
            )
        )

    @guarded
    def kill(self, run_id: str, reason: str = "operator") -> str:
        """Stop a run: a queued one at once, a running one through its worker's heartbeat.

        Returns the status it had; UnknownRun when there is no such run.
        """
        k = self.keys
        fields = cast(list[str | None], self.redis.hmget(k.run(run_id), "job", "queue"))
        if fields[0] is None:
            raise UnknownRun(run_id)
        job, queue = fields[0], fields[1] or "default"
        before = self._kill(
            keys=[
                k.run(run_id),
                k.queue(queue),
                k.active(job),
                k.by_status(RunStatus.QUEUED),
                k.by_status(RunStatus.KILLED),
                k.delayed,
                k.ended,
            ],
            args=[run_id, reason],
        )
        return str(before)

    @guarded
    def unregister_worker(self, worker: str) -> None:
        """Remove a worker that is shutting down (its inbox is empty by then)."""
        pipe = self.redis.pipeline()
        pipe.zrem(self.keys.workers, worker)
        pipe.delete(self.keys.worker(worker))
        pipe.execute()

    @guarded
    def workers(self) -> list[dict[str, str]]:
        """Live workers with their fields (host, pid, queues, current run, heartbeat)."""
        now_ms = self.server_time_ms()
        ids = cast(list[str], self.redis.zrangebyscore(self.keys.workers, now_ms, "+inf"))
        pipe = self.redis.pipeline()
        for wid in ids:
            pipe.hgetall(self.keys.worker(wid))
        rows = cast(list[dict[str, str]], pipe.execute())
        return [{"id": wid, **row} for wid, row in zip(ids, rows, strict=True)]

    @guarded
    def server_time_ms(self) -> int:
        """Redis server time in milliseconds."""
        secs, micros = self.redis.time()
        return int(secs) * 1000 + int(micros) // 1000

    # -- recovery ------------------------------------------------------------------------

    @guarded
    def reap(
        self, lease_s: float, reason: str = "lease expired: its worker stopped renewing it"
    ) -> list[str]:
        """Mark runs whose lease expired `lost` (retrying them per policy); return their ids.

        After Redis was unreachable for a while, nothing is reaped for one `lease_s`, so
        workers that were cut off too have a chance to renew first.
        """
        k = self.keys
        now_ms = self.server_time_ms()
        expired = cast(list[str], self.redis.zrangebyscore(k.running, "-inf", now_ms))
        lost: list[str] = []
        for run_id in expired:
            fields = cast(dict[str, str], self.redis.hgetall(k.run(run_id)))
            job = fields.get("job", "-")
            plan = _retry_after_loss(run_id, fields)
            retry_id = plan.run_id if plan else ""
            done = self._reap(
                keys=[
                    k.running,
                    k.run(run_id),
                    k.active(job),
                    k.by_status(RunStatus.RUNNING),
                    k.by_status(RunStatus.LOST),
                    k.clock,
                    *self._retry_keys(job, retry_id),
                    k.ended,
                ],
                args=[
                    run_id,
                    reason,
                    int(self.clock_gap_s * 1000),
                    int(lease_s * 1000),
                    retry_id,
                    plan.delay_ms if plan else 0,
                    plan.attempt if plan else 0,
                ],
            )
            if done == 1:
                lost.append(run_id)
        return lost

    @guarded
    def take_ended(self, count: int = 500) -> list[Run]:
        """Take up to `count` runs from the feed of runs that reached a final status.

        Each id is handed to one caller only, so with several schedulers every run is counted
        and alerted on once.
        """
        ids = cast(list[str] | None, self.redis.lpop(self.keys.ended, count))
        return self._runs(ids) if ids else []

    @guarded
    def running_count(self) -> int:
        """How many runs hold a lease now."""
        return int(self.redis.zcard(self.keys.running))

    @guarded
    def promote_due(self) -> int:
        """Queue the retries whose backoff has passed; return how many."""
        k = self.keys
        due = cast(
            list[str],
            self.redis.zrangebyscore(k.delayed, "-inf", self.server_time_ms(), start=0, num=500),
        )
        moved = 0
        for run_id in due:
            queue = cast(str | None, self.redis.hget(k.run(run_id), "queue")) or "default"
            moved += int(
                self._promote(keys=[k.delayed, k.queue(queue), k.run(run_id)], args=[run_id])
            )
        return moved

    @guarded
    def recover_inboxes(self) -> int:
        """Requeue runs that dead workers took from a queue but never claimed."""
        k = self.keys
        now_ms = self.server_time_ms()
        dead = cast(list[str], self.redis.zrangebyscore(k.workers, "-inf", now_ms))
        requeued = 0
        for wid in dead:
            inbox = k.inbox(wid)
            for run_id in cast(list[str], self.redis.lrange(inbox, 0, -1)):
                queue = cast(str | None, self.redis.hget(k.run(run_id), "queue")) or "default"
                requeued += int(self.give_back(wid, run_id, queue))
            if not self.redis.exists(inbox):
                self.redis.zrem(k.workers, wid)
        return requeued

    # -- history -------------------------------------------------------------------------

    @guarded
    def get_run(self, run_id: str) -> Run:
        """The run with this id; UnknownRun when there is none."""
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id)))
        if not fields:
            raise UnknownRun(run_id)
        return decode_run(fields)

    @guarded
    def live_output(self, run_id: str) -> tuple[str, int, str]:
        """(status, bytes written so far, output tail) of a run, for following its output."""
        status, total, live, final, final_total = cast(
            list[str | None],
            self.redis.hmget(
                self.keys.run(run_id),
                "status",
                "live_total",
                "live_output",
                "output",
                "output_bytes",
            ),
        )
        if status is None:
            raise UnknownRun(run_id)
        if status in PENDING:
            return status, int(total or 0), live or ""
        text = final or ""
        return status, int(final_total or len(text.encode())), text

    @guarded
    def raw_run(self, run_id: str) -> dict[str, str]:
        """The stored fields of a run as they are (for diagnostics such as late reports)."""
        return cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id)))

    @guarded
    def history(
        self,
        *,
        job: str | None = None,
        statuses: Iterable[RunStatus] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs newest first (by fire time), filtered by job, statuses and a time window."""
        return list(
            self.iter_history(job=job, statuses=statuses, since=since, until=until, limit=limit)
        )

    @guarded_iter
    def iter_history(
        self,
        *,
        job: str | None = None,
        statuses: Iterable[RunStatus] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 50,
    ) -> Iterator[Run]:
        """Stream runs newest first (by fire time) from the most selective indexes.

        With a job, its index is read; with statuses, their indexes are merged; else all.
        """
        wanted = set(statuses)
        k = self.keys
        if job is not None:
            indexes = [k.by_job(job)]
        elif wanted:
            indexes = [k.by_status(s) for s in sorted(wanted)]
        else:
            indexes = [k.all_runs]
        high: str | int = to_ms(until) if until else "+inf"
        low: str | int = to_ms(since) if since else "-inf"
        streams = [self._scored_ids(index, high, low) for index in indexes]
        merged = heapq.merge(*streams, key=lambda pair: -pair[0])
        batch_size = 200 if limit is None else min(max(limit, 1), 500)
        yielded = 0
        while limit is None or yielded < limit:
            batch = [run_id for _, run_id in itertools.islice(merged, batch_size)]
            if not batch:
                return
            for run in self._runs(batch):
                if (wanted and run.status not in wanted) or (job is not None and run.job != job):
                    continue
                yield run
                yielded += 1
                if limit is not None and yielded >= limit:
                    return

    def _scored_ids(
        self, index: str, high: str | int, low: str | int
    ) -> Iterator[tuple[float, str]]:
        offset, page = 0, 100
        while True:
            rows = cast(
                list[tuple[str, float]],
                self.redis.zrevrangebyscore(
                    index, high, low, start=offset, num=page, withscores=True
                ),
            )
            if not rows:
                return
            offset += len(rows)
            for run_id, score in rows:
                yield score, run_id
            page = min(page * 2, 2000)

    def _runs(self, ids: Sequence[str]) -> list[Run]:
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self.keys.run(run_id))
        rows = cast(list[dict[str, str]], pipe.execute())
        return [decode_run(row) for row in rows if row]

    @guarded
    def last_runs(self, jobs: Sequence[str]) -> dict[str, Run]:
        """The newest run of each job that has one."""
        pipe = self.redis.pipeline(transaction=False)
        for name in jobs:
            pipe.zrevrange(self.keys.by_job(name), 0, 0)
        heads = cast(list[list[str]], pipe.execute())
        ids = [head[0] for head in heads if head]
        return {run.job: run for run in self._runs(ids)}

    @guarded
    def queue_depth(self, queue: str) -> int:
        """How many runs wait in a queue."""
        return int(self.redis.llen(self.keys.queue(queue)))

    @guarded
    def trim(self, jobs: Iterable[str], retention: Retention) -> int:
        """Apply retention to each job's history; return how many runs were forgotten."""
        k = self.keys
        names = list(jobs)
        cutoff = time.time() * 1000 - retention.max_age_s * 1000
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrange(k.by_job(name), 0, -(retention.keep_runs + 1))
            pipe.zrangebyscore(k.by_job(name), "-inf", math.floor(cutoff))
        replies = cast(list[list[str]], pipe.execute())
        status_keys = [k.by_status(s) for s in STATUSES]
        pipe = self.redis.pipeline(transaction=False)
        for i, name in enumerate(names):
            for run_id in set(replies[2 * i]) | set(replies[2 * i + 1]):
                keys = [k.run(run_id), k.all_runs, k.by_job(name), *status_keys]
                self._drop(keys=keys, args=[run_id], client=pipe)
        return sum(int(x) for x in pipe.execute()) if len(pipe) else 0

    # -- views over many runs --------------------------------------------------------------

    @guarded
    def newest_ids(
        self,
        jobs: Sequence[str],
        count: int,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[list[str]]:
        """The ids of each job's newest `count` runs scheduled in [since, until], newest
        first (one list per job, in the order given)."""
        high: str | int = to_ms(until) if until else "+inf"
        low: str | int = to_ms(since) if since else "-inf"
        out: list[list[str]] = []
        for start in range(0, len(jobs), 500):
            keys = [self.keys.by_job(name) for name in jobs[start : start + 500]]
            reply = cast(list[str], self._newest_ids(keys=keys, args=[high, low, count]))
            out += [text.split("\n") if text else [] for text in reply]
        return out

    @guarded
    def summaries(self, ids: Sequence[str]) -> list[RunSummary | None]:
        """RunSummary of each id, in the order given; None for a run that is gone."""
        out: list[RunSummary | None] = []
        for start in range(0, len(ids), SUMMARY_BATCH):
            chunk = ids[start : start + SUMMARY_BATCH]
            keys = [self.keys.run(run_id) for run_id in chunk]
            text = cast(str, self._run_rows(keys=keys, args=SUMMARY_FIELDS))
            out += [_summary(row.split("\x1f")) for row in text.split("\x1e")]
        return out

    @guarded
    def oldest_run_at(self, job: str) -> datetime | None:
        """The fire time of the job's oldest kept run (history before it was trimmed)."""
        head = cast(
            list[tuple[str, float]], self.redis.zrange(self.keys.by_job(job), 0, 0, withscores=True)
        )
        return from_ms(int(head[0][1])) if head else None

    @guarded
    def status_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        """How many runs of every job have each status, among those scheduled in the window."""
        low: str | int = to_ms(since) if since else "-inf"
        high: str | int = to_ms(until) if until else "+inf"
        pipe = self.redis.pipeline(transaction=False)
        for status in STATUSES:
            pipe.zcount(self.keys.by_status(status), low, high)
        counts = cast(list[int], pipe.execute())
        return {str(status): int(n) for status, n in zip(STATUSES, counts, strict=True)}


def _retry_after_loss(run_id: str, fields: Mapping[str, str]) -> Retry | None:
    """The retry a lost run earns; none when its stored policy cannot be read."""
    try:
        attempt = int(fields.get("attempt") or 1)
        policy = RunPolicy.from_fields(fields)
    except ValueError:
        return None
    return retry_plan(run_id, attempt, policy, RunStatus.LOST)


def is_alive(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()
