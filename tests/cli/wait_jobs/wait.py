"""One job per way a run can end, for `sched trigger --wait`'s exit codes."""

import sys
import time

from scheduler import command, job


@job("@yearly", name="ok", timeout="30s")
def ok() -> str:
    return "fine"


@job("@yearly", name="raises", timeout="30s")
def raises() -> None:
    raise RuntimeError("boom")


@job("@yearly", name="exits-3", timeout="30s")
def exits_3() -> None:
    sys.exit(3)


command("command-5", "@yearly", ["sh", "-c", "exit 5"], timeout="30s")


@job("@yearly", name="slow", timeout="1s")
def slow() -> None:
    time.sleep(60)


@job("@yearly", name="forever", timeout="120s")
def forever() -> None:
    time.sleep(600)
