"""Helpers for tests: polling with a deadline, and process inspection through /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from scheduler.model import Overlap, Run, Trigger
from scheduler.policy import RunPolicy
from scheduler.store import Store

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def process_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry))
    return members


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def trigger(store: Store, job: str, *, retries: int = 0, timeout_s: float | None = None) -> str:
    """Queue a manual run of `job` (retried up to `retries` times 0.1 s apart); its id."""
    run_id = f"{job}@test-{uuid.uuid4().hex[:8]}"
    store.enqueue(
        run_id=run_id,
        job=job,
        scheduled_for=datetime.now(UTC),
        queue="default",
        overlap=Overlap.ALLOW,
        trigger=Trigger.MANUAL,
        timeout_s=timeout_s,
        advance_last_fire=False,
        policy=RunPolicy(retries=retries, retry_backoff_s=0.1),
    )
    return run_id


def final(store: Store, run_id: str, timeout: float = 30.0) -> Run:
    """Wait for the run's final status."""

    def done() -> Run | None:
        run = store.get_run(run_id)
        return run if run.status.final else None

    return wait_for(done, timeout, f"run {run_id} to end")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM (unless it has ended), wait up to `timeout`, then SIGKILL; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
