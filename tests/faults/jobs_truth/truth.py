"""Jobs of the read-time truth scenarios: a long run, a run that fails once, a held job."""

import os
import time

from scheduler import job

NEVER = "@yearly"


@job(NEVER, name="sleeper", timeout="60s")
def sleeper() -> None:
    time.sleep(60)


@job(NEVER, name="fails-once", timeout="60s")
def fails_once() -> None:
    time.sleep(float(os.environ.get("FAILS_ONCE_S", "2")))
    if os.environ["SCHED_ATTEMPT"] == "1":
        raise SystemExit(3)
    print("second attempt done", flush=True)


@job(every="1s", name="held", overlap="skip", catchup="none", timeout="60s")
def held() -> None:
    print(f"held started in {os.getpid()}", flush=True)
    time.sleep(6)
    print("held done", flush=True)
