"""The only module that talks to Redis: key builders, one Lua script per transition, typed methods.

Every key lives under one prefix with a hash tag (`{sched}:` by default) so that all of them
hash to one Redis Cluster slot and each script's keys are passed in KEYS.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions

from scheduler.model import Run, RunStatus, from_ms, to_ms

DEFAULT_NAMESPACE = "sched"
STATUSES = tuple(RunStatus)
ConnectionErrors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


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
    def jobs(self) -> str:
        return f"{self.prefix}jobs"


# Shared Lua prelude: Redis server time in milliseconds (one clock for every host).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ENQUEUE = (
    """
-- Create a run for one fire of a job, at most once per run id.
-- KEYS[1] run hash        KEYS[2] queue list      KEYS[3] active set of the job
-- KEYS[4] idx:all         KEYS[5] idx:job         KEYS[6] idx:status:queued
-- KEYS[7] idx:status of the outcome when not queued (skipped or missed)
-- KEYS[8] last_fire hash
-- ARGV[1] run id  ARGV[2] job  ARGV[3] scheduled_for ms  ARGV[4] overlap policy
-- ARGV[5] '1' to require scheduled_for > last fire of the job and advance it, '0' otherwise
-- ARGV[6] outcome: 'queue', 'missed' or 'skipped'   ARGV[7] reason for a non-queued outcome
-- ARGV[8..] field, value pairs stored as they are (trigger, attempt, queue, timeout_s)
-- Returns {created (0/1), status}.
"""
    + _NOW
    + """
local existing = redis.call('HGET', KEYS[1], 'status')
if existing then return {0, existing} end
local fire = tonumber(ARGV[3])
if ARGV[5] == '1' then
  local last = redis.call('HGET', KEYS[8], ARGV[2])
  if last and tonumber(last) >= fire then return {0, 'stale'} end
  redis.call('HSET', KEYS[8], ARGV[2], ARGV[3])
end
local status = 'queued'
local reason = ARGV[7]
if ARGV[6] ~= 'queue' then
  status = ARGV[6]
elseif ARGV[4] == 'skip' then
  local other = redis.call('SRANDMEMBER', KEYS[3])
  if other then
    status = 'skipped'
    reason = 'overlap=skip: run ' .. other .. ' of this job is still queued or running'
  end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'job', ARGV[2], 'scheduled_for', ARGV[3],
  'enqueued_at', now, 'status', status)
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if status == 'queued' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[6], fire, ARGV[1])
else
  redis.call('HSET', KEYS[1], 'reason', reason, 'finished_at', now)
  redis.call('ZADD', KEYS[7], fire, ARGV[1])
end
redis.call('ZADD', KEYS[4], fire, ARGV[1])
redis.call('ZADD', KEYS[5], fire, ARGV[1])
return {1, status}
"""
)

CLAIM = (
    """
-- A worker takes a run it moved into its inbox: queued -> running, with a lease.
-- KEYS[1] inbox list  KEYS[2] run hash  KEYS[3] running zset
-- KEYS[4] idx:status:queued  KEYS[5] idx:status:running  KEYS[6] worker hash
-- ARGV[1] run id  ARGV[2] worker id  ARGV[3] lease ms
-- Returns the run's fields as a flat list, or {} when it is no longer queued.
"""
    + _NOW
    + """
redis.call('LREM', KEYS[1], 1, ARGV[1])
local fields = redis.call('HMGET', KEYS[2], 'status', 'scheduled_for')
if fields[1] ~= 'queued' then return {} end
redis.call('HSET', KEYS[2], 'status', 'running', 'started_at', now, 'worker', ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], fields[2], ARGV[1])
redis.call('HSET', KEYS[6], 'current', ARGV[1])
return redis.call('HGETALL', KEYS[2])
"""
)

HEARTBEAT = (
    """
-- A worker says it is alive and extends the lease of the run it is executing.
-- KEYS[1] workers zset  KEYS[2] worker hash  KEYS[3] running zset  KEYS[4] run hash (or any key)
-- ARGV[1] worker id  ARGV[2] lease ms  ARGV[3] run id or ''  ARGV[4] horse pid or ''
-- ARGV[5..] worker field, value pairs
-- Returns 1 when the worker still holds the run (or has none), 0 when the run is not its own.
"""
    + _NOW
    + """
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
if #ARGV > 4 then redis.call('HSET', KEYS[2], unpack(ARGV, 5)) end
redis.call('HSET', KEYS[2], 'heartbeat_at', now)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 10)
if ARGV[3] == '' then return 1 end
local fields = redis.call('HMGET', KEYS[4], 'status', 'worker')
if fields[1] ~= 'running' or fields[2] ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[3], expiry, ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], 'pid', ARGV[4]) end
return 1
"""
)

FINISH = (
    """
-- The worker records the final status of a run it holds. Only the holder may finish it.
-- KEYS[1] run hash  KEYS[2] running zset  KEYS[3] active set of the job
-- KEYS[4] idx:status:running  KEYS[5] idx:status of the final status  KEYS[6] worker hash
-- ARGV[1] run id  ARGV[2] worker id  ARGV[3] final status  ARGV[4] duration ms
-- ARGV[5..] field, value pairs (reason, exit_code, signal, pid, output, error, ...)
-- Returns {1, status} when recorded, {0, current status} when the run was not held.
"""
    + _NOW
    + """
local fields = redis.call('HMGET', KEYS[1], 'status', 'worker', 'started_at', 'scheduled_for')
if fields[1] ~= 'running' or fields[2] ~= ARGV[2] then
  if fields[1] then
    local late = {}
    for i = 5, #ARGV, 2 do if ARGV[i] ~= 'output' then late[ARGV[i]] = ARGV[i + 1] end end
    late['status'] = ARGV[3]
    late['worker'] = ARGV[2]
    late['reported_at'] = now
    redis.call('HSET', KEYS[1], 'late_report', cjson.encode(late))
  end
  return {0, fields[1] or ''}
end
local started = tonumber(fields[3])
local duration = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', started + duration,
  'duration_s', string.format('%.3f', duration / 1000))
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], fields[4], ARGV[1])
if redis.call('HGET', KEYS[6], 'current') == ARGV[1] then redis.call('HDEL', KEYS[6], 'current') end
return {1, ARGV[3]}
"""
)

FAIL_QUEUED = (
    """
-- A worker refuses a run it cannot execute (job not in its jobs folder): queued -> failed.
-- KEYS[1] inbox list  KEYS[2] run hash  KEYS[3] active set  KEYS[4] idx:status:queued
-- KEYS[5] idx:status:failed
-- ARGV[1] run id  ARGV[2] worker id  ARGV[3] reason
"""
    + _NOW
    + """
redis.call('LREM', KEYS[1], 1, ARGV[1])
local fields = redis.call('HMGET', KEYS[2], 'status', 'scheduled_for')
if fields[1] ~= 'queued' then return 0 end
redis.call('HSET', KEYS[2], 'status', 'failed', 'reason', ARGV[3], 'worker', ARGV[2],
  'finished_at', now)
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], fields[2], ARGV[1])
return 1
"""
)

REAP = (
    """
-- Mark a run lost when its lease has expired: its worker stopped renewing it.
-- KEYS[1] running zset  KEYS[2] run hash  KEYS[3] active set  KEYS[4] idx:status:running
-- KEYS[5] idx:status:lost
-- ARGV[1] run id  ARGV[2] reason
"""
    + _NOW
    + """
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) > now then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local fields = redis.call('HMGET', KEYS[2], 'status', 'scheduled_for', 'started_at')
if fields[1] ~= 'running' then return 0 end
local started = tonumber(fields[3]) or now
redis.call('HSET', KEYS[2], 'status', 'lost', 'reason', ARGV[2], 'finished_at', now,
  'duration_s', string.format('%.3f', (now - started) / 1000))
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], fields[2], ARGV[1])
return 1
"""
)

REQUEUE_INBOX = (
    """
-- Put a run that a dead worker moved into its inbox, but never claimed, back in its queue.
-- KEYS[1] inbox list  KEYS[2] queue list  KEYS[3] run hash
-- ARGV[1] run id
"""
    + """
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if removed == 0 then return 0 end
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""
)

DROP = (
    """
-- Forget a finished run (retention): its hash and every index entry.
-- KEYS[1] run hash  KEYS[2] idx:all  KEYS[3] idx:job  KEYS[4..] idx:status of every status
-- ARGV[1] run id
"""
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""
)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}" if user else f":***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Retention:
    """How much history to keep per job."""

    keep_runs: int = 1000
    max_age_s: float = 30 * 24 * 3600


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: whether it created the run, and the run's status."""

    run_id: str
    created: bool
    status: str


def _encode(value: object) -> str:
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


class Store:
    """Typed operations over one Redis database and namespace."""

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.url = url
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.redis: redis.Redis = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, health_check_interval=30
        )
        self._enqueue = self.redis.register_script(ENQUEUE)
        self._claim = self.redis.register_script(CLAIM)
        self._heartbeat = self.redis.register_script(HEARTBEAT)
        self._finish = self.redis.register_script(FINISH)
        self._fail_queued = self.redis.register_script(FAIL_QUEUED)
        self._reap = self.redis.register_script(REAP)
        self._requeue = self.redis.register_script(REQUEUE_INBOX)
        self._drop = self.redis.register_script(DROP)

    # -- connection ----------------------------------------------------------------------

    def describe(self) -> str:
        """The Redis URL with any password masked."""
        return mask_url(self.url)

    def ping(self) -> None:
        """Check that Redis answers and keeps what it is given; StoreError says why not."""
        from scheduler.errors import StoreError

        try:
            self.redis.ping()
        except redis.exceptions.AuthenticationError as exc:
            raise StoreError(
                f"Redis at {self.describe()} refused the credentials: {exc}; "
                "check the user and password in --redis-url / SCHED_REDIS_URL"
            ) from exc
        except ConnectionErrors as exc:
            raise StoreError(
                f"cannot reach Redis at {self.describe()}: {exc}; start it or set "
                "--redis-url / SCHED_REDIS_URL (without either, `sched run` starts its own)"
            ) from exc
        policy = self._config_value("maxmemory-policy")
        if policy and policy != "noeviction" and not policy.startswith("volatile"):
            raise StoreError(
                f"Redis at {self.describe()} has maxmemory-policy {policy!r}, which may evict "
                "run records and queues; set maxmemory-policy to 'noeviction'"
            )

    def _config_value(self, name: str) -> str | None:
        try:
            reply = cast(dict[str, str], self.redis.config_get(name))
        except redis.exceptions.ResponseError:
            return None  # CONFIG is often disabled on managed Redis; nothing to check then.
        return reply.get(name)

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()

    # -- scheduling ----------------------------------------------------------------------

    def enqueue(
        self,
        *,
        run_id: str,
        job: str,
        scheduled_for: datetime,
        queue: str,
        overlap: str = "skip",
        trigger: str = "schedule",
        attempt: int = 1,
        timeout_s: float | None = None,
        advance_last_fire: bool = True,
        outcome: str = "queue",
        reason: str = "",
    ) -> Enqueued:
        """Create the run for one fire (once per id) and queue it, skip it or record it missed."""
        keys, args = self._enqueue_call(
            run_id,
            job,
            scheduled_for,
            queue,
            overlap,
            trigger,
            attempt,
            timeout_s,
            advance_last_fire,
            outcome,
            reason,
        )
        reply = self._enqueue(keys=keys, args=args)
        return Enqueued(run_id, bool(reply[0]), str(reply[1]))

    def record_missed(
        self,
        job: str,
        fires: Sequence[tuple[str, datetime]],
        *,
        queue: str,
        timeout_s: float | None,
        reason: str,
    ) -> int:
        """Record many (run id, fire) pairs as `missed` in pipelined batches; return how many."""
        created = 0
        for start in range(0, len(fires), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for run_id, fire_at in fires[start : start + 1000]:
                keys, args = self._enqueue_call(
                    run_id,
                    job,
                    fire_at,
                    queue,
                    "allow",
                    "schedule",
                    1,
                    timeout_s,
                    True,
                    "missed",
                    reason,
                )
                self._enqueue(keys=keys, args=args, client=pipe)
            created += sum(int(reply[0]) for reply in pipe.execute())
        return created

    def _enqueue_call(
        self,
        run_id: str,
        job: str,
        scheduled_for: datetime,
        queue: str,
        overlap: str,
        trigger: str,
        attempt: int,
        timeout_s: float | None,
        advance_last_fire: bool,
        outcome: str,
        reason: str,
    ) -> tuple[list[str], list[str | int]]:
        k = self.keys
        outcome_status = outcome if outcome != "queue" else "skipped"
        extra = _pairs(
            {"trigger": trigger, "attempt": attempt, "queue": queue, "timeout_s": timeout_s}
        )
        keys = [
            k.run(run_id),
            k.queue(queue),
            k.active(job),
            k.all_runs,
            k.by_job(job),
            k.by_status(RunStatus.QUEUED),
            k.by_status(outcome_status),
            k.last_fire,
        ]
        args: list[str | int] = [
            run_id,
            job,
            to_ms(scheduled_for),
            overlap,
            "1" if advance_last_fire else "0",
            outcome,
            reason,
            *extra,
        ]
        return keys, args

    def last_fires(self) -> dict[str, datetime]:
        """The newest fire instant enqueued (or recorded) for each job."""
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.last_fire))
        return {job: from_ms(int(ms)) for job, ms in raw.items()}

    # -- workers -------------------------------------------------------------------------

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

    def claim(self, worker: str, run_id: str, lease_s: float) -> dict[str, str] | None:
        """Turn a run in the worker's inbox into `running`; None when it is no longer queued."""
        k = self.keys
        flat = self._claim(
            keys=[
                k.inbox(worker),
                k.run(run_id),
                k.running,
                k.by_status(RunStatus.QUEUED),
                k.by_status(RunStatus.RUNNING),
                k.worker(worker),
            ],
            args=[run_id, worker, int(lease_s * 1000)],
        )
        if not flat:
            return None
        return dict(zip(flat[::2], flat[1::2], strict=True))

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
                ],
                args=[run_id, worker, reason],
            )
        )

    def heartbeat(
        self,
        worker: str,
        lease_s: float,
        run_id: str | None = None,
        pid: int | None = None,
        **info: object,
    ) -> bool:
        """Renew the worker's presence and its run's lease; False if the run is not its own.

        With `pid`, the horse's pid is recorded on the run (so it can be seen while running).
        """
        k = self.keys
        reply = self._heartbeat(
            keys=[k.workers, k.worker(worker), k.running, k.run(run_id or "-")],
            args=[worker, int(lease_s * 1000), run_id or "", pid or "", *_pairs(info)],
        )
        return bool(reply)

    def finish(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
    ) -> tuple[bool, str]:
        """Record a run's final status; (False, current status) if the worker did not hold it."""
        k = self.keys
        reply = self._finish(
            keys=[
                k.run(run_id),
                k.running,
                k.active(job),
                k.by_status(RunStatus.RUNNING),
                k.by_status(status),
                k.worker(worker),
            ],
            args=[run_id, worker, str(status), int(duration_s * 1000), *_pairs(fields)],
        )
        return bool(reply[0]), str(reply[1])

    def unregister_worker(self, worker: str) -> None:
        """Remove a worker that is shutting down (its inbox is empty by then)."""
        pipe = self.redis.pipeline()
        pipe.zrem(self.keys.workers, worker)
        pipe.delete(self.keys.worker(worker))
        pipe.execute()

    def workers(self) -> list[dict[str, str]]:
        """Live workers with their fields (host, pid, queues, current run, heartbeat)."""
        now_ms = self.server_time_ms()
        ids = cast(list[str], self.redis.zrangebyscore(self.keys.workers, now_ms, "+inf"))
        pipe = self.redis.pipeline()
        for wid in ids:
            pipe.hgetall(self.keys.worker(wid))
        rows = cast(list[dict[str, str]], pipe.execute())
        return [{"id": wid, **row} for wid, row in zip(ids, rows, strict=True)]

    def server_time_ms(self) -> int:
        """Redis server time in milliseconds."""
        secs, micros = self.redis.time()
        return int(secs) * 1000 + int(micros) // 1000

    # -- recovery ------------------------------------------------------------------------

    def reap(self, reason: str = "lease expired: its worker stopped renewing it") -> list[str]:
        """Mark runs whose lease expired `lost`; return their ids."""
        k = self.keys
        now_ms = self.server_time_ms()
        expired = cast(list[str], self.redis.zrangebyscore(k.running, "-inf", now_ms))
        lost: list[str] = []
        for run_id in expired:
            job = cast(str | None, self.redis.hget(k.run(run_id), "job")) or "-"
            done = self._reap(
                keys=[
                    k.running,
                    k.run(run_id),
                    k.active(job),
                    k.by_status(RunStatus.RUNNING),
                    k.by_status(RunStatus.LOST),
                ],
                args=[run_id, reason],
            )
            if done:
                lost.append(run_id)
        return lost

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
                requeued += int(
                    self._requeue(keys=[inbox, k.queue(queue), k.run(run_id)], args=[run_id])
                )
            if not self.redis.exists(inbox):
                self.redis.zrem(k.workers, wid)
        return requeued

    # -- history -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """The run with this id; UnknownRun when there is none."""
        from scheduler.errors import UnknownRun

        fields = cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id)))
        if not fields:
            raise UnknownRun(run_id)
        return Run.from_fields(fields)

    def raw_run(self, run_id: str) -> dict[str, str]:
        """The stored fields of a run as they are (for diagnostics such as late reports)."""
        return cast(dict[str, str], self.redis.hgetall(self.keys.run(run_id)))

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

    def iter_history(
        self,
        *,
        job: str | None = None,
        statuses: Iterable[RunStatus] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 50,
    ) -> Iterator[Run]:
        """Stream runs newest first; pages through the most selective index."""
        wanted = set(statuses)
        k = self.keys
        if job is not None:
            index = k.by_job(job)
        elif len(wanted) == 1:
            index = k.by_status(next(iter(wanted)))
        else:
            index = k.all_runs
        high: str | int = to_ms(until) if until else "+inf"
        low: str | int = to_ms(since) if since else "-inf"
        page = 200 if limit is None else max(limit, 1)
        offset = 0
        yielded = 0
        while limit is None or yielded < limit:
            ids = cast(
                list[str],
                self.redis.zrevrangebyscore(index, high, low, start=offset, num=page),
            )
            if not ids:
                return
            offset += len(ids)
            for run in self._runs(ids):
                if wanted and run.status not in wanted:
                    continue
                if job is not None and run.job != job:
                    continue
                yield run
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            page = min(page * 2, 2000)

    def _runs(self, ids: Sequence[str]) -> list[Run]:
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self.keys.run(run_id))
        rows = cast(list[dict[str, str]], pipe.execute())
        return [Run.from_fields(row) for row in rows if row]

    def last_runs(self, jobs: Sequence[str]) -> dict[str, Run]:
        """The newest run of each job that has one."""
        pipe = self.redis.pipeline(transaction=False)
        for name in jobs:
            pipe.zrevrange(self.keys.by_job(name), 0, 0)
        heads = cast(list[list[str]], pipe.execute())
        ids = [head[0] for head in heads if head]
        return {run.job: run for run in self._runs(ids)}

    def queue_depth(self, queue: str) -> int:
        """How many runs wait in a queue."""
        return int(self.redis.llen(self.keys.queue(queue)))

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
        dropped = 0
        pipe = self.redis.pipeline(transaction=False)
        for i, name in enumerate(names):
            for run_id in set(replies[2 * i]) | set(replies[2 * i + 1]):
                pipe.evalsha(
                    self._drop.sha,
                    3 + len(status_keys),
                    k.run(run_id),
                    k.all_runs,
                    k.by_job(name),
                    *status_keys,
                    run_id,
                )
                dropped += 1
        if dropped:
            self._drop(keys=[k.run("-"), k.all_runs, k.by_job("-")], args=["-"])  # loads the script
            dropped = sum(int(x) for x in pipe.execute())
        return dropped


def default_worker_id() -> str:
    """A worker id unique on this host: `host:pid`."""
    import os

    return f"{socket.gethostname()}:{os.getpid()}"
