"""The job mix of the soak benchmark (benchmarks/soak.py): every way a run can end.

Two workers run it with room to spare: about 2 s of work per second. The per-second jobs
(`overlap="allow"`) are the ones whose fires are checked for gaps and duplicates.
"""

import sys
import time

from scheduler import command, job

BIG = "x" * 1023 + "\n"


@job("* * * * * *", name="soak.quick", timeout="10s", overlap="allow")
def quick() -> dict[str, float]:
    """Every second: returns at once with a small JSON result."""
    return {"at": time.time()}


command("soak.true", "* * * * * *", ["true"], timeout="10s", overlap="allow")
"""Every second: an external program that exits 0."""


@job(every="2s", name="soak.failing", timeout="10s")
def failing() -> None:
    """Every 2 s: raises (a traceback is kept)."""
    print("about to fail")
    raise RuntimeError("the soak's failing job failed, as it should")


@job(every="5s", name="soak.slow", timeout="10s")
def slow() -> None:
    """Every 5 s: works for 2 s."""
    time.sleep(2)


@job(every="10s", name="soak.timeout", timeout="1s")
def times_out() -> None:
    """Every 10 s: overruns its 1 s timeout (JobTimeout at the deadline)."""
    time.sleep(5)


@job(every="3s", name="soak.big_output", timeout="10s")
def big_output() -> None:
    """Every 3 s: prints 256 KiB to stdout and stderr, more than the 64 KiB kept."""
    for _ in range(128):
        sys.stdout.write(BIG)
        sys.stderr.write(BIG)
