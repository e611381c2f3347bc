"""Shared fixtures: a private redis-server per test session, flushed for every test.

Every test belongs to the tier named by its folder under tests/ (a pytest marker of that
name), so `pytest -m unit` runs the fast tests alone and `pytest -m "not faults"` skips the
slowest. A new folder is a new tier: name it in TIERS and in pyproject.toml's markers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.store import Store

HERE = Path(__file__).parent
TIERS = ("unit", "store", "process", "faults", "secure", "deploy", "cli", "bench", "web")

# The commands under test see a pipe, not a terminal, unless a test says otherwise: pytest-xdist
# sets COLUMNS/LINES in its workers (80x24), which would make every table fit 80 columns.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the tier of its folder; a test outside every tier is an error."""
    for item in items:
        try:
            tier = item.path.relative_to(HERE).parts[0]
        except ValueError:
            continue  # not under tests/ (a path given on the command line elsewhere)
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: tests/{tier} is not a test tier; "
                f"put the test under one of tests/{{{','.join(TIERS)}}}/ or add the tier "
                "to TIERS in tests/conftest.py and to markers in pyproject.toml"
            )
        item.add_marker(tier)


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
