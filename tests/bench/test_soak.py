"""Smoke test of the soak benchmark: a 20-second `sched run` yields a complete report.

No slope is judged here (20 s is all warm-up noise); `python -m benchmarks.soak` is where
flatness is measured. What this proves: the processes are found and sampled, the slopes are
fitted, the run records are read back, and a whole fire grid has no gap and no duplicate.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import soak


def test_soak_report_has_every_field(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    code = soak.main(["--minutes", "0.4", "--warmup", "0.1", "--interval", "2", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    roles = sorted(p["role"] for p in report["processes"].values())
    assert roles == ["forkserver", "forkserver", "scheduler", "supervisor", "worker", "worker"]
    for name, proc in report["processes"].items():
        assert len(proc["samples"]) >= 5, name
        assert proc["rss_kb_last"] > 0, name
        assert proc["fds_last"] > 0, name
        assert proc["rss_slope_kib_min"]["slope_per_min"] is not None, name
        assert proc["fd_slope_per_min"]["slope_per_min"] is not None, name
    assert report["redis"]["used_memory_last"] > 0
    assert report["redis"]["used_memory_slope_kib_min"]["slope_per_min"] is not None
    fires = report["fires"]
    assert set(fires) >= {"soak.quick", "soak.true", "soak.failing", "soak.timeout"}
    quick = fires["soak.quick"]
    assert quick["fires"] >= 5
    assert quick["duplicates"] == 0
    assert quick["gaps"] == 0
    assert report["log"]["tracebacks"] == 0
    assert "| worker-1 |" in soak.table(report)
