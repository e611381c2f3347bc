"""sched as a user installs it: the built wheel in a fresh virtual environment, not editable,
run from another folder, with the example jobs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).parent.parent.parent
PACKAGE_DATA = (
    "scheduler/py.typed",
    "scheduler/store/lua/claim.lua",
    "scheduler/store/lua/lib/now.lua",
    "scheduler/web/templates/base.html",
    "scheduler/web/static/app.js",
)


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCHED_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"
    } | {"PATH": os.defpath}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # From a copy of the sources, so the build leaves nothing in the work tree.
    src = out / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", ".sched", "*.egg-info", "build", "dist"),
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", out],
        cwd=src,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel (and its dependencies) installed; its bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = dist.glob("sched-*.whl")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
        env=_env(),
        cwd=venv,
    )
    yield venv / "bin"


def test_the_wheel_and_sdist_carry_the_package_data(dist: Path) -> None:
    (wheel,) = dist.glob("sched-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert not missing, f"not in the wheel: {missing}"
    lua = {n for n in names if n.endswith(".lua")}
    assert lua == {
        str(p.relative_to(ROOT)) for p in (ROOT / "scheduler" / "store" / "lua").rglob("*.lua")
    }
    (sdist,) = dist.glob("sched-*.tar.gz")
    assert sdist.stat().st_size > 0


def test_installed_wheel_checks_and_runs_the_example_jobs(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "jobs", work / "jobs")
    sched = str(installed / "sched")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sched, *args], cwd=work, env=_env(), capture_output=True, text=True, timeout=60
        )

    where = subprocess.run(
        [str(installed / "python"), "-c", "import scheduler; print(scheduler.__file__)"],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed.parent)), f"imported from {where}, not the venv"
    check = run("check")
    assert check.returncode == 0, check.stderr
    assert "4 jobs OK in jobs/" in check.stdout
    nxt = run("next", "examples.tick", "-n", "2", "--json")
    assert nxt.returncode == 0, nxt.stderr
    assert len(json.loads(nxt.stdout)) == 2

    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sched, "run", "--no-web", "--workers", "1"],
            cwd=work,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "started worker-1" in log.read_text(), 60, "sched run to start")
        # The scheduler's Lua scripts and the worker's fork server come from the wheel.
        triggered = run("trigger", "examples.tick", "--wait")
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr + log.read_text()
        shown = run("show", "examples.tick", "--json")
        assert json.loads(shown.stdout)["status"] == "completed"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()
