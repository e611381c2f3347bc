"""Clients for a Redis URL: redis://, rediss:// (TLS), unix://, redis+sentinel:// and
redis+cluster:// (rediss+cluster:// with TLS)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn, TypeAlias, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions
from redis._parsers import Encoder
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.crc import key_slot
from redis.exceptions import ConnectionError, RedisError
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from scheduler.urls import (
    CLUSTER_SCHEMES,
    cluster_address,
    cluster_client_problem,
    mask_url,
    split_url,
)

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def connect(url: str, *, timeout_s: float, connect_timeout_s: float, home: str = "") -> Client:
    """A client for `url`: redis://, rediss:// (TLS options as query parameters, e.g.
    `?ssl_ca_certs=/etc/sched/ca.pem`), unix://, redis+sentinel://host:port[,host:port]/name,
    or redis+cluster://host:port[,host:port] (`connect_cluster`; `home` is a key of the
    namespace). sched's own query parameters (`urls.split_url`) are left out.
    """
    url, _ = split_url(url)
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return connect_cluster(
            url, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, home=home
        )
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


def connect_cluster(
    url: str, *, timeout_s: float, connect_timeout_s: float, home: str = ""
) -> ClusterClient:
    """A client for a Redis Cluster URL (`urls.cluster_address`), with the same timeouts and
    no-retry policy as the others. `home` is a key of the namespace: commands without a key
    (TIME, PING, CONFIG GET, WAIT, SCRIPT LOAD) go to the primary of its slot.

    ValueError names what is wrong with the URL.
    """
    url, _ = split_url(url)
    address = cluster_address(url)
    problem = cluster_client_problem()
    if problem:
        raise ValueError(f"{mask_url(url)}: {problem}")
    options: dict[str, Any] = {
        "startup_nodes": [
            ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in address.nodes
        ],
        "decode_responses": True,
        "socket_connect_timeout": connect_timeout_s,
        "socket_timeout": timeout_s,
        "health_check_interval": 30,
        # Only the namespace's slot matters: a cluster missing other slots still serves it.
        "require_full_coverage": False,
        "retry": _no_retry(),
        # Each MOVED patches the slot it names; the whole layout is read again after 5.
        "reinitialize_steps": 5,
    }
    if address.username:
        options["username"] = address.username
    if address.password is not None:
        options["password"] = address.password
    if address.tls:
        options.update(ssl=True, **dict(address.ssl))
    return ClusterClient(home, mask_url(url), **options)


class ClusterClient(RedisCluster):
    """redis-py's cluster client, for a namespace that lives on one slot.

    - It follows MOVED and ASK (the command did not run) and TRYAGAIN (a multi-key command
      during a slot's migration) itself, a few times; a lost connection or a timeout is the
      caller's to repeat, as with the other clients (see `_no_retry`).
    - Commands without a key go to the primary of the namespace's slot (`home`): TIME reads
      the clock its scripts read, WAIT counts the replicas of the node that took the write.
    - A script is loaded where it is missing, in pipelines too (NOSCRIPT after a failover
      or a move to a node that never ran it).
    - It learns the cluster's layout at its first command rather than when it is made, so
      that making a store never fails: while no node answers, each call fails as an outage
      (ConnectionError) and the next one tries again, as with the other URLs.
    """

    def __init__(self, home: str, shown: str, **options: Any) -> None:
        self._options = options
        self._built = False
        self._in_build = False
        self._building = threading.RLock()
        self.shown = shown
        self.home_slot = key_slot(home.encode()) if home else None
        self.encoder = Encoder("utf-8", "strict", True)  # type: ignore[no-untyped-call]

    def _build(self) -> None:
        """Learn the layout (CLUSTER SLOTS), once; ConnectionError while no node answers."""
        if self._built:
            return
        with self._building:
            if self._built or self._in_build:
                return  # built meanwhile, or the build's own commands (COMMAND)
            self._in_build = True
            try:
                super().__init__(**self._options)
                self._built = True
            except (redis.exceptions.RedisClusterException, RedisError) as exc:
                self._fail_build(exc)
            finally:
                self._in_build = False

    def _fail_build(self, exc: Exception) -> NoReturn:
        """Why no node told the layout: the last node's own error when it has one."""
        cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        if "Cluster mode is not enabled" in str(cause):
            raise NotACluster(
                f"{self.shown} names a Redis that is not in cluster mode; use "
                "redis://host:port/0 for a single server"
            ) from exc
        refused = isinstance(cause, redis.exceptions.AuthenticationError)
        if refused or isinstance(cause, RedisError) and not isinstance(cause, ConnectionError):
            raise cause  # e.g. refused credentials: the same error as from a single server
        raise ConnectionError(f"no node of the cluster answers ({cause})") from exc

    def get_default_node(self) -> ClusterNode:
        if self.home_slot is None:
            return super().get_default_node()  # type: ignore[no-untyped-call,no-any-return]
        return self.nodes_manager.get_node_from_slot(self.home_slot)

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self._build()
        with self.outage_as_redis_error():
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    @contextlib.contextmanager
    def outage_as_redis_error(self) -> Iterator[None]:
        """The client's own exceptions for a cluster that has not settled (no node serves
        the slot, no node answers, nodes disagree) as ConnectionError, like any outage; the
        layout is read again for the caller's next try."""
        try:
            yield
        except redis.exceptions.RedisClusterException as exc:
            if not isinstance(exc, redis.exceptions.SlotNotCoveredError) and not any(
                words in str(exc) for words in UNSETTLED
            ):
                raise  # a bug: keys of several slots, a command with no node to go to
            with contextlib.suppress(redis.exceptions.RedisClusterException, RedisError):
                self.nodes_manager.initialize()
            raise redis.exceptions.ConnectionError(
                f"the Redis cluster at {self.shown} has not settled: {exc}"
            ) from exc

    def register_script(self, script: Any) -> Script:
        return HomeScript(self, script)

    def script_load(self, script: Any) -> str:
        """Load it on every primary that answers (a slot may move to any of them); it must
        reach the namespace's own."""
        self._build()
        home = self.get_default_node()
        sha = ""
        primaries = self.get_primaries()  # type: ignore[no-untyped-call]
        for node in [home, *(n for n in primaries if n != home)]:
            try:
                sha = str(self.execute_command("SCRIPT LOAD", script, target_nodes=node))
            except (redis.exceptions.RedisError, OSError):
                if node == home:
                    raise
        return sha

    def pipeline(self, transaction: Any = True, shard_hint: Any = None) -> HomePipeline:
        """A pipeline; MULTI/EXEC by default as with redis.Redis (one slot: allowed)."""
        self._build()
        return HomePipeline(self, transaction=bool(transaction))


class HomePipeline(ClusterPipeline):
    """A ClusterClient's pipeline: keyless commands to the namespace's primary; a command
    that met MOVED, ASK or TRYAGAIN is sent again (see `_send_again`), one that met a lost
    connection or a timeout is not (it may have run: the caller decides, as elsewhere)."""

    def __init__(self, client: ClusterClient, *, transaction: bool) -> None:
        super().__init__(
            nodes_manager=client.nodes_manager,
            commands_parser=client.commands_parser,
            startup_nodes=list(client.nodes_manager.startup_nodes.values()),
            result_callbacks=client.result_callbacks,
            cluster_response_callbacks=client.cluster_response_callbacks,
            reinitialize_steps=client.reinitialize_steps,
            retry=client.retry,
            lock=client._lock,
            transaction=transaction,
            event_dispatcher=client._event_dispatcher,
        )
        self.client = client
        self.in_transaction = transaction
        self.scripts: set[HomeScript] = set()

    def get_default_node(self) -> ClusterNode:
        return self.client.get_default_node()

    # redis-py blocks these in cluster pipelines, not knowing which node would take them;
    # here every key is on the namespace's slot and keyless commands go to its primary.
    evalsha = RedisCluster.evalsha
    time = RedisCluster.time

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            for script in self.scripts:
                script.ensure_loaded()
            if self.in_transaction:
                with self.client.outage_as_redis_error():
                    return super().execute(raise_on_error)
            stack = self._execution_strategy.command_queue
            with self.client.outage_as_redis_error():
                replies = self.send_cluster_commands(  # type: ignore[no-untyped-call]
                    stack, raise_on_error=False, allow_redirections=False
                )
            self._send_again(stack, replies)
            if raise_on_error:
                for i, reply in enumerate(replies):
                    if isinstance(reply, Exception):
                        self.annotate_exception(reply, i + 1, stack[i].args)  # type: ignore[no-untyped-call]
                        raise reply
            return cast(list[Any], replies)
        finally:
            self.scripts.clear()
            self.reset()  # type: ignore[no-untyped-call]

    def _send_again(self, stack: list[Any], replies: list[Any]) -> None:
        """Send each command that met MOVED, ASK or TRYAGAIN again, on its own, where the
        cluster now points. Not when the pipeline holds a WAIT: WAIT counts the replicas of
        the writes made on its own connection, and a command sent again goes elsewhere. Those
        replies stay errors (an outage: the caller sends the whole write again), with the
        slot's new owner learnt from MOVED for that next try."""
        waits = any(str(command.args[0]).upper() == "WAIT" for command in stack)
        for i, (command, reply) in enumerate(zip(stack, replies, strict=True)):
            if isinstance(reply, redis.exceptions.MovedError) and waits:
                self.nodes_manager.move_slot(reply)
            if not isinstance(reply, NOT_RUN) or waits:
                continue
            try:
                replies[i] = self.client.execute_command(*command.args, **command.options)
            except redis.exceptions.RedisError as exc:
                replies[i] = exc


# What the cluster client's exceptions say when the cluster has not settled.
UNSETTLED = ("cannot be connected", "could not agree", "not covered")
# Replies after which the command did not run: sending it again is safe.
NOT_RUN = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)


class HomeScript(Script):
    """A script of a ClusterClient: in a pipeline, loaded before the pipeline runs."""

    registered_client: ClusterClient

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if isinstance(client, HomePipeline):
            client.scripts.add(self)
        return super().__call__(keys=keys, args=args, client=client)

    def ensure_loaded(self) -> None:
        """SCRIPT EXISTS on the namespace's primary; loaded when missing."""
        cluster = self.registered_client
        home = cluster.get_default_node()
        if not cluster.execute_command("SCRIPT EXISTS", self.sha, target_nodes=home)[0]:
            self.sha = cluster.script_load(self.script)


class NotACluster(redis.exceptions.ResponseError):
    """A cluster URL that names a server not in cluster mode: a mistake to fix, not an
    outage to wait out."""


# A client of any URL, and a pipeline of one: RedisStore uses only what both offer.
Client: TypeAlias = redis.Redis | ClusterClient
Pipe: TypeAlias = redis.client.Pipeline | ClusterPipeline


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
