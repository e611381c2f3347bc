"""Jobs of the compose scenario: a fire every second, and runs the test starts by hand."""

import os
import time

from scheduler import job

NEVER = "@yearly"


@job(every="1s", overlap="allow", catchup="all", timeout="10s")
def tick() -> None:
    pass


@job(NEVER, timeout="60s", retries=1, retry_backoff="0.1s")
def long() -> None:
    """The first attempt outlives its worker's container (killed); the retry is quick."""
    if os.environ["SCHED_ATTEMPT"] == "1":
        time.sleep(30)
    print("second attempt done")


@job(NEVER, timeout="60s")
def slow() -> None:
    """Runs while its worker gets a warm stop: it must finish, not be killed."""
    time.sleep(6)
    print("slow done")
