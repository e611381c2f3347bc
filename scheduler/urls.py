"""Redis URLs as people may see them: passwords hidden. No I/O, no redis import.

Job files import `scheduler.api`, which needs this too; keeping it here keeps redis out of
every job file's imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

# `//user:password@` (user may be empty), up to the last `@` before the path, so a password
# with an unencoded `@` is hidden whole; works for several comma-separated hosts too.
_PASSWORD = re.compile(r"(//[^/@:]*):[^/]*@")
_QUERY_SECRET = re.compile(r"([?&][a-z_]*password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its passwords (userinfo and `...password=` query values) as `***`."""
    return _QUERY_SECRET.sub(r"\1***", _PASSWORD.sub(r"\1:***@", url))


@dataclass(frozen=True)
class Durability:
    """How many replicas must hold a fire or a report before its write counts as done.

    Set in the Redis URL, so that every process of a deployment reads the same:
    `?wait_replicas=1&wait_timeout_ms=500`. 0 replicas (the default) sends no WAIT.
    """

    replicas: int = 0
    timeout_ms: int = 1000


# sched's own query parameters, with their bounds: taken out before redis-py reads the URL.
DURABILITY_PARAMS = {"wait_replicas": (0, 16), "wait_timeout_ms": (1, 60_000)}


def split_url(url: str) -> tuple[str, Durability]:
    """`url` without sched's own query parameters, and the durability they ask for.

    ValueError names the parameter and what it expects.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in DURABILITY_PARAMS}
    if not ours:
        return url, Durability()
    values: dict[str, int] = {}
    for name, text in ours.items():
        low, high = DURABILITY_PARAMS[name]
        number = int(text) if text.isdigit() else low - 1
        if not low <= number <= high:
            raise ValueError(
                f"{mask_url(url)}: {name}={text!r}: expected a whole number from {low} to {high}"
            )
        values[name] = number
    rest = urlencode([(k, v) for k, v in query if k not in DURABILITY_PARAMS])
    durability = Durability(
        replicas=values.get("wait_replicas", 0),
        timeout_ms=values.get("wait_timeout_ms", Durability.timeout_ms),
    )
    return urlunsplit(parts._replace(query=rest)), durability


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# The cluster client builds on redis-py's cluster pipeline as redis-py 8 has it.
CLUSTER_CLIENT_MAJOR = 8


def cluster_client_problem() -> str | None:
    """Why the installed redis-py cannot carry a cluster URL, or None (redis is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("redis")
    except PackageNotFoundError:
        return "redis-py is not installed"
    major = installed.split(".", 1)[0]
    if major.isdigit() and int(major) == CLUSTER_CLIENT_MAJOR:
        return None
    return (
        f"redis+cluster:// needs redis-py {CLUSTER_CLIENT_MAJOR}.x, and {installed} is "
        f"installed: pip install 'redis>={CLUSTER_CLIENT_MAJOR},<{CLUSTER_CLIENT_MAJOR + 1}'"
    )


@dataclass(frozen=True)
class ClusterAddress:
    """What a cluster URL names: the nodes to learn the cluster's layout from, and how to log
    in. `redis+cluster://[user:password@]host:port[,host:port...][/0][?ssl_...]`; the TLS form
    `rediss+cluster://` takes the `ssl_*` query parameters of `rediss://`."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ssl: tuple[tuple[str, str], ...] = ()


def cluster_address(url: str) -> ClusterAddress:
    """The address a cluster URL names (sched's own query parameters already taken out).

    ValueError names what is wrong, with the password hidden.
    """
    parts = urlsplit(url)
    shown = mask_url(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"{shown}: not a cluster URL; expected redis+cluster://host:port,...")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or host.startswith("[") and not host.endswith("]"):
            host, port = item, "6379"  # no port, or a bare [IPv6] address
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"{shown}: node {item!r} is not host:port; a cluster URL names one or more "
                "nodes, e.g. redis+cluster://redis-1:6379,redis-2:6379"
            )
        nodes.append((host, int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(
            f"{shown}: database {parts.path.strip('/')!r}: a Redis Cluster has only database 0; "
            "give /0 or no path (use --namespace to keep deployments apart)"
        )
    tls = parts.scheme == "rediss+cluster"
    ssl = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if not (tls and name.startswith("ssl_")):
            allowed = "ssl_* (with rediss+cluster://), " if not tls else "ssl_*, "
            raise ValueError(
                f"{shown}: query parameter {name!r} is not one a cluster URL takes; it takes "
                f"{allowed}wait_replicas and wait_timeout_ms"
            )
        ssl.append((name, value))
    username, password = None, None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return ClusterAddress(tuple(nodes), username, password, tls, tuple(ssl))
