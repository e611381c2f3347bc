"""Jobs for the secure-Redis tests: one that fires every second, two fired by hand."""

import time

from scheduler import job

NEVER = "@yearly"


@job(every="1s", name="tick", timeout="10s")
def tick() -> None:
    print("tick")


@job(NEVER, name="quick", timeout="10s")
def quick() -> None:
    print("quick done")


@job(NEVER, name="slow", timeout="60s")
def slow() -> None:
    time.sleep(60)
