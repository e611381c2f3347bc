"""CPU profile of every horse, for the throughput benchmark's profile run (never imported else).

The throughput benchmark puts this folder first on PYTHONPATH of its worker child, with
BENCH_HORSE_PROFILE naming a folder; the worker's fork server (a fresh interpreter that
inherits both) then profiles each horse it forks from `horse.serve` to `horse._exit`,
timing by CPU (`time.process_time`: waiting for the order costs nothing), and dumps one
pstats file per horse. Horses whose order never came (the last ready one) dump nothing.
"""

from __future__ import annotations

import cProfile
import os
import time
from typing import Any

DIR = os.environ.get("BENCH_HORSE_PROFILE")


def _install(folder: str) -> None:
    from scheduler import horse

    serve, exit_ = horse.serve, horse._exit
    profiler = cProfile.Profile(time.process_time)

    def profiled_serve(*args: Any, **kwargs: Any) -> Any:
        profiler.enable()
        return serve(*args, **kwargs)

    def profiled_exit(code: int) -> Any:
        profiler.disable()
        profiler.dump_stats(os.path.join(folder, f"{os.getpid()}.prof"))
        return exit_(code)

    horse.serve, horse._exit = profiled_serve, profiled_exit  # type: ignore[assignment]


if DIR:
    _install(DIR)
