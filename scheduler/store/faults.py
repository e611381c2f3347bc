"""redis-py's failures as the package's own: StoreUnavailable (retry) or StoreCorrupt.

dramatiq's way: the store raises its own error `from` the client's, so no other module knows
which client library is underneath.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import redis
import redis.exceptions

from scheduler.errors import StoreCorrupt, StoreError, StoreUnavailable
from scheduler.store.connect import UNSETTLED, NotACluster

# Server replies (their first word) after which the same call may succeed later.
RETRYABLE_REPLIES = {
    "OOM": "Redis is out of memory (maxmemory reached, noeviction)",
    "READONLY": "Redis is a read-only replica (failover or demotion)",
    "LOADING": "Redis is loading its data",
    "BUSY": "Redis is busy running a script",
    "MASTERDOWN": "the replica lost its primary",
    "TRYAGAIN": "Redis asks to try again",
    "CLUSTERDOWN": "the Redis cluster is down",
    "MOVED": "the Redis cluster moved the namespace's slot",
    "ASK": "the Redis cluster is moving the namespace's slot",
    "UNBLOCKED": "Redis ended a blocking call (the server changed role)",
    "NOREPLICAS": "Redis lacks the replicas it requires for writes",
    "NOAUTH": "Redis asks for authentication",
    "WRONGPASS": "Redis refused the credentials",
    "NOPERM": "Redis refused this user access (ACL)",
    "MISCONF": "Redis cannot persist its data (MISCONF)",
}
# redis-py's classes for some of those replies, whose messages no longer carry the code.
_REPLY_CLASSES = (
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.MovedError, "MOVED"),
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.AuthenticationError, "WRONGPASS"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
)
# Replies that mean a record is not what the scripts expect.
CORRUPT_REPLIES = ("WRONGTYPE",)
# The cluster client's own failures (not server replies) that pass once the cluster has
# settled: no node answers, the nodes disagree on the layout, no node serves the slot, too
# many redirections in a row. Anything else it raises is a bug to let out.
# (ClusterClient turns most into ConnectionError; these are for any it lets through.)
_OUTAGE_CLASSES = (
    *((kind, RETRYABLE_REPLIES[code]) for kind, code in _REPLY_CLASSES),
    (redis.exceptions.SlotNotCoveredError, "no node of the Redis cluster serves the slot"),
    (redis.exceptions.ClusterError, "the Redis cluster kept redirecting the call"),
    (redis.exceptions.RedisClusterException, "the Redis cluster cannot be reached"),
)


def translate(exc: BaseException) -> StoreError:
    """The package's own error for a redis-py (or socket) failure.

    Anything that is not plainly bad data is an outage: retrying is safe, crashing is not.
    A script error names the reply the script got (`user_script:12: OOM ...`), so the first
    known code anywhere in the message decides.
    """
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, NotACluster):
        return StoreError(str(exc))
    if isinstance(exc, redis.exceptions.TimeoutError):
        return StoreUnavailable("Redis did not answer in time", text)
    for kind, what in _OUTAGE_CLASSES:
        if isinstance(exc, kind):
            return StoreUnavailable(what, text)
    if isinstance(exc, redis.exceptions.ConnectionError | OSError):
        return StoreUnavailable("connection to Redis lost", text)
    if isinstance(exc, redis.exceptions.ResponseError):
        words = [word.lstrip("-") for word in text.replace(":", " ").split()]
        for word in words:
            if word in RETRYABLE_REPLIES:
                return StoreUnavailable(RETRYABLE_REPLIES[word], text)
        if any(word in CORRUPT_REPLIES for word in words) or "user_script" in text:
            return StoreCorrupt(f"Redis refused a transition: {text}")
        return StoreUnavailable("Redis refused a command", text)
    if isinstance(exc, redis.exceptions.DataError):
        return StoreCorrupt(f"a value cannot be sent to Redis: {text}")
    return StoreUnavailable("Redis failed", text)


P = ParamSpec("P")
R = TypeVar("R")


def _as_store_error(exc: Exception) -> StoreError | None:
    """The package's error for what a store method raised (None: it already is one, or it is
    a bug to let out as it is)."""
    if isinstance(exc, StoreError):
        return None
    if isinstance(exc, redis.exceptions.RedisError | OSError):
        return translate(exc)
    if isinstance(exc, redis.exceptions.RedisClusterException) and (
        isinstance(exc, redis.exceptions.SlotNotCoveredError)
        or any(words in str(exc) for words in UNSETTLED)
    ):
        return translate(exc)
    if isinstance(exc, UnicodeDecodeError):  # a stored value that is not UTF-8 text
        return StoreCorrupt(f"Redis holds a value that is not text: {exc}")
    return None


def guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Let only StoreUnavailable / StoreCorrupt (and UnknownRun) out of a store method."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            error = _as_store_error(exc)
            if error is None:
                raise
            raise error from exc

    return wrapper


def guarded_iter(method: Callable[P, Iterator[R]]) -> Callable[P, Iterator[R]]:
    """guarded() for a generator: errors raised while it is consumed are translated too."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        try:
            yield from method(*args, **kwargs)
        except Exception as exc:
            error = _as_store_error(exc)
            if error is None:
                raise
            raise error from exc

    return wrapper
