"""Heap tracing for `python -m benchmarks.soak --trace DIR` (never imported otherwise).

The soak puts this folder first on PYTHONPATH of the `sched run` it starts, with
SOAK_TRACE_DIR set. Every sched process then traces its Python allocations from its first
line (tracemalloc, inherited by the forked scheduler and workers; the fork server, started
with exec, starts its own) and writes one JSON dump of its heap to SOAK_TRACE_DIR on each
SIGUSR2: traced bytes by line, live objects by type, the C allocator's counters. The soak
diffs the first dump after warm-up with the last (benchmarks/soak.py, `trace_diff`).
Horses stop tracing.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from types import FrameType

DIR = os.environ.get("SOAK_TRACE_DIR")
FRAMES = int(os.environ.get("SOAK_TRACE_FRAMES", "1"))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict[str, int]:
    """glibc's heap counters: `uordblks` in use, `fordblks` free inside the heap, `hblkhd` mmap."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {f[0]: int(getattr(info, f[0])) for f in _MallInfo2._fields_}


def _pymalloc() -> dict[str, int]:
    """CPython's object allocator, from sys._debugmallocstats (which writes to fd 2)."""
    wanted = {
        "# arenas allocated total": "arenas_allocated_total",
        "# arenas reclaimed": "arenas_reclaimed",
        "# arenas highwater mark": "arenas_highwater",
        "# arenas allocated current": "arenas_current",
        "# bytes in allocated blocks": "bytes_in_blocks",
        "# bytes in available blocks": "bytes_available",
        "# bytes lost to quantization": "bytes_quantization",
    }
    out: dict[str, int] = {}
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
    finally:
        os.close(saved)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        name = wanted.get(key.strip())
        if name and value.strip().replace(",", "").isdigit():
            out[name] = int(value.strip().replace(",", ""))
    return out


def _title() -> str:
    try:
        with open("/proc/self/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _dump(signum: int, frame: FrameType | None) -> None:
    if not tracemalloc.is_tracing():
        return
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    by_line = snapshot.statistics("lineno")
    types = Counter(type(o).__name__ for o in gc.get_objects())
    current, peak = tracemalloc.get_traced_memory()
    data = {
        "pid": os.getpid(),
        "time": time.time(),
        "title": _title(),
        "traced_bytes": current,
        "traced_peak": peak,
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
        "allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": sum(types.values()),
        "types": dict(types.most_common(60)),
        "mallinfo": _mallinfo(),
        "lines": [
            [s.traceback[0].filename, s.traceback[0].lineno, s.size, s.count] for s in by_line[:400]
        ],
        "pymalloc": _pymalloc(),
    }
    assert DIR is not None
    path = os.path.join(DIR, f"{os.getpid()}-{time.time_ns()}.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)


def _untrace() -> None:
    tracemalloc.stop()
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)


if DIR:
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR2, _dump)
    if "scheduler.forkserver" in _title():
        # A fork server's children are horses: not measured, so they must stay cheap.
        os.register_at_fork(after_in_child=_untrace)
