"""Every redis-py failure leaves the store as StoreUnavailable (retry) or StoreCorrupt (bad data).

Each test gets a redis-server of its own, since they change its configuration or role.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from scheduler.embedded import EmbeddedRedis
from scheduler.errors import StoreCorrupt, StoreUnavailable
from scheduler.model import RunStatus, run_id_for
from scheduler.store import RedisStore, Store
from scheduler.store.faults import translate

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture()
def own(tmp_path: Path) -> Iterator[Store]:
    server = EmbeddedRedis(tmp_path / "r", appendonly=False).start()
    store = Store(server.url, socket_timeout_s=2.0)
    yield store
    store.close()
    server.stop()


def enqueue(store: Store, job: str = "j") -> str:
    run_id = run_id_for(job, T0)
    store.enqueue(run_id=run_id, job=job, scheduled_for=T0, queue="default")
    return run_id


def test_out_of_memory_is_an_outage(own: Store) -> None:
    own.redis.config_set("maxmemory", 1)
    with pytest.raises(StoreUnavailable, match="out of memory"):
        enqueue(own)
    with pytest.raises(StoreUnavailable, match="out of memory"):
        own.heartbeat("w", 5.0)


def test_a_read_only_replica_is_an_outage(own: Store) -> None:
    own.redis.replicaof("127.0.0.1", 1)  # nothing listens there: it stays a replica
    with pytest.raises(StoreUnavailable, match="read-only replica"):
        enqueue(own)
    own.redis.replicaof("NO", "ONE")
    assert enqueue(own)


def test_a_server_gone_is_an_outage(tmp_path: Path) -> None:
    store = Store(f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(StoreUnavailable, match="connection to Redis lost"):
        store.running_count()
    with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
        store.ping()
    with pytest.raises(StoreUnavailable):
        list(store.iter_history())
    store.close()


def test_flushed_scripts_are_loaded_again(own: Store) -> None:
    run_id = enqueue(own)
    own.redis.script_flush()
    assert own.wait_for_run("w", ["default"], 0.1) == run_id
    own.redis.script_flush()
    claimed = own.claim("w", run_id, 10)
    assert claimed is not None and claimed.run.status is RunStatus.RUNNING
    own.redis.script_flush()
    assert own.finish_and_take("w", run_id, "j", RunStatus.COMPLETED, 0.1, {}, None, "default")[0]


def test_a_record_that_cannot_be_read_is_corrupt_and_named(own: Store) -> None:
    run_id = enqueue(own)
    own.redis.hset(own.keys.run(run_id), "attempt", "abc")
    with pytest.raises(StoreCorrupt, match=r"j@.*: field attempt is 'abc'"):
        own.get_run(run_id)
    own.redis.hset(own.keys.run(run_id), mapping={"attempt": "1", "scheduled_for": "x"})
    with pytest.raises(StoreCorrupt, match="field scheduled_for is 'x'"):
        own.get_run(run_id)
    assert own.history() == []  # left out of lists (and logged once), not a crash


def test_a_key_of_the_wrong_type_is_corrupt(own: Store) -> None:
    own.redis.set(own.keys.paused, "not a set")
    with pytest.raises(StoreCorrupt, match="WRONGTYPE"):
        own.paused_jobs()


def test_a_tryagain_reply_is_an_outage(own: Store) -> None:
    """TRYAGAIN is a Redis Cluster reply (a multi-key command during a slot migration) that a
    single server never sends by itself; a script makes the real server send it here."""
    assert isinstance(own, RedisStore)
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        own.redis.eval(
            "return redis.error_reply('TRYAGAIN Multiple keys request during rehashing of slot')",
            0,
        )
    problem = translate(caught.value)
    assert isinstance(problem, StoreUnavailable) and problem.what == "Redis asks to try again"
