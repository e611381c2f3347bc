"""Run the benchmarks and print one table: `python -m benchmarks.run [--quick] [--only ...]`.

Every figure of sched stands beside its comparison measured in the same run (RQ, a bare fork
loop, the interpreter), because absolute times drift between runs. The raw numbers go to a
JSON file, the table to stdout and to a Markdown page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    cli_startup,
    durability,
    fire,
    history,
    report,
    scale,
    snapshot,
    throughput,
    timeouts,
    web,
)
from benchmarks.common import Config, Result, progress

# In a snapshot (see snapshot.py) the outputs and ANALYSIS.md still belong to the real tree.
HERE = snapshot.origin(Path(__file__).resolve().parent.parent) / "benchmarks"
BENCHMARKS: dict[str, Callable[[Config], Result]] = {
    "throughput": throughput.run,
    "fire": fire.run,
    "scale": scale.run,
    "timeouts": timeouts.run,
    "history": history.run,
    "cli": cli_startup.run,
    "web": web.run,
    "durability": durability.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Side-by-side benchmarks of sched (see benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "latest.json", help="raw numbers (JSON)"
    )
    parser.add_argument(
        "--md",
        type=Path,
        default=None,
        help="Markdown page with the table (default: benchmarks/RESULTS.md for a full run of "
        "everything, else next to --out)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="measure the working tree as it is, without first copying the code (see snapshot.py)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: print the table of an earlier run's JSON and write its Markdown page",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    args.names = names
    if args.md is None and args.render is not None:
        args.md = args.render.with_suffix(".md")
    elif args.md is None:
        full = not args.quick and names == list(BENCHMARKS)
        args.md = HERE / "RESULTS.md" if full else args.out.with_suffix(".md")
    return args


def run_all(names: list[str], cfg: Config) -> list[Result]:
    """Run each benchmark; one that fails is reported as not run, the others go on."""
    results = []
    for name in names:
        started = time.monotonic()
        progress(f"== {name}")
        try:
            result = BENCHMARKS[name](cfg)
        except Exception as exc:  # noqa: BLE001 - reported in the table and the JSON
            result = Result(name)
            result.notes.append(f"failed: {exc!r}")
            result.raw["traceback"] = traceback.format_exc()
            progress(f"{name} FAILED: {exc!r}")
        result.seconds = time.monotonic() - started
        progress(f"== {name} done in {result.seconds:.0f} s")
        results.append(result)
    return results


def render(args: argparse.Namespace) -> int:
    """Re-write the Markdown page of a finished run (e.g. after editing ANALYSIS.md)."""
    payload = json.loads(args.render.read_text())
    meta = payload["meta"]
    results = [Result.from_json(r) for r in payload["benchmarks"]]
    print(report.console_table(results))
    write_markdown(args, meta, results)
    return 0


# Sections measured outside this command (the soak takes as long as it is given), kept in
# their own files and copied to the end of RESULTS.md, so a run never drops them: edit those
# files, not RESULTS.md.
KEPT_SECTIONS = ("SOAK.md",)


def kept_sections(folder: Path = HERE) -> list[str]:
    """The text of each KEPT_SECTIONS file that exists, in order."""
    return [(folder / name).read_text() for name in KEPT_SECTIONS if (folder / name).exists()]


def write_markdown(args: argparse.Namespace, meta: dict[str, Any], results: list[Result]) -> None:
    analysis_file = HERE / "ANALYSIS.md"
    quick = bool(meta["quick"])
    analysis = analysis_file.read_text() if analysis_file.exists() and not quick else ""
    kept = [] if quick else kept_sections()
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(report.results_markdown(meta, results, analysis, kept))


def _code_note() -> str:
    import scheduler

    package = Path(scheduler.__file__).resolve().parent
    where = "a snapshot taken at the start" if snapshot.ENV in os.environ else "the live tree"
    return f"scheduler/ sources {snapshot.digest(package)} ({where}: {package})"


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)
    if args.render is not None:
        return render(args)
    if not args.live and snapshot.ENV not in os.environ:
        command = "python -m benchmarks.run" + "".join(f" {a}" for a in raw_argv)
        where = ["--out", str(args.out.resolve()), "--md", str(args.md.resolve())]
        snapshot.exec_in_snapshot(HERE.parent, [*raw_argv, *where], command)
    try:
        return _run(args)
    finally:
        snapshot.cleanup()


def _run(args: argparse.Namespace) -> int:
    cfg = Config(quick=args.quick)
    started = time.monotonic()
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get(snapshot.COMMAND_ENV) or "python -m benchmarks.run (--live)",
        "code": _code_note(),
        "quick": args.quick,
        "machine": report.machine(),
        "load_before": report.load_average(),
    }
    progress(f"benchmarks: {', '.join(args.names)}{' (quick)' if args.quick else ''}")
    results = run_all(args.names, cfg)
    meta["runtime_s"] = time.monotonic() - started
    meta["load_after"] = report.load_average()
    print(report.console_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "benchmarks": [r.to_json() for r in results]}
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    write_markdown(args, meta, results)
    progress(f"raw numbers: {args.out}; table: {args.md}; {meta['runtime_s']:.0f} s in all")
    return 1 if any(not r.rows for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
