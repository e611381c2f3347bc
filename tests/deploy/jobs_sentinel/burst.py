import time

from scheduler import job


@job(every="0.5s", overlap="allow", catchup="all", timeout="5s")
def burst() -> None:
    time.sleep(0.05)
