"""Jobs the stop-signal tests trigger by hand: one that ends soon, one that would not."""

import time

from scheduler import job

NEVER = "@yearly"


@job(NEVER, timeout="60s")
def naps() -> None:
    time.sleep(2)
    print("woke up")


@job(NEVER, timeout="120s")
def long() -> None:
    time.sleep(60)
