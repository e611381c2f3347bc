"""Jobs of the Redis error scenarios: one that outlives a short outage, one that ticks."""

import os
import time

from scheduler import job


@job("@yearly", name="steady", timeout="60s")
def steady() -> None:
    print(f"steady started in {os.getpid()}", flush=True)
    time.sleep(float(os.environ.get("STEADY_S", "3")))
    print("steady done", flush=True)


@job(every="1s", name="tick", overlap="allow", catchup="latest", timeout="10s")
def tick() -> None:
    print("tick")
