"""Clients for a Redis URL: redis://, rediss:// (TLS), unix:// and redis+sentinel://."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from scheduler.urls import mask_url

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
            db=int(path[1]) if len(path) > 1 else 0,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            retry=_no_retry(),
            **{k: v for k, v in auth.items() if v is not None},
        ),
    )


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
