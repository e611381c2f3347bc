import sys
import time

from scheduler import job


@job("@yearly", timeout="30s")
def talks() -> None:
    for i in range(8):
        print(f"line {i}", flush=True)
        time.sleep(0.25)


@job("@yearly", timeout="60s")
def forever() -> None:
    time.sleep(1000)


@job("@yearly", timeout="30s")
def exits_4() -> None:
    sys.exit(4)


@job(every="1s", overlap="allow", catchup="none")
def ticker() -> None:
    pass
