"""RESULTS.md, as `benchmarks.run` rewrites it, keeps the sections measured by other commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import report, run
from benchmarks.common import Result


def _meta(quick: bool) -> dict[str, object]:
    return {
        "date": "2026-12-01 16:55 UTC",
        "command": "python -m benchmarks.run",
        "runtime_s": 1.0,
        "quick": quick,
        "machine": report.machine(),
        "load_before": "0 0 0",
        "load_after": "0 0 0",
    }


def test_a_full_run_keeps_the_soak_section(tmp_path: Path) -> None:
    kept = run.kept_sections()
    assert any(section.startswith("## Soak") for section in kept), run.KEPT_SECTIONS
    page = tmp_path / "RESULTS.md"
    run.write_markdown(argparse.Namespace(md=page), _meta(quick=False), [Result("throughput")])
    text = page.read_text()
    assert text.startswith("# Benchmark results")
    for section in kept:
        assert section.strip() in text
