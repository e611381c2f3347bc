"""split_url: sched's own Redis URL parameters are read, checked and taken out."""

from __future__ import annotations

import pytest

from scheduler.cli_checks import redis_url_problem
from scheduler.urls import Durability, split_url


def test_a_url_without_our_parameters_is_left_as_it_is() -> None:
    url = "rediss://u:pw@host:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert split_url(url) == (url, Durability())


def test_wait_parameters_are_read_and_taken_out() -> None:
    url = "redis://host:6379/0?wait_replicas=1&ssl_ca_certs=/x&wait_timeout_ms=250"
    rest, durability = split_url(url)
    assert rest == "redis://host:6379/0?ssl_ca_certs=%2Fx"
    assert durability == Durability(replicas=1, timeout_ms=250)


def test_sentinel_urls_keep_their_hosts() -> None:
    rest, durability = split_url("redis+sentinel://a:26379,b:26379/main?wait_replicas=2")
    assert rest == "redis+sentinel://a:26379,b:26379/main"
    assert durability.replicas == 2 and durability.timeout_ms == 1000


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("wait_replicas=one", "wait_replicas='one': expected a whole number from 0 to 16"),
        ("wait_replicas=-1", "wait_replicas='-1': expected a whole number from 0 to 16"),
        ("wait_replicas=17", "wait_replicas='17': expected a whole number from 0 to 16"),
        ("wait_timeout_ms=0", "wait_timeout_ms='0': expected a whole number from 1 to 60000"),
        ("wait_timeout_ms=", "wait_timeout_ms='': expected a whole number from 1 to 60000"),
    ],
)
def test_a_bad_value_is_named_with_what_it_expects(query: str, message: str) -> None:
    url = f"redis://:secret@host/0?{query}"
    with pytest.raises(ValueError, match=message):
        split_url(url)
    problem = redis_url_problem(url)
    assert problem is not None and message in problem
    assert "secret" not in problem and problem.startswith("--redis-url: redis://:***@host/0")


def test_the_installed_redis_py_carries_cluster_urls() -> None:
    """The cluster client builds on redis-py 8's cluster pipeline; another major is refused
    with the pip command that fixes it (tried by hand with redis-py 5.0.8)."""
    from importlib.metadata import version

    from scheduler.urls import CLUSTER_CLIENT_MAJOR, cluster_client_problem

    assert version("redis").startswith(f"{CLUSTER_CLIENT_MAJOR}.")
    assert cluster_client_problem() is None
    assert redis_url_problem("redis+cluster://127.0.0.1:7000") is None
