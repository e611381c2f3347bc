"""Shared fixtures: a private redis-server per test session, flushed for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.store import Store


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server this test session starts itself, on a unix socket in its own folder."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The URL of the session's server, emptied before the test."""
    store = Store(redis_server.url)
    store.redis.flushall()
    store.close()
    return redis_server.url


@pytest.fixture()
def store(redis_url: str) -> Iterator[Store]:
    s = Store(redis_url)
    yield s
    s.close()
