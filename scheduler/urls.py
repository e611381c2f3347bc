"""Redis URLs as people may see them: passwords hidden. No I/O, no redis import.

Job files import `scheduler.api`, which needs this too; keeping it here keeps redis out of
every job file's imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
