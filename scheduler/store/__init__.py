"""The only package that talks to Redis, behind a typed port (`Store`, see port.py).

`Store(url)` opens the Redis implementation (redis_store.py): key names (keys.py), clients
(connect.py), one Lua script per transition (lua/*.lua, loaded by scripts.py), records to and
from stored fields (codec.py), and redis-py's errors as the package's own (faults.py).
"""

from scheduler.store.connect import is_alive
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
from scheduler.store.redis_store import ENQUEUE_BATCH, RedisStore

__all__ = [
    "DEFAULT_NAMESPACE",
    "ENQUEUE_BATCH",
    "Claimed",
    "Enqueued",
    "Fire",
    "FireSettings",
    "Heartbeat",
    "Keys",
    "RedisStore",
    "Retention",
    "RunSummary",
    "Store",
    "fire_settings",
    "is_alive",
]
