"""Fast schedules for the end-to-end test of `sched run`."""

import time

from scheduler import command, job


@job(every="1s", timeout="5s")
def ok() -> None:
    print("ok")


@job(every="1s", timeout="5s")
def fails() -> None:
    raise RuntimeError("expected failure")


@job(every="1s", timeout="0.3s")
def overruns() -> None:
    time.sleep(30)


command("echo", every="1s", argv=["echo", "from a command"], timeout="5s")


@job(every="2s", timeout="10s", overlap="allow")
def slowish() -> None:
    time.sleep(1.5)
