"""Jobs with a memory limit: within it, past it, and a program past it."""

import sys

from scheduler import command, job

NEVER = "@yearly"


@job(NEVER, name="within", timeout="60s", memory_limit="256M")
def within() -> int:
    return len(bytearray(16 << 20))


@job(NEVER, name="greedy", timeout="60s", memory_limit="128M")
def greedy() -> int:
    hoard = [bytearray(16 << 20) for _ in range(64)]  # 1 GiB in all, far past the limit
    return len(hoard)


command(
    "greedy-program",
    NEVER,
    [sys.executable, "-c", "hoard = bytearray(1 << 30)"],
    timeout="60s",
    memory_limit="128M",
)
