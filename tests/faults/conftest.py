"""Fault injection: real sched processes, real signals, a redis-server of each test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.store import Store
from tests.helpers import stop_process

HERE = Path(__file__).parent
LEASE = "2s"
GRACE = "0.5s"


@dataclass
class Cluster:
    """A private Redis and the sched processes a scenario starts against it."""

    state: Path
    redis: EmbeddedRedis
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.redis.url

    def store(self) -> Store:
        return Store(self.url)

    def start(
        self, name: str, jobs: str, *args: str, url: str | None = None
    ) -> subprocess.Popen[str]:
        """Start `sched <args>` on the jobs folder `jobs` (a folder next to this file), against
        the cluster's Redis or `url`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
        env.update(
            SCHED_REDIS_URL=url or self.url,
            SCHED_JOBS=str(HERE / jobs),
            SCHED_LEASE=LEASE,
            SCHED_GRACE=GRACE,
        )
        log = self.state / f"{name}-{uuid.uuid4().hex[:4]}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def log(self, name: str) -> str:
        return self.logs[name].read_text()

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.procs[name].pid, sig)

    def stop(self, name: str, timeout: float = 20) -> int:
        return stop_process(self.procs[name], timeout)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    state = tmp_path / "state"
    redis = EmbeddedRedis(state, appendonly=True).start()
    c = Cluster(state, redis)
    try:
        yield c
    finally:
        c.stop_all()
        c.redis.stop()  # the scenario may have replaced the server it started with
