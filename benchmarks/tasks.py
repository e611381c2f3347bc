"""The job bodies the benchmarks run, importable by sched's worker and by RQ's alike."""

from __future__ import annotations

import math
import os
import signal
import time


def noop() -> None:
    """The no-op job of the throughput benchmark."""


def kib_of_output() -> None:
    """1 KiB of log-like output (not one repeated byte: a store may compress it)."""
    lines, size = [], 0
    i = 0
    while size < 1024:
        line = f"row {i}: id={(i * 7919) % 100003} value={(i * 104729) % 99991}"
        lines.append(line)
        size += len(line) + 1
        i += 1
    print("\n".join(lines)[:1023])


def record_fire() -> None:
    """sched: print the time of the first line; the output is kept with the run record."""
    started = time.time()
    print(repr(started))


def rq_record_fire() -> None:
    """rq cron: append `fire instant, first-line time` to $BENCH_FIRE_LOG.

    rq cron enqueues a per-second job within a second after its instant, so the instant is
    the enqueue time rounded down to the whole second.
    """
    started = time.time()
    from rq import get_current_job

    job = get_current_job()
    enqueued = job.enqueued_at.timestamp() if job and job.enqueued_at else started
    with open(os.environ["BENCH_FIRE_LOG"], "a") as fh:
        fh.write(f"{math.floor(enqueued)!r} {started!r}\n")


def sleep_forever() -> None:
    """Overruns any timeout; ended by the horse's alarm."""
    while True:
        time.sleep(3600)


def block_alarm_forever() -> None:
    """Blocks SIGALRM, so only the worker's backstop at deadline + grace can end it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    while True:
        time.sleep(3600)
