"""Smoke test of the benchmarks: each one runs at its smallest size and yields numbers.

No timing target is asserted here (the machine may be busy); `python -m benchmarks.run` is
where the targets are judged. Needs the `bench` extra (RQ); skipped without it.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("rq", reason="the benchmarks compare with RQ: pip install -e '.[bench]'")

from benchmarks.common import Config  # noqa: E402
from benchmarks.run import BENCHMARKS  # noqa: E402


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_produces_numbers(name: str) -> None:
    result = BENCHMARKS[name](Config(smoke=True))
    assert result.rows, f"{name} produced no rows: {result.notes}"
    for row in result.rows:
        assert row.value is not None, f"{name}: {row.metric} has no value"
        assert math.isfinite(row.value), f"{name}: {row.metric} = {row.value}"
