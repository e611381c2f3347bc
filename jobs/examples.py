"""Example jobs: run them with `sched run`, then look with `sched history` and `sched show`.

Each one shows a way a run can end. Edit them, or add files of your own next to this one.
"""

import random
import time

from scheduler import command, job


@job("* * * * *", timeout="30s")
def tick() -> dict[str, float]:
    """Every minute: a quick Python job that completes and returns a small JSON result."""
    started = time.time()
    print("tick: doing a little work")
    time.sleep(random.uniform(0.1, 0.5))
    return {"took_s": round(time.time() - started, 3)}


@job("*/2 * * * *", timeout="10s")
def flaky_report() -> None:
    """Every two minutes: fails with an exception; `sched show` has its traceback."""
    rows = [3, 1, 4]
    print(f"report: {len(rows)} rows")
    raise RuntimeError("the report service answered 503")


@job("*/3 * * * *", timeout="2s")
def slow_export() -> None:
    """Every three minutes: overruns its 2 s timeout and is stopped at the deadline."""
    print("export: starting a 10 s export with a 2 s timeout")
    time.sleep(10)


command("disk-usage", "*/5 * * * *", ["df", "-h", "."], timeout="10s")
"""Every five minutes: an external program (no shell); its output is kept with the run."""
