"""Clients for a Redis URL: redis://, rediss:// (TLS), unix:// and redis+sentinel://."""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from scheduler.urls import mask_url, split_url

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def connect(url: str, *, timeout_s: float, connect_timeout_s: float) -> redis.Redis:
    """A client for `url`: redis://, rediss:// (TLS options as query parameters, e.g.
    `?ssl_ca_certs=/etc/sched/ca.pem`), unix://, or redis+sentinel://host:port[,host:port]/name.
    sched's own query parameters (`urls.split_url`) are left out.
    """
    url, _ = split_url(url)
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=timeout_s,
            health_check_interval=30,
            retry=_no_retry(),
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
            connection_pool_class=FollowingPrimaryPool,
            db=int(path[1]) if len(path) > 1 else 0,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            retry=_no_retry(),
            **{k: v for k, v in auth.items() if v is not None},
        ),
    )


class FollowingPrimaryPool(SentinelConnectionPool):
    """A Sentinel pool that asks the sentinels which server is the primary once a second.

    redis-py asks only when it opens a connection. After a failover the old primary may go on
    accepting writes until a sentinel turns it into a replica (up to about 10 s later, at its
    next INFO round; never while it is cut off from them), and those writes are discarded when
    it resyncs from the new one: a client that kept its connections wrote into that void. Here
    a client follows the new primary within a second: a changed address closes the idle
    connections, and each connection in use is closed when it is handed back.
    """

    CHECK_EVERY_S = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._checked_at = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._checked_at >= self.CHECK_EVERY_S:
            self._checked_at = now
            try:
                self.get_master_address()  # type: ignore[no-untyped-call]
            except (redis.exceptions.RedisError, OSError):
                pass  # no sentinel answers: the connection says so itself, or still works
        return super().get_connection(*args, **kwargs)


def _no_retry() -> Retry:
    """No retries inside redis-py: a failed call is for its caller to repeat, who knows
    whether it may be (a BLMOVE whose reply was cut must not be sent again, or the id it moved
    is stranded in the inbox) and keeps heartbeats within their timeout."""
    return Retry(NoBackoff(), 0)


def advice(exc: BaseException) -> str:
    """What to change for a connection that failed."""
    if "certificate verify failed" in str(exc):
        return (
            "the server's TLS certificate is not trusted: give its CA in the URL, e.g. "
            "rediss://host:6380/0?ssl_ca_certs=/etc/sched/ca.pem"
        )
    return (
        "start it or set --redis-url / SCHED_REDIS_URL (without either, `sched run` starts its own)"
    )


def is_alive(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()
