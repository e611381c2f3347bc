"""The package's joints: only the store talks to Redis; light commands stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "scheduler"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_the_store_imports_redis() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        inside = path.relative_to(PACKAGE).parts[0] in ("store", "store.py")
        if inside:
            continue
        if any(name == "redis" or name.startswith("redis.") for name in _imports(path)):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def _loaded_after(code: str) -> list[str]:
    heavy = "('redis', 'prometheus_client')"
    probe = f"{code}\nimport sys\nprint(*(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.split()


def test_sched_next_loads_neither_redis_nor_prometheus() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "from scheduler.cli import cli\n"
        "r = CliRunner().invoke(cli, ['next', '*/5 * * * *', '-n', '2'])\n"
        "assert r.exit_code == 0, r.output\n"
    )
    assert _loaded_after(code) == []


def test_policy_and_urls_are_free_of_redis() -> None:
    assert _loaded_after("import scheduler.policy, scheduler.urls") == []
