"""Issue 11 item 4: a real `sched scheduler` whose wall clock jumps, under libfaketime.

libfaketime (Debian's `faketime` package; scripts/test installs it) re-reads the offset in
FAKETIME_TIMESTAMP_FILE on every clock read (FAKETIME_NO_CACHE=1), so the test moves the
scheduler's wall clock while it runs; the monotonic clock is left alone
(FAKETIME_DONT_FAKE_MONOTONIC=1), as an NTP step or `date -s` leaves it. Run records are
stamped by Redis, so they show what real time each fire was made at.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import Run, RunStatus, Trigger
from scheduler.store import Store
from tests.helpers import wait_for

HERE = Path(__file__).parent
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SECOND = timedelta(seconds=1)
# Python 3.11+ sleeps with clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which libfaketime
# 0.9.10 breaks when it leaves the monotonic clock alone (EINVAL; wolfcw/libfaketime#426).
# The scheduler under test sleeps through select() instead; it reads every clock as it would.
LAUNCH = (
    "import select, time\n"
    "time.sleep = lambda s: select.select([], [], [], s) and None\n"
    "import runpy\n"
    "runpy.run_module('scheduler', run_name='__main__')\n"
)


def faked_env(offset_file: Path) -> dict[str, str]:
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} is missing: install Debian's faketime (scripts/test does)")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@dataclass
class Faked:
    """A private Redis and one `sched scheduler` whose wall clock the test moves."""

    offset_file: Path
    redis: EmbeddedRedis
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def set_offset(self, offset: str) -> None:
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(offset + "\n")
        tmp.replace(self.offset_file)  # never a half-written offset

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
        env.update(faked_env(self.offset_file))
        env.update(SCHED_REDIS_URL=self.redis.url, SCHED_JOBS=str(HERE / "jobs_clock"))
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "scheduler", "--lease", "2s"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture()
def faked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faked]:
    offset_file = tmp_path / "offset"
    offset_file.write_text("+0\n")
    redis_follows = getattr(monkeypatch, "redis_follows", False)
    with monkeypatch.context() as env:
        if redis_follows:  # Redis on the same (faked) host clock
            for name, value in faked_env(offset_file).items():
                env.setenv(name, value)
        redis = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    f = Faked(offset_file, redis, tmp_path / "scheduler.log")
    try:
        yield f
    finally:
        if f.proc is not None:
            f.stop()
        redis.stop()


def runs_of(store: Store, job: str) -> list[Run]:
    return sorted(store.history(job=job, limit=10_000), key=lambda r: r.scheduled_for)


def count(store: Store, job: str) -> int:
    return len(store.history(job=job, limit=10_000))


def test_a_forward_jump_of_the_scheduler_clock_starts_nothing_early(faked: Faked) -> None:
    store = Store(faked.redis.url)
    faked.start()
    wait_for(lambda: count(store, "clock.tick") >= 3, 30, "3 fires before the jump")
    faked.set_offset("+2h")  # the scheduler's clock only: Redis's is the real one
    wait_for(lambda: "the system clock jumped forward 2h" in faked.log(), 20, "the jump seen")
    n = count(store, "clock.tick")
    wait_for(lambda: count(store, "clock.tick") >= n + 3, 30, "3 fires after the jump")
    faked.set_offset("+0")  # put right again
    wait_for(lambda: "fires follow the system clock again" in faked.log(), 20, "put right")
    n = count(store, "clock.tick")
    wait_for(lambda: count(store, "clock.tick") >= n + 3, 30, "3 fires after it was put right")
    assert faked.stop() == 0
    log = faked.log()
    ticks = runs_of(store, "clock.tick")
    instants = [r.scheduled_for for r in ticks]
    assert len(instants) == len(set(instants)), "a fire was made twice"
    assert {b - a for a, b in zip(instants, instants[1:], strict=False)} == {SECOND}
    for run in ticks + runs_of(store, "clock.hourly"):
        assert run.status is not RunStatus.MISSED, f"{run.id}: {run.reason}"
        assert run.enqueued_at is not None
        # Stamped by Redis: a fire made before its instant in real time is an early start.
        assert run.enqueued_at >= run.scheduled_for, f"{run.id} was enqueued early"
        assert run.enqueued_at - run.scheduled_for < 5 * SECOND, f"{run.id} was enqueued late"
    assert log.count("the system clock jumped forward 2h") == 1
    assert "but Redis's clock did not: fires follow the corrected time, 2h behind" in log
    assert log.count("the system clock jumped back 2h") == 1
    assert "no scheduler was running" not in log


@pytest.mark.parametrize("redis_follows", [True])
def test_a_jump_redis_saw_too_is_caught_up_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, redis_follows: bool, request: pytest.FixtureRequest
) -> None:
    monkeypatch.redis_follows = redis_follows  # type: ignore[attr-defined]
    faked: Faked = request.getfixturevalue("faked")
    store = Store(faked.redis.url)
    faked.start()
    wait_for(lambda: count(store, "clock.tick") >= 3, 30, "3 fires before the jump")
    faked.set_offset("+2h")  # the host's clock: the scheduler's and Redis's
    wait_for(lambda: "and Redis's clock with it" in faked.log(), 20, "the jump told apart")
    wait_for(lambda: count(store, "clock.tick") >= 7200, 30, "the jump caught up")
    assert faked.stop() == 0
    ticks = runs_of(store, "clock.tick")
    missed = [r for r in ticks if r.status is RunStatus.MISSED]
    caught = [r for r in ticks if r.trigger is Trigger.CATCHUP]
    assert len(caught) == 1 and len(missed) >= 7000
    assert all(m.scheduled_for < caught[0].scheduled_for for m in missed)
    reasons = {r.reason for r in missed}
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith("the clock jumped forward 2h at ") and "catchup=latest" in reason
    hourly = [r for r in runs_of(store, "clock.hourly") if r.trigger is Trigger.CATCHUP]
    assert hourly, "catchup=all runs the hour the jump passed"
    instants = [r.scheduled_for for r in ticks]
    assert len(instants) == len(set(instants))
    assert "no scheduler was running" not in faked.log()


def test_a_scheduler_started_on_a_clock_two_hours_ahead_follows_redis(faked: Faked) -> None:
    store = Store(faked.redis.url)
    faked.start()
    wait_for(lambda: count(store, "clock.tick") >= 2, 30, "2 fires")
    assert faked.stop() == 0
    faked.set_offset("+2h")  # the host's clock was set wrong while no scheduler ran
    faked.start()
    n = count(store, "clock.tick")
    wait_for(lambda: count(store, "clock.tick") >= n + 3, 30, "3 fires after the restart")
    assert faked.stop() == 0
    assert "the system clock is 2h ahead of Redis's clock: fires follow Redis's clock" in (
        faked.log()
    )
    for run in runs_of(store, "clock.tick") + runs_of(store, "clock.hourly"):
        assert run.enqueued_at is not None and run.enqueued_at >= run.scheduled_for, run.id
        assert "no scheduler was running" not in (run.reason or ""), run.id
