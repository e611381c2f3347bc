"""Jumps of the system clock against a real Redis, on injected clocks.

The loop reads three clocks: the system clock (`clock`, injected here), the monotonic clock
(`monotonic`, injected where a test moves time itself) and a reference that tells a jump from
a correction: Redis's TIME in production, given explicitly here. tests/faults/test_clock_jump.py
does the same to a real `sched scheduler` under libfaketime.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.beat import Beat, BeatSettings
from scheduler.errors import StoreUnavailable
from scheduler.model import Catchup, JobSpec, RunStatus, Trigger, from_ms, run_id_for
from scheduler.store import Store
from tests.helpers import wait_for

HOUR = timedelta(hours=1)


def spec(name: str, **kw: object) -> JobSpec:
    fields: dict[str, object] = {"timeout_s": 5.0, "overlap": "allow"}
    fields.update(kw)
    return JobSpec(name=name, path="jobs/x.py", line=1, **fields)  # type: ignore[arg-type]


def jump_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "the system clock" in r.getMessage()]


class FakeHost:
    """A system clock and a monotonic clock that the test moves, and whether Redis's clock
    (the reference) follows the system clock (Redis on this host) or true time."""

    def __init__(self, at: datetime, redis_follows: bool) -> None:
        self.true = at
        self.wall = at
        self.mono = 1000.0
        self.redis_follows = redis_follows
        self.redis_down = False

    def clock(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def reference(self) -> datetime:
        if self.redis_down:
            raise StoreUnavailable("connection refused", "the test stopped Redis")
        return self.wall if self.redis_follows else self.true

    def tick(self, seconds: float = 1.0) -> None:
        self.true += timedelta(seconds=seconds)
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def beat(self, store: Store, specs: dict[str, JobSpec]) -> Beat:
        settings = BeatSettings(max_sleep_s=0.0001)
        return Beat(
            store,
            specs,
            settings,
            clock=self.clock,
            monotonic=self.monotonic,
            reference=self.reference,
        )


def turn(beat: Beat) -> None:
    """One turn of the loop, as Beat.run makes it."""
    beat.check_clock()
    beat.step()
    beat.step()


T0 = datetime(2026, 11, 27, 10, 0, 0, 500_000, tzinfo=UTC)


def test_a_forward_jump_redis_did_not_make_starts_nothing_early(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost(T0, redis_follows=False)
    jobs = {
        "tick": spec("tick", every_s=1.0),
        "noon": spec("noon", cron="0 12 * * *", catchup=Catchup.ALL),
    }
    beat = host.beat(store, jobs)
    beat.start()
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    for _ in range(3):
        host.tick()
        turn(beat)
    host.wall += 2 * HOUR  # someone sets the clock two hours ahead, past noon
    for _ in range(5):
        host.tick()
        turn(beat)
    runs = store.history(limit=100)
    assert {r.job for r in runs} == {"tick"}, "noon fired two hours early"
    assert [r.status for r in runs if r.status is RunStatus.MISSED] == []
    instants = sorted(r.scheduled_for for r in runs)
    assert instants == [T0.replace(microsecond=0) + timedelta(seconds=s) for s in range(1, 9)]
    assert beat.offset == -2 * HOUR
    assert jump_lines(caplog) == [
        "scheduler: the system clock jumped forward 2h at 2026-11-27T10:00:04.500Z, but Redis's "
        "clock did not: fires follow the corrected time, 2h behind the system clock"
    ]
    host.wall -= 2 * HOUR  # and it is put right
    for _ in range(2):
        host.tick()
        turn(beat)
    assert beat.offset == timedelta(0)
    assert jump_lines(caplog)[1].endswith("fires follow the system clock again")
    runs = store.history(limit=100)
    assert len(runs) == len({r.scheduled_for for r in runs}) == 10


def test_a_forward_jump_redis_made_too_is_caught_up_and_says_why(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost(T0, redis_follows=True)  # Redis on this host: it sees the same clock
    beat = host.beat(store, {"minutely": spec("minutely", cron="* * * * *")})
    beat.start()
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    host.tick(60)
    turn(beat)  # 10:01 fires
    host.wall += 2 * HOUR
    host.tick()
    turn(beat)
    runs = {r.scheduled_for.strftime("%H:%M"): r for r in store.history(limit=200)}
    assert runs["10:01"].trigger is Trigger.SCHEDULE
    assert runs["12:01"].trigger is Trigger.CATCHUP  # catchup=latest: the newest runs
    missed = [r for r in runs.values() if r.status is RunStatus.MISSED]
    assert len(missed) == 119  # 10:02 to 12:00
    assert {r.reason for r in missed} == {
        "the clock jumped forward 2h at 2026-11-27T10:01:01.500Z (catchup=latest)"
    }
    assert beat.offset == timedelta(0)
    assert jump_lines(caplog) == [
        "scheduler: the system clock jumped forward 2h at 2026-11-27T10:01:01.500Z, and "
        "Redis's clock with it: fires it skipped are caught up by each job's catchup policy"
    ]


@pytest.mark.parametrize("redis_follows", [True, False])
def test_a_backward_jump_never_fires_an_instant_twice(store: Store, redis_follows: bool) -> None:
    host = FakeHost(T0, redis_follows=redis_follows)
    beat = host.beat(store, {"tick": spec("tick", every_s=1.0)})
    beat.start()
    for _ in range(5):
        host.tick()
        turn(beat)
    host.wall -= timedelta(seconds=30)  # NTP steps the clock back
    for _ in range(40):
        host.tick()
        turn(beat)
    runs = store.history(job="tick", limit=100)
    instants = sorted(r.scheduled_for for r in runs)
    assert len(instants) == len(set(instants)) == len(runs)
    gaps = {b - a for a, b in zip(instants, instants[1:], strict=False)}
    assert gaps == {timedelta(seconds=1)}
    if redis_follows:  # a correction: the clock re-lives 30 s, made once already
        assert len(instants) == 45 - 30
    else:  # the system clock is wrong: fires go on by the corrected time, every second
        assert len(instants) == 45
        assert beat.offset == timedelta(seconds=30)


def test_a_jump_while_redis_is_down_waits_for_redis_to_tell(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost(T0, redis_follows=True)
    beat = host.beat(store, {"minutely": spec("minutely", cron="* * * * *")})
    beat.start()
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    host.redis_down = True
    host.wall += 2 * HOUR
    host.tick()
    beat.check_clock()
    assert beat.offset == -2 * HOUR  # until told apart: the time before the jump
    assert jump_lines(caplog) == [
        "scheduler: the system clock jumped forward 2h at 2026-11-27T10:00:01.500Z; until "
        "Redis's clock tells whether it was right, fires follow the time before the jump"
    ]
    host.redis_down = False
    beat._reap()
    assert beat.offset == timedelta(0)
    assert "and Redis's clock with it" in jump_lines(caplog)[1]


def test_at_start_a_system_clock_far_from_redis_follows_redis(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def redis_time() -> datetime:
        return from_ms(store.server_time_ms())

    minute = redis_time().replace(second=0, microsecond=0) - timedelta(minutes=1)
    store.enqueue(
        run_id=run_id_for("minutely", minute),
        job="minutely",
        scheduled_for=minute,
        queue="default",
        outcome="missed",
    )
    caplog.set_level(logging.INFO, logger="sched.scheduler")
    beat = Beat(
        store,
        {"minutely": spec("minutely", cron="* * * * *", catchup=Catchup.NONE)},
        clock=lambda: datetime.now(UTC) + 2 * HOUR,  # the host's clock is two hours ahead
        reference=redis_time,
    )
    beat.start()
    assert abs(beat.offset + 2 * HOUR) < timedelta(seconds=1)
    missed = [r for r in store.history(job="minutely", limit=500) if r.scheduled_for > minute]
    assert len(missed) <= 1, "two hours of fires recorded missed at start"
    assert (beat.heap[0][0] - redis_time()) < timedelta(minutes=1)
    assert jump_lines(caplog) == [
        "scheduler: the system clock is 2h ahead of Redis's clock: fires follow Redis's clock, "
        "which run records are stamped with"
    ]


def test_a_running_loop_on_the_real_clocks_sees_no_jump(store: Store) -> None:
    # The system clock and Redis's here are one: a minute of turns must find no jump.
    beat = Beat(store, {"tick": spec("tick", every_s=0.2)}, BeatSettings(max_sleep_s=0.05))
    assert beat.reference is not None  # the system clock gets Redis's as its reference
    beat.start()
    end = time.monotonic() + 2
    while time.monotonic() < end:
        turn(beat)
    assert beat.offset == timedelta(0) and beat._jump is None
    wait_for(lambda: len(store.history(job="tick", limit=10)) >= 5, 5, "5 fires")
