"""Jobs the fault scenarios trigger by hand."""

import os
import signal
import time

from scheduler import job

NEVER = "@yearly"


@job(NEVER, name="long", timeout="60s", retries=1, retry_backoff="0.1s")
def long() -> None:
    if os.environ["SCHED_ATTEMPT"] == "1":
        print(f"horse {os.getpid()}", flush=True)
        time.sleep(10)
    print("second attempt done")


def _worker() -> int:
    """The worker this run belongs to: the nearest ancestor titled `sched worker`."""
    pid = os.getppid()
    while pid > 1:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if fh.read().startswith(b"sched worker"):
                return pid
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return os.getppid()


@job(NEVER, name="poison", timeout="60s", retries=2, retry_backoff="0.1s")
def poison() -> None:
    os.kill(_worker(), signal.SIGKILL)
    time.sleep(10)


@job(NEVER, name="sleeper", timeout="60s")
def sleeper() -> None:
    time.sleep(60)
