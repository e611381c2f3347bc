"""The Redis implementation of the store's port: one Lua script per transition.

Every method lets out only the package's errors (see faults.py); replies are checked as they
are read, so a reply of an unexpected shape is StoreCorrupt rather than a TypeError later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

import redis
import redis.exceptions

from scheduler.errors import StoreCorrupt, StoreError, StoreUnavailable, UnknownRun
from scheduler.model import (
    DEFAULT_QUEUE,
    PENDING,
    KillCause,
    Overlap,
    Run,
    RunStatus,
    Trigger,
    from_ms,
    to_ms,
)
from scheduler.policy import Retry, RunPolicy, retry_plan
from scheduler.store import scripts
from scheduler.store.codec import (
    SUMMARY_BATCH,
    SUMMARY_FIELDS,
    TEXT_LIMIT,
    capped,
    decode_claimed,
    decode_run,
    encode,
    head_of,
    merged,
    pairs,
    settings_args,
    summary,
    tail_of,
)
from scheduler.store.connect import Client, Pipe, advice, connect
from scheduler.store.faults import guarded, guarded_iter, translate
from scheduler.store.keys import DEFAULT_NAMESPACE, Keys
from scheduler.store.port import Store
from scheduler.store.records import (
    Claimed,
    Enqueued,
    Fire,
    FireSettings,
    Heartbeat,
    Retention,
    RunSummary,
    fire_settings,
)
from scheduler.store.scripts import Arg
from scheduler.urls import Durability, mask_url, split_url

log = logging.getLogger("sched.store")
STATUSES = tuple(RunStatus)
# What a worker may make of a queued run it will not execute.
_REFUSALS = (RunStatus.FAILED, RunStatus.SKIPPED)
# Fires per call of the enqueue script: a few arguments each, so a call stays far below
# Redis's limits and holds the server for milliseconds, not seconds.
ENQUEUE_BATCH = 1000


class StoreKeys(Keys):
    """Keys, and those of what each live process runs (set_loaded)."""

    @property
    def loaded(self) -> str:
        return f"{self.prefix}loaded"

    def loaded_info(self, process: str) -> str:
        return f"{self.prefix}loaded:{process}"

    def not_run(self, job: str) -> str:
        """The job's skipped and missed fires (also in its idx:job), kept under a cap of their
        own so that they never push its real runs out of retention."""
        return f"{self.prefix}idx:not_run:{job}"

    @property
    def hold(self) -> str:
        """Until when (ms) fires that look at active runs are held after Redis was emptied."""
        return f"{self.prefix}hold"

    @property
    def probe(self) -> str:
        """A short-lived key a reader writes to learn whether Redis takes writes."""
        return f"{self.prefix}probe"


class Transition:
    """One Lua script, registered with a client, called with its slots by name."""

    def __init__(self, client: Client, name: str) -> None:
        self.source = scripts.load(name)
        self.script = client.register_script(self.source.text)

    @property
    def sha(self) -> str:
        return str(self.script.sha)

    def slots(
        self,
        keys: Mapping[str, str],
        args: Mapping[str, Arg],
        key_rest: Sequence[str] = (),
        arg_rest: Sequence[Arg] = (),
    ) -> tuple[list[str], list[Arg]]:
        """KEYS and ARGV in the script's order (LayoutError when a slot is missing or extra)."""
        return self.source.keys(keys, key_rest), self.source.args(args, arg_rest)

    def __call__(
        self,
        keys: Mapping[str, str],
        args: Mapping[str, Arg],
        key_rest: Sequence[str] = (),
        arg_rest: Sequence[Arg] = (),
        client: Pipe | None = None,
    ) -> object:
        """Run it (loading it first if Redis lost it: SCRIPT FLUSH, a restart, a failover)."""
        ordered_keys, ordered_args = self.slots(keys, args, key_rest, arg_rest)
        return self.script(keys=ordered_keys, args=ordered_args, client=client)


def _status(text: str) -> RunStatus | None:
    """A status the enqueue script replied; None for a stale fire or an unknown status."""
    try:
        return RunStatus(text)
    except ValueError:
        return None


def _enqueued(run_id: str, outcome: str) -> Enqueued:
    """One fire's outcome as the enqueue script replied it (see its comment)."""
    if outcome.startswith("0held"):
        try:
            held_s = int(outcome[5:]) / 1000
        except ValueError:
            raise StoreCorrupt(f"the enqueue script replied {outcome!r} for a held fire") from None
        return Enqueued(run_id, False, None, held_s=held_s)
    return Enqueued(run_id, outcome[0] == "1", _status(outcome[1:]))


def _text(reply: object) -> str | None:
    if reply is None or isinstance(reply, str):
        return reply
    raise StoreCorrupt(f"Redis replied {reply!r} where a string was expected")


def _texts(reply: object) -> list[str]:
    if isinstance(reply, list | set) and all(isinstance(x, str) for x in reply):
        return list(reply)
    raise StoreCorrupt(f"Redis replied {reply!r} where a list of strings was expected")


def _hash(reply: object) -> dict[str, str]:
    if isinstance(reply, dict):
        return {str(name): str(value) for name, value in reply.items()}
    raise StoreCorrupt(f"Redis replied {reply!r} where a hash was expected")


def _scored(reply: object) -> list[tuple[str, float]]:
    if isinstance(reply, list) and all(isinstance(x, list | tuple) and len(x) == 2 for x in reply):
        return [(str(member), float(score)) for member, score in reply]
    raise StoreCorrupt(f"Redis replied {reply!r} where (member, score) pairs were expected")


def _ints(reply: object) -> tuple[int, int]:
    if isinstance(reply, list) and len(reply) == 2 and all(isinstance(x, int) for x in reply):
        return int(reply[0]), int(reply[1])
    raise StoreCorrupt(f"a script replied {reply!r} where {{number, number}} was expected")


def _flag_and_text(reply: object) -> tuple[bool, str]:
    if isinstance(reply, list) and len(reply) == 2:
        return bool(reply[0]), str(reply[1])
    raise StoreCorrupt(f"a script replied {reply!r} where {{flag, text}} was expected")


class RedisStore(Store):
    """The store over one Redis database and namespace."""

    def __init__(
        self,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        socket_timeout_s: float = 10.0,
        clock_gap_s: float = 5.0,
    ) -> None:
        self.url = url
        # How many replicas must hold a fire or a report before its write counts as done.
        self.durability: Durability = split_url(url)[1]
        self.namespace = namespace
        self.keys = StoreKeys(namespace)
        # Redis silent for longer than this (stopped, restarted, cut off) counts as an outage.
        self.clock_gap_s = clock_gap_s
        self.socket_timeout_s = socket_timeout_s
        # A bounded wait, so a stalled Redis cannot hold a caller forever; longer than a WAIT
        # for the replicas may take, whose own timeout answers first.
        wait_s = self.durability.timeout_ms / 1000 + 1 if self.durability.replicas else 0
        self.redis: Client = connect(
            url,
            timeout_s=max(socket_timeout_s, wait_s),
            connect_timeout_s=5,
            home=self.keys.prefix,
        )
        # Heartbeats go through their own client with a short timeout: a worker waiting on
        # its horse must never be held long by a stalled Redis.
        self.heartbeat_timeout_s = min(1.0, socket_timeout_s)
        self._fast: Client = connect(
            url,
            timeout_s=self.heartbeat_timeout_s,
            connect_timeout_s=self.heartbeat_timeout_s,
            home=self.keys.prefix,
        )
        # The runs this process claimed and has not reported yet (a worker's, by id): what a
        # heartbeat writes back when Redis lost the record.
        self._held: dict[str, Claimed] = {}
        # Records found unreadable, reported once each.
        self._reported: set[str | None] = set()
        # Each job definition's fire settings as the enqueue script reads them.
        self._settings_args: dict[FireSettings, tuple[str, ...]] = {}
        self._enqueue = Transition(self.redis, "enqueue")
        self._claim = Transition(self.redis, "claim")
        self._heartbeat = Transition(self._fast, "heartbeat")
        self._finish = Transition(self.redis, "finish")
        self._restore = Transition(self.redis, "restore")
        self._fail_queued = Transition(self.redis, "fail_queued")
        self._reap = Transition(self.redis, "reap")
        self._promote = Transition(self.redis, "promote")
        self._kill = Transition(self.redis, "kill")
        self._requeue = Transition(self.redis, "requeue_inbox")
        self._drop = Transition(self.redis, "drop")
        self._run_rows = Transition(self.redis, "run_rows")
        self._newest_ids = Transition(self.redis, "newest_ids")
        self._loaded = Transition(self.redis, "loaded")
        self._observe = Transition(self.redis, "observe")

    # -- connection ----------------------------------------------------------------------

    def describe(self) -> str:
        return mask_url(self.url)

    def ping(self) -> None:
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
                raise StoreUnavailable(what, f"{exc}; {advice(exc)}") from exc
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
            reply = _hash(self.redis.config_get(name))
        except redis.exceptions.ResponseError:
            return None  # CONFIG is often disabled on managed Redis; nothing to check then.
        return reply.get(name)

    def close(self) -> None:
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
    def enqueue_many(
        self, fires: Sequence[Fire], *, hold_after_empty_s: float = 0.0
    ) -> list[Enqueued]:
        hold_ms = max(math.ceil(hold_after_empty_s * 1000), 0)
        results: list[Enqueued] = []
        for start in range(0, len(fires), ENQUEUE_BATCH):
            results += self._enqueue_batch(fires[start : start + ENQUEUE_BATCH], hold_ms)
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
        settings = fire_settings(
            queue,
            overlap=Overlap.ALLOW,
            timeout_s=timeout_s,
            outcome=RunStatus.MISSED,
            reason=reason,
        )
        batch = [Fire(run_id, job, fire_at, settings) for run_id, fire_at in fires]
        return sum(result.created for result in self.enqueue_many(batch))

    def _enqueue_batch(self, fires: Sequence[Fire], hold_ms: int) -> list[Enqueued]:
        """One script call for all the fires, in order. When a job's active runs changed
        between reading them and the call (overlap queue/replace), the script stops at that
        fire; they are read again and the rest is sent again."""
        done: list[Enqueued] = []
        tries = 0
        while len(done) < len(fires):
            rest = fires[len(done) :]
            keys, args = self._enqueue_args(rest, self._active_runs(rest), hold_ms)
            reply = _text(self._written(self._enqueue, keys, args)) or ""
            progress = len(done)
            for fire, outcome in zip(rest, reply.split(" "), strict=False):
                if outcome == "0retry":
                    break
                done.append(_enqueued(fire.run_id, outcome))
            tries = 0 if len(done) > progress else tries + 1
            if tries >= 100:
                job = fires[len(done)].job
                raise StoreUnavailable(
                    "enqueue gave up", f"the active runs of {job!r} keep changing"
                )
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
                active[i] = sorted(_texts(members))
        return active

    def _encoded(self, settings: FireSettings) -> tuple[str, ...]:
        encoded = self._settings_args.get(settings)
        if encoded is None:
            if len(self._settings_args) > 10_000:
                self._settings_args.clear()
            encoded = self._settings_args[settings] = settings_args(settings)
        return encoded

    def _enqueue_args(
        self, fires: Sequence[Fire], active: Sequence[Sequence[str]], hold_ms: int = 0
    ) -> tuple[list[str], list[Arg]]:
        """KEYS and ARGV of the enqueue script; see its slot table for the layout."""
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
        batch: list[Arg] = []
        for each in settings:
            overlap, scheduled, outcome, reason, queue, *fields = self._encoded(each)
            number = queues.setdefault(queue, len(queues) + 1)
            batch += (overlap, scheduled, outcome, reason, number, len(fields) // 2, *fields)
        batch_keys = [k.queue(name) for name in queues]
        for number, ms, members in groups:
            batch += (number, ms, len(members))
            for fire, ids in members:
                batch_keys += (
                    k.run(fire.run_id),
                    k.out(fire.run_id),
                    k.active(fire.job),
                    k.by_job(fire.job),
                    k.not_run(fire.job),
                )
                batch += (fire.run_id, fire.job)
                if fire.settings.reads_active:
                    for other in ids:
                        batch_keys += (k.run(other), k.out(other))
                    batch += (len(ids), *ids)
        return self._enqueue.slots(
            {
                "idx_all": k.all_runs,
                "idx_queued": k.by_status(RunStatus.QUEUED),
                "idx_skipped": k.by_status(RunStatus.SKIPPED),
                "idx_missed": k.by_status(RunStatus.MISSED),
                "last_fire": k.last_fire,
                "paused": k.paused,
                "ended_feed": k.ended,
                "epoch": k.epoch,
                "hold": k.hold,
            },
            {"queue_count": len(queues), "settings_count": len(settings), "hold_ms": hold_ms},
            batch_keys,
            batch,
        )

    @guarded
    def pause(self, job: str) -> bool:
        return bool(self.redis.sadd(self.keys.paused, job))

    @guarded
    def resume(self, job: str) -> bool:
        return bool(self.redis.srem(self.keys.paused, job))

    @guarded
    def paused_jobs(self) -> set[str]:
        return set(_texts(self.redis.smembers(self.keys.paused)))

    @guarded
    def claim_epoch(self, hold_s: float = 0.0) -> bool:
        now_ms = self.server_time_ms()
        if not self.redis.set(self.keys.epoch, str(now_ms), nx=True):
            return False
        hold_ms = math.ceil(hold_s * 1000)
        if hold_ms > 0:
            self.redis.set(self.keys.hold, str(now_ms + hold_ms), px=hold_ms)
        return True

    @guarded
    def last_fires(self) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for job, ms in _hash(self.redis.hgetall(self.keys.last_fire)).items():
            try:
                out[job] = from_ms(int(ms))
            except (ValueError, OverflowError, OSError):
                self._unreadable(StoreCorrupt(f"its last fire {ms[:80]!r} is not a time", job))
        return out

    # -- workers -------------------------------------------------------------------------

    @guarded
    def wait_for_run(self, worker: str, queues: Sequence[str], timeout_s: float) -> str | None:
        k = self.keys
        inbox = k.inbox(worker)
        if len(queues) > 1:
            # In order of preference; only the first queue can be waited on, so the others
            # are looked at again at least twice a second.
            for name in queues:
                moved = _text(self.redis.lmove(k.queue(name), inbox, "LEFT", "RIGHT"))
                if moved is not None:
                    return moved
            timeout_s = min(timeout_s, 0.5)
        # BLMOVE takes fractional seconds (Redis 6+); redis-py only annotates int.
        wait: int = timeout_s  # type: ignore[assignment]
        return _text(self.redis.blmove(k.queue(queues[0]), inbox, wait, "LEFT", "RIGHT"))

    @guarded
    def claim(self, worker: str, run_id: str, lease_s: float) -> Claimed | None:
        k = self.keys
        job = run_id.split("@", 1)[0]
        # With durability, a claim counts once the replicas hold it, like a fire or a report:
        # a claim lost in a failover would leave its run queued for a second worker while the
        # first one runs it. Not acknowledged, the caller asks again, and a claim that went
        # through answers again (to the worker that holds it only).
        flat = self._recorded(
            self._claim,
            {
                "inbox": k.inbox(worker),
                "run": k.run(run_id),
                "running": k.running,
                "idx_queued": k.by_status(RunStatus.QUEUED),
                "idx_running": k.by_status(RunStatus.RUNNING),
                "worker_hash": k.worker(worker),
                "idx_missed": k.by_status(RunStatus.MISSED),
                "active": k.active(job),
                "ended_feed": k.ended,
                "idx_failed": k.by_status(RunStatus.FAILED),
                "out": k.out(run_id),
            },
            {"run_id": run_id, "worker": worker, "lease_ms": int(lease_s * 1000)},
        )
        fields = _texts(flat)
        if not fields:
            return None
        if fields[0] == "":  # the script set the record aside: it is failed now
            log.error(
                "run %s: set aside as failed, its record cannot be used: %s", run_id, fields[1]
            )
            return None
        try:
            claimed = decode_claimed(dict(zip(fields[::2], fields[1::2], strict=True)))
        except StoreCorrupt as exc:  # passed the script's checks, but Python cannot read it
            reason = {"reason": f"unusable record: {exc.detail}"}
            self.finish(worker, run_id, job, RunStatus.FAILED, 0.0, reason)
            log.error("run %s: set aside as failed, its record cannot be used: %s", run_id, exc)
            return None
        if len(self._held) >= 1000:  # a worker holds one run at a time; never a leak
            self._held.clear()
        self._held[run_id] = claimed
        return claimed

    @guarded
    def refuse(
        self,
        worker: str,
        run_id: str,
        job: str,
        reason: str,
        status: RunStatus = RunStatus.FAILED,
    ) -> bool:
        if status not in _REFUSALS:
            raise ValueError(f"refuse: status {status!r}, expected failed or skipped")
        k = self.keys
        done = self._recorded(
            self._fail_queued,
            {
                "inbox": k.inbox(worker),
                "run": k.run(run_id),
                "active": k.active(job),
                "idx_queued": k.by_status(RunStatus.QUEUED),
                "idx_final": k.by_status(status),
                "ended_feed": k.ended,
                "out": k.out(run_id),
            },
            {
                "run_id": run_id,
                "worker": worker,
                "reason": head_of(reason, TEXT_LIMIT),
                "status": str(status),
            },
        )
        return bool(done)

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
        held, kill, gone = self._beat(worker, lease_s, run_id, horse_pid, live, info, "")
        claimed = self._held.get(run_id) if run_id else None
        if gone and claimed is not None and claimed.run.worker == worker:
            # Redis lost the record while the run runs here: write it back from the copy
            # this worker claimed, so that the job's overlap rule still sees it running.
            flat = pairs(claimed.fields())
            record = json.dumps(dict(zip(flat[::2], flat[1::2], strict=True)))
            held, kill, gone = self._beat(worker, lease_s, run_id, horse_pid, live, info, record)
            if held:
                log.warning(
                    "run %s: Redis had lost its record while it runs; written back from this "
                    "worker's copy",
                    run_id,
                )
        return Heartbeat(held, _kill_cause(kill) if kill else None)

    def _beat(
        self,
        worker: str,
        lease_s: float,
        run_id: str | None,
        horse_pid: int | None,
        live: tuple[int, str] | None,
        info: Mapping[str, object] | None,
        record: str,
    ) -> tuple[bool, str, bool]:
        k = self.keys
        job = run_id.split("@", 1)[0] if run_id else "-"
        reply = self._heartbeat(
            {
                "workers": k.workers,
                "worker_hash": k.worker(worker),
                "running": k.running,
                "run": k.run(run_id or "-"),
                "clock": k.clock,
                "active": k.active(job),
                "idx_all": k.all_runs,
                "idx_job": k.by_job(job),
                "idx_running": k.by_status(RunStatus.RUNNING),
                "out": k.out(run_id or "-"),
            },
            {
                "worker": worker,
                "lease_ms": int(lease_s * 1000),
                "run_id": run_id or "",
                "horse_pid": horse_pid or "",
                "clock_gap_ms": _gap_ms(self.clock_gap_s, lease_s),
                "live_total": live[0] if live else "",
                "live_output": tail_of(live[1], TEXT_LIMIT) if live else "",
                "record": record,
            },
            arg_rest=pairs(info or {}),
        )
        if isinstance(reply, list) and len(reply) == 3:
            return bool(reply[0]), str(reply[1]), bool(reply[2])
        raise StoreCorrupt(f"the heartbeat script replied {reply!r}, not {{held, kill, gone}}")

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
        keys, args = self._finish_call(worker, run_id, job, status, duration_s, fields, retry)
        self._held.pop(run_id, None)
        return _flag_and_text(self._written(self._finish, keys, args))

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
        keys, args = self._finish_call(worker, run_id, job, status, duration_s, fields, retry)
        self._held.pop(run_id, None)
        pipe = self.redis.pipeline(transaction=False)
        # EVALSHA by hand: a registered script in a pipeline costs a SCRIPT EXISTS round trip
        # on every execute. The script is loaded only when Redis says it lacks it.
        pipe.evalsha(self._finish.sha, len(keys), *keys, *args)
        pipe.lmove(self.keys.queue(queue), self.keys.inbox(worker), "LEFT", "RIGHT")
        if self.durability.replicas:
            pipe.wait(self.durability.replicas, self.durability.timeout_ms)
        reply, moved, *acked = pipe.execute(raise_on_error=False)
        taken = moved if isinstance(moved, str) else None
        try:
            if isinstance(reply, redis.exceptions.NoScriptError):
                reply = self._written(self._finish, keys, args)
            elif isinstance(reply, Exception):
                raise reply
            elif acked:
                self._acknowledged(acked[0])
            recorded, current = _flag_and_text(reply)
        except BaseException:
            if taken is not None:
                with contextlib.suppress(StoreError):
                    self.give_back(worker, taken, queue)
            raise
        return recorded, current, taken

    def _recorded(
        self,
        transition: Transition,
        keys: Mapping[str, str],
        args: Mapping[str, Arg],
        key_rest: Sequence[str] = (),
        arg_rest: Sequence[Arg] = (),
    ) -> object:
        """_written() with the script's slots given by name."""
        return self._written(transition, *transition.slots(keys, args, key_rest, arg_rest))

    def _written(self, transition: Transition, keys: list[str], args: list[Arg]) -> object:
        """Run a script that records a fire or a report; with `durability`, WAIT for the
        replicas in the same round trip, and StoreUnavailable when fewer acknowledged it in
        time. The write is then not done as far as the caller knows: it sends it again, as
        after any outage, and every such script takes the same write twice (a fire's run id
        exists, a report already recorded answers recorded)."""
        if not self.durability.replicas:
            return transition.script(keys=keys, args=args)
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=False)
            # EVALSHA by hand: WAIT must follow the write on the same connection.
            pipe.evalsha(transition.sha, len(keys), *keys, *args)
            pipe.wait(self.durability.replicas, self.durability.timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
            if isinstance(reply, redis.exceptions.NoScriptError):
                self.redis.script_load(transition.source.text)
                continue
            if isinstance(reply, Exception):
                raise reply
            self._acknowledged(acked)
            return reply
        raise StoreUnavailable("Redis lost its scripts", f"{transition.source.name} not loaded")

    def _acknowledged(self, acked: object) -> None:
        """StoreUnavailable unless WAIT replied that enough replicas hold the writes."""
        if isinstance(acked, Exception):
            raise acked
        wanted = self.durability
        if not isinstance(acked, int) or acked < wanted.replicas:
            raise StoreUnavailable(
                "Redis replicas did not acknowledge a write in time",
                f"{acked} of {wanted.replicas} replicas within {wanted.timeout_ms} ms "
                "(wait_replicas in the Redis URL)",
            )

    @guarded
    def inbox_head(self, worker: str) -> str | None:
        return _text(self.redis.lindex(self.keys.inbox(worker), 0))

    @guarded
    def give_back(self, worker: str, run_id: str, queue: str) -> bool:
        k = self.keys
        keys = {"inbox": k.inbox(worker), "queue": k.queue(queue), "run": k.run(run_id)}
        return bool(self._requeue(keys, {"run_id": run_id}))

    def _finish_call(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
        retry: Retry | None,
    ) -> tuple[list[str], list[Arg]]:
        k = self.keys
        retry_id = retry.run_id if retry else ""
        return self._finish.slots(
            {
                "run": k.run(run_id),
                "running": k.running,
                "active": k.active(job),
                "idx_running": k.by_status(RunStatus.RUNNING),
                "idx_final": k.by_status(status),
                "worker_hash": k.worker(worker),
                **self._retry_keys(job, retry_id),
                "ended_feed": k.ended,
                "out": k.out(run_id),
            },
            {
                "run_id": run_id,
                "worker": worker,
                "status": str(status),
                "duration_ms": int(duration_s * 1000),
                **_retry_args(retry),
            },
            arg_rest=pairs(capped(fields)),
        )

    def _retry_keys(self, job: str, retry_id: str) -> dict[str, str]:
        k = self.keys
        return {
            "retry_run": k.run(retry_id or "-"),
            "delayed": k.delayed,
            "idx_all": k.all_runs,
            "idx_job": k.by_job(job),
            "idx_queued": k.by_status(RunStatus.QUEUED),
        }

    @guarded
    def restore(self, fields: Mapping[str, object], retry: Retry | None = None) -> bool:
        k = self.keys
        run_id, job, status = str(fields["id"]), str(fields["job"]), str(fields["status"])
        stored = {n: encode(v) for n, v in fields.items() if v is not None}
        try:
            decode_run(stored)  # what the reads will make of it; the script checks the rest
        except StoreCorrupt as exc:
            log.error("run %s: its report cannot be restored: %s", run_id, exc.detail)
            return False
        plan = _retry_after(run_id, stored, status) if retry is None else retry
        done = self._recorded(
            self._restore,
            {
                "run": k.run(run_id),
                "idx_status": k.by_status(status),
                **self._retry_keys(job, plan.run_id if plan else ""),
                "active": k.active(job),
                "ended_feed": k.ended,
                "out": k.out(run_id),
            },
            {
                "run_id": run_id,
                "scheduled_ms": encode(fields["scheduled_for"]),
                **_retry_args(plan),
            },
            arg_rest=pairs(capped(fields)),
        )
        if isinstance(done, list):
            log.error("run %s: its report cannot be restored: %s", run_id, _texts(done)[-1])
            return False
        return bool(done)

    @guarded
    def kill(self, run_id: str, reason: KillCause = KillCause.OPERATOR) -> str:
        k = self.keys
        job, queue = (_text(x) for x in self.redis.hmget(k.run(run_id), "job", "queue"))
        if job is None:
            raise UnknownRun(run_id)
        before = self._recorded(
            self._kill,
            {
                "run": k.run(run_id),
                "queue": k.queue(queue or DEFAULT_QUEUE),
                "active": k.active(job),
                "idx_queued": k.by_status(RunStatus.QUEUED),
                "idx_killed": k.by_status(RunStatus.KILLED),
                "delayed": k.delayed,
                "ended_feed": k.ended,
            },
            {"run_id": run_id, "reason": reason},
        )
        return str(before)

    @guarded
    def unregister_worker(self, worker: str) -> None:
        pipe = self.redis.pipeline()
        pipe.zrem(self.keys.workers, worker)
        pipe.delete(self.keys.worker(worker))
        pipe.execute()

    @guarded
    def workers(self) -> list[dict[str, str]]:
        now_ms = self.server_time_ms()
        ids = _texts(self.redis.zrangebyscore(self.keys.workers, now_ms, "+inf"))
        pipe = self.redis.pipeline()
        for wid in ids:
            pipe.hgetall(self.keys.worker(wid))
        rows = [_hash(row) for row in pipe.execute()]
        return [{"id": wid, **row} for wid, row in zip(ids, rows, strict=True)]

    @guarded
    def set_loaded(self, process: str, info: Mapping[str, str], ttl_s: float) -> None:
        self._loaded(
            {"loaded": self.keys.loaded, "info_hash": self.keys.loaded_info(process)},
            {"process": process, "ttl_ms": max(int(ttl_s * 1000), 1)},
            arg_rest=pairs(info),
        )

    @guarded
    def loaded(self) -> dict[str, dict[str, str]]:
        live = _texts(self.redis.zrangebyscore(self.keys.loaded, self.server_time_ms(), "+inf"))
        pipe = self.redis.pipeline(transaction=False)
        for process in live:
            pipe.hgetall(self.keys.loaded_info(process))
        rows = [_hash(row) for row in pipe.execute()] if live else []
        return dict(zip(live, rows, strict=True))

    @guarded
    def server_time_ms(self) -> int:
        secs, micros = self.redis.time()
        return int(secs) * 1000 + int(micros) // 1000

    # -- recovery ------------------------------------------------------------------------

    @guarded
    def reap(
        self, lease_s: float, reason: str = "lease expired: its worker stopped renewing it"
    ) -> list[str]:
        now_ms = self.server_time_ms()
        expired = _texts(self.redis.zrangebyscore(self.keys.running, "-inf", now_ms))
        return [run_id for run_id in expired if self._lose(run_id, reason, lease_s, "") == 1]

    @guarded
    def lose_runs_of(self, worker: str, reason: str) -> list[str]:
        k = self.keys
        leased = _texts(self.redis.zrange(k.running, 0, -1))
        current = _text(self.redis.hget(k.worker(worker), "current"))
        candidates = sorted(set(leased) | ({current} if current else set()))
        pipe = self.redis.pipeline(transaction=False)
        for run_id in candidates:
            pipe.hget(k.run(run_id), "worker")
        holders = [_text(x) for x in pipe.execute()] if candidates else []
        held = [run_id for run_id, by in zip(candidates, holders, strict=True) if by == worker]
        return [run_id for run_id in held if self._lose(run_id, reason, 0.0, worker) == 1]

    def _lose(self, run_id: str, reason: str, lease_s: float, holder: str) -> int:
        """The reap script for one run: by its lease (holder ''), or now for a dead holder."""
        k = self.keys
        fields = _hash(self.redis.hgetall(k.run(run_id)))
        job = fields.get("job", "-")
        plan = _retry_after(run_id, fields, RunStatus.LOST)
        done = self._recorded(
            self._reap,
            {
                "running": k.running,
                "run": k.run(run_id),
                "active": k.active(job),
                "idx_running": k.by_status(RunStatus.RUNNING),
                "idx_lost": k.by_status(RunStatus.LOST),
                "clock": k.clock,
                **self._retry_keys(job, plan.run_id if plan else ""),
                "ended_feed": k.ended,
                "worker_hash": k.worker(fields.get("worker") or "-"),
                "out": k.out(run_id),
            },
            {
                "run_id": run_id,
                "reason": head_of(reason, TEXT_LIMIT),
                "clock_gap_ms": _gap_ms(self.clock_gap_s, lease_s if holder == "" else math.inf),
                "lease_ms": int(lease_s * 1000),
                **_retry_args(plan),
                "holder": holder,
            },
        )
        return int(done) if isinstance(done, int) else 0

    @guarded
    def take_ended(self, count: int = 500) -> list[Run]:
        ids = self.redis.lpop(self.keys.ended, count)
        return self._runs(_texts(ids)) if ids else []

    @guarded
    def running_count(self) -> int:
        return int(self.redis.zcount(self.keys.running, self.server_time_ms(), "+inf"))

    @guarded
    def promote_due(self) -> int:
        k = self.keys
        now_ms = self.server_time_ms()
        due = _texts(self.redis.zrangebyscore(k.delayed, "-inf", now_ms, start=0, num=500))
        moved = 0
        for run_id in due:
            queue = _text(self.redis.hget(k.run(run_id), "queue")) or DEFAULT_QUEUE
            keys = {"delayed": k.delayed, "queue": k.queue(queue), "run": k.run(run_id)}
            moved += int(bool(self._promote(keys, {"run_id": run_id})))
        return moved

    @guarded
    def recover_inboxes(self) -> int:
        k = self.keys
        now_ms = self.server_time_ms()
        dead = _texts(self.redis.zrangebyscore(k.workers, "-inf", now_ms))
        requeued = 0
        for wid in dead:
            inbox = k.inbox(wid)
            for run_id in _texts(self.redis.lrange(inbox, 0, -1)):
                queue = _text(self.redis.hget(k.run(run_id), "queue")) or DEFAULT_QUEUE
                requeued += int(self.give_back(wid, run_id, queue))
            if not self.redis.exists(inbox):
                self.redis.zrem(k.workers, wid)
        return requeued

    # -- history -------------------------------------------------------------------------

    @guarded
    def get_run(self, run_id: str) -> Run:
        fields = self._stored([run_id])[0]
        if not fields:
            raise UnknownRun(run_id)
        return self._as_read([decode_run(fields)])[0]

    def _stored(self, ids: Sequence[str]) -> list[dict[str, str]]:
        """Each run's stored fields, its record and its side key read in one round trip
        ({} for a run that has no record)."""
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self.keys.run(run_id))
            pipe.hgetall(self.keys.out(run_id))
        replies = [_hash(reply) for reply in pipe.execute()] if ids else []
        return [
            merged(record, side) for record, side in zip(replies[::2], replies[1::2], strict=True)
        ]

    @guarded
    def live_output(self, run_id: str) -> tuple[str, int, str]:
        names = ("status", "live_total", "live_output", "output", "output_bytes")
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.run(run_id), *names)
        pipe.hmget(self.keys.out(run_id), *names)
        in_record, beside = ([_text(x) for x in reply] for reply in pipe.execute())
        # Each from the side key, else from the record (one written by an earlier version,
        # or the status, which only the record holds).
        status, total, live, final, final_total = (
            s if s is not None else r for r, s in zip(in_record, beside, strict=True)
        )
        if status is None:
            raise UnknownRun(run_id)
        if status == RunStatus.RUNNING:
            verdict = self._ran_out([run_id])[1].get(run_id)
            if verdict is not None and verdict.lost:
                status = str(RunStatus.LOST)
        try:
            if status in PENDING:
                return status, int(total or 0), live or ""
            text = final or ""
            return status, int(final_total or len(text.encode())), text
        except ValueError:
            raise StoreCorrupt("its output size is not a number", run_id) from None

    @guarded
    def raw_run(self, run_id: str) -> dict[str, str]:
        return self._stored([run_id])[0]

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
        wanted = set(statuses)
        k = self.keys
        if job is not None:
            indexes = [k.by_job(job)]
        elif wanted:
            # A running run whose lease ran out reads as lost (see _as_read).
            looked = wanted | ({RunStatus.RUNNING} if RunStatus.LOST in wanted else set())
            indexes = [k.by_status(s) for s in sorted(looked)]
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
        self, index: str, high: str | float, low: str | int
    ) -> Iterator[tuple[float, str]]:
        """The index's ids from `high` down to `low`, newest first, a page at a time.

        Each page starts at the last score read, not at an offset: runs added or forgotten
        while a read goes on (fires every second, retention) would shift an offset, and an
        id would be read twice or skipped. The ids already read at that score are left out.
        """
        page = 100
        at_high: set[str] = set()  # ids read whose score is `high`
        while True:
            rows = _scored(
                self.redis.zrevrangebyscore(
                    index, high, low, start=0, num=page + len(at_high), withscores=True
                )
            )
            rows = [(run_id, score) for run_id, score in rows if run_id not in at_high]
            if not rows:
                return
            for run_id, score in rows:
                yield score, run_id
            last = rows[-1][1]
            if last != high:
                at_high = set()
            at_high |= {run_id for run_id, score in rows if score == last}
            high = last
            page = min(page * 2, 2000)

    def _runs(self, ids: Sequence[str]) -> list[Run]:
        """The runs with these ids that have a record; one that cannot be read is left out."""
        runs: list[Run] = []
        for row in self._stored(ids):
            if row:
                try:
                    runs.append(decode_run(row))
                except StoreCorrupt as exc:
                    self._unreadable(exc)
        return self._as_read(runs)

    def _ran_out(self, ids: Sequence[str]) -> tuple[int, dict[str, Verdict]]:
        """The storage's time now, and for those of these running runs whose lease ran out
        what a reader makes of it (see Verdict): the reaper's rule, applied without writing.

        As the reaper does, a worker cut off by an outage gets one lease (its own, from its
        last heartbeat) to renew after Redis answers again. While Redis refuses writes (out
        of memory, a read-only replica) no lease can be renewed, so none is judged.
        """
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        # The lease first, then the status: a run that ended between the two reads shows
        # its final status, not a missing lease.
        for run_id in ids:
            pipe.zscore(k.running, run_id)
            pipe.hmget(k.run(run_id), "status", "worker")
        (secs, micros), *replies = pipe.execute()
        now_ms = int(secs) * 1000 + int(micros) // 1000
        expired: dict[str, tuple[float | None, str | None]] = {}
        for run_id, score, (status, worker) in zip(ids, replies[::2], replies[1::2], strict=True):
            lease = _number(score)
            if status == RunStatus.RUNNING and (lease is None or lease <= now_ms):
                expired[run_id] = (lease, _text(worker))
        if not expired:
            return now_ms, {}
        leases = self._worker_leases(expired)
        gap_ms = _gap_ms(self.clock_gap_s, min(leases.values(), default=math.inf) / 1000)
        try:
            keys = {"clock": k.clock, "probe": k.probe}
            now_ms, resumed_ms = _ints(self._observe(keys, {"gap_ms": gap_ms}))
        except redis.exceptions.NoPermissionError:  # a read-only user: judge by what is kept
            resumed_ms = int(_number(self.redis.hget(k.clock, "resumed")) or 0)
        except redis.exceptions.ResponseError as exc:
            problem = translate(exc)
            if not isinstance(problem, StoreUnavailable):
                raise
            # Redis refuses writes: nobody can renew a lease now.
            return now_ms, {
                run_id: Verdict(lease, None, problem.what) for run_id, (lease, _) in expired.items()
            }
        verdicts: dict[str, Verdict] = {}
        for run_id, (lease, _) in expired.items():
            own = leases.get(run_id)
            # Half a lease past its expiry (a live reaper records it by then, with its
            # retry), and one lease after Redis came back from an outage.
            wait_until = 0.0
            if own is not None:
                wait_until = max((lease or 0.0) + own / 2, resumed_ms + own)
            verdicts[run_id] = Verdict(lease, int(wait_until) if now_ms < wait_until else None)
        return now_ms, verdicts

    def _worker_leases(
        self, expired: Mapping[str, tuple[float | None, str | None]]
    ) -> dict[str, float]:
        """Each run's worker's lease (ms), from its last heartbeat to the expiry it set."""
        k = self.keys
        workers = sorted({w for _, w in expired.values() if w})
        pipe = self.redis.pipeline(transaction=False)
        for worker in workers:
            pipe.hget(k.worker(worker), "heartbeat_at")
            pipe.zscore(k.workers, worker)
        replies = pipe.execute() if workers else []
        beats = {
            worker: (_number(beat), _number(until))
            for worker, beat, until in zip(workers, replies[::2], replies[1::2], strict=True)
        }
        leases: dict[str, float] = {}
        for run_id, (lease, holder) in expired.items():
            beat, until = beats.get(holder or "", (None, None))
            end = lease if lease is not None and beat is not None and lease > beat else until
            if beat is not None and end is not None and end > beat:
                leases[run_id] = end - beat
        return leases

    def _as_read(self, runs: list[Run]) -> list[Run]:
        """The runs as they are now: a running one whose lease ran out is shown lost.

        Nothing is written: a reader may be a read-only user, and the reaper (a scheduler or
        worker) records the loss with its retry and alert. Until then the reason says that
        the status was judged when read. A worker cut off by an outage that renews the
        lease later shows its run running again.
        """
        running = [run.id for run in runs if run.status is RunStatus.RUNNING]
        if not running:
            return runs
        now_ms, verdicts = self._ran_out(running)
        return [
            _judged(run, verdicts[run.id], now_ms) if run.id in verdicts else run for run in runs
        ]

    def _unreadable(self, exc: StoreCorrupt) -> None:
        """Log a record left out of what is read, once per process."""
        if exc.record in self._reported:
            return
        if len(self._reported) > 10_000:
            self._reported.clear()
        self._reported.add(exc.record)
        log.error("%s; it is left out of what is read", exc)

    @guarded
    def last_runs(self, jobs: Sequence[str]) -> dict[str, Run]:
        pipe = self.redis.pipeline(transaction=False)
        for name in jobs:
            pipe.zrevrange(self.keys.by_job(name), 0, 0)
        ids = [head[0] for head in map(_texts, pipe.execute()) if head]
        return {run.job: run for run in self._runs(ids)}

    @guarded
    def queue_depth(self, queue: str) -> int:
        return int(self.redis.llen(self.keys.queue(queue)))

    @guarded
    def trim(self, jobs: Iterable[str], retention: Retention) -> int:
        k = self.keys
        names = list(jobs)
        cutoff = math.floor(time.time() * 1000 - retention.max_age_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.zrangebyscore(k.by_job(name), "-inf", cutoff)
            pipe.zrange(k.not_run(name), 0, -(retention.keep_not_run + 1))
            pipe.zcard(k.by_job(name))
            pipe.zcard(k.not_run(name))
        replies = pipe.execute()
        drops: dict[str, set[str]] = {}
        for i, name in enumerate(names):
            old, not_run, total, skipped = replies[4 * i : 4 * i + 4]
            drops[name] = set(_texts(old)) | set(_texts(not_run))
            # Real runs beyond keep_runs: the oldest ids of idx:job that are not fires not run.
            excess = int(total) - int(skipped) - retention.keep_runs
            if excess > 0:
                drops[name] |= self._oldest_real(name, excess, int(skipped))
        dropped = self._forget((name, run_id) for name, ids in drops.items() for run_id in ids)
        return dropped + self._trim_total(retention)

    def _forget(self, runs: Iterable[tuple[str, str]]) -> int:
        """Drop these (job, run id) runs, record, side key and index entries, in one round
        trip; how many went."""
        k = self.keys
        status_keys = [k.by_status(s) for s in STATUSES]
        pipe = self.redis.pipeline(transaction=False)
        for job, run_id in runs:
            keys = {
                "run": k.run(run_id),
                "idx_all": k.all_runs,
                "idx_job": k.by_job(job),
                "out": k.out(run_id),
            }
            rest = [*status_keys, k.not_run(job)]
            self._drop(keys, {"run_id": run_id}, key_rest=rest, client=pipe)
        return sum(int(x) for x in pipe.execute()) if len(pipe) else 0

    def _trim_total(self, retention: Retention) -> int:
        """Forget the deployment's oldest finished runs beyond retention.keep_total."""
        k = self.keys
        excess = int(self.redis.zcard(k.all_runs)) - retention.keep_total
        if excess <= 0:
            return 0
        ids = _texts(self.redis.zrange(k.all_runs, 0, min(excess, retention.trim_batch) - 1))
        return self._forget((run_id.split("@", 1)[0], run_id) for run_id in ids)

    def _oldest_real(self, job: str, count: int, skipped: int) -> set[str]:
        """The `count` oldest runs of the job that are not skipped or missed fires."""
        k = self.keys
        ids = _texts(self.redis.zrange(k.by_job(job), 0, count + skipped - 1))
        if not ids:
            return set()
        scores = self.redis.zmscore(k.not_run(job), ids)
        real = [run_id for run_id, score in zip(ids, scores, strict=True) if score is None]
        return set(real[:count])

    # -- views over many runs --------------------------------------------------------------

    @guarded
    def newest_ids(
        self,
        jobs: Sequence[str],
        count: int,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[list[str]]:
        high: str | int = to_ms(until) if until else "+inf"
        low: str | int = to_ms(since) if since else "-inf"
        out: list[list[str]] = []
        for start in range(0, len(jobs), 500):
            keys = [self.keys.by_job(name) for name in jobs[start : start + 500]]
            args = {"high": high, "low": low, "count": count}
            reply = _texts(self._newest_ids({}, args, key_rest=keys))
            out += [text.split("\n") if text else [] for text in reply]
        return out

    @guarded
    def summaries(self, ids: Sequence[str]) -> list[RunSummary | None]:
        out: list[RunSummary | None] = []
        for start in range(0, len(ids), SUMMARY_BATCH):
            keys = [self.keys.run(run_id) for run_id in ids[start : start + SUMMARY_BATCH]]
            text = _text(self._run_rows({}, {}, key_rest=keys, arg_rest=SUMMARY_FIELDS)) or ""
            out += [summary(row.split("\x1f")) for row in text.split("\x1e")]
        running = [row.id for row in out if row is not None and row.status is RunStatus.RUNNING]
        if not running:
            return out
        now_ms, verdicts = self._ran_out(running)
        return [
            _judged_summary(row, verdicts[row.id], now_ms)
            if row is not None and row.id in verdicts
            else row
            for row in out
        ]

    @guarded
    def oldest_run_at(self, job: str) -> datetime | None:
        head = _scored(self.redis.zrange(self.keys.by_job(job), 0, 0, withscores=True))
        return from_ms(int(head[0][1])) if head else None

    @guarded
    def status_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        low: str | int = to_ms(since) if since else "-inf"
        high: str | int = to_ms(until) if until else "+inf"
        pipe = self.redis.pipeline(transaction=False)
        for status in STATUSES:
            pipe.zcount(self.keys.by_status(status), low, high)
        pipe.zrangebyscore(self.keys.by_status(RunStatus.RUNNING), low, high)
        *counts, running = pipe.execute()
        out = {str(status): int(n) for status, n in zip(STATUSES, counts, strict=True)}
        ids = _texts(running)
        if ids:
            ran_out = sum(v.lost for v in self._ran_out(ids)[1].values())
            out[RunStatus.RUNNING] -= ran_out
            out[RunStatus.LOST] += ran_out
        return out


def _gap_ms(clock_gap_s: float, lease_s: float) -> int:
    """How long Redis may be silent before it counts as an outage: the clock gap, or half a
    lease when that is shorter (a lease can only run out in a silence about as long)."""
    return int(min(clock_gap_s, lease_s / 2) * 1000)


def _number(reply: object) -> float | None:
    """A stored number (a score or a time in ms); None when absent or not a number."""
    if reply is None:
        return None
    try:
        value = float(str(reply))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a reader makes of a running run whose lease ran out (nothing is written).

    Lost, unless its worker still has until `renew_by` (ms) to renew it (half a lease past
    its expiry, so a live reaper records the loss first; one lease after an outage), or Redis
    refuses writes now (`refused` says why), so nobody can renew it.
    """

    lease_ms: float | None
    renew_by: int | None = None
    refused: str | None = None

    @property
    def lost(self) -> bool:
        return self.renew_by is None and self.refused is None

    def reason(self, now_ms: int) -> str:
        if self.lease_ms is None:
            expired = "it holds no lease"
        else:
            at = from_ms(int(self.lease_ms)).strftime("%Y-%m-%d %H:%M:%S UTC")
            expired = f"its lease expired at {at} ({(now_ms - self.lease_ms) / 1000:.0f}s ago)"
        if self.refused is not None:
            return (
                f"{expired} while {self.refused[0].lower()}{self.refused[1:]}: its worker "
                "cannot renew it, so it is shown as last recorded"
            )
        if self.renew_by is not None:
            by = from_ms(self.renew_by).strftime("%H:%M:%S UTC")
            return f"{expired}; it reads lost from {by} unless its worker renews it"
        return (
            f"judged lost when read: {expired} and its worker has not renewed it; "
            "no scheduler or worker has recorded this yet"
        )


def _judged(run: Run, verdict: Verdict, now_ms: int) -> Run:
    """A running run whose lease ran out, as it reads: lost since then, or still running
    with the reason saying why it is not judged yet (nothing written either way)."""
    if not verdict.lost:
        return dataclasses.replace(run, reason=verdict.reason(now_ms))
    end_ms = int(verdict.lease_ms) if verdict.lease_ms is not None else now_ms
    started = run.started_at
    duration = max((end_ms - to_ms(started)) / 1000, 0.0) if started else None
    return dataclasses.replace(
        run,
        status=RunStatus.LOST,
        reason=verdict.reason(now_ms),
        finished_at=from_ms(end_ms),
        duration_s=duration,
    )


def _judged_summary(row: RunSummary, verdict: Verdict, now_ms: int) -> RunSummary:
    if not verdict.lost:
        return row._replace(reason=verdict.reason(now_ms))
    end_ms = int(verdict.lease_ms) if verdict.lease_ms is not None else now_ms
    started = row.started_ms
    return row._replace(
        status=RunStatus.LOST,
        reason=verdict.reason(now_ms),
        finished_ms=end_ms,
        duration_s=max((end_ms - started) / 1000, 0.0) if started is not None else None,
    )


def _retry_args(retry: Retry | None) -> dict[str, Arg]:
    return {
        "retry_id": retry.run_id if retry else "",
        "retry_delay_ms": retry.delay_ms if retry else 0,
        "retry_attempt": retry.attempt if retry else 0,
    }


def _retry_after(run_id: str, fields: Mapping[str, str], status: RunStatus | str) -> Retry | None:
    """The retry a run ending with `status` earns; none when its stored policy cannot be read."""
    try:
        attempt = int(fields.get("attempt") or 1)
        policy = RunPolicy.from_fields(fields)
        return retry_plan(run_id, attempt, policy, RunStatus(status))
    except (ValueError, OverflowError):  # e.g. retry_backoff_s 'inf'
        return None


def _kill_cause(text: str) -> KillCause:
    """A stored kill request; one this version does not know is an operator's."""
    try:
        return KillCause(text)
    except ValueError:
        return KillCause.OPERATOR
