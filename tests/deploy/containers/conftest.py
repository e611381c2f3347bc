"""Real containers (podman): the image of deploy/Dockerfile and deploy/compose.yaml.

`scripts/deploy-test` builds the images and runs these tests with SCHED_TEST_IMAGE (sched's
image), SCHED_TEST_REDIS_IMAGE (the base it was built on, which has Debian's redis-server)
and SCHED_TEST_COMPOSE (podman-compose) set. Under a plain `pytest`, the `images` fixture runs
`scripts/deploy-test --prepare-only` itself. Never skipped: without podman, or when a
container cannot start, every test here fails and says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
COMPOSE_FILES = (ROOT / "deploy" / "compose.yaml", HERE / "compose.test.yaml")


@dataclass(frozen=True)
class Images:
    sched: str
    redis: str
    compose: str  # the podman-compose executable


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    args: str


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return proc


def inspect(container: str, template: str) -> str:
    return podman("inspect", "--format", template, container).stdout.strip()


def processes(container: str) -> list[Proc]:
    """Every process in the container, as podman top (the host's view of its namespace) shows."""
    out = podman("top", container, "pid", "ppid", "state", "args").stdout.splitlines()
    procs = []
    for line in out[1:]:
        pid, ppid, state, args = line.split(None, 3)
        procs.append(Proc(int(pid), int(ppid), state, args.strip()))
    return procs


def assert_no_orphans(container: str) -> list[Proc]:
    """No zombie, and nothing reparented to PID 1: its only child is the main process.

    tini (or redis-server) is PID 1; a process whose parent died is adopted by it, so a second
    child of PID 1 is a leftover of a run or of a killed process.
    """
    procs = processes(container)
    listing = "\n".join(f"{p.pid} {p.ppid} {p.state} {p.args}" for p in procs)
    assert not [p for p in procs if p.state.startswith("Z")], f"{container}: zombie\n{listing}"
    assert len([p for p in procs if p.ppid == 1]) <= 1, f"{container}: orphans\n{listing}"
    pids = {p.pid for p in procs}
    assert all(p.ppid in pids or p.pid == 1 for p in procs), f"{container}:\n{listing}"
    return procs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def images() -> Images:
    """The images scripts/deploy-test built (it is run here when the variables are unset: it
    installs what is missing as root, and fails saying what is missing otherwise)."""
    names = ("SCHED_TEST_IMAGE", "SCHED_TEST_REDIS_IMAGE", "SCHED_TEST_COMPOSE")
    if not all(os.environ.get(name) for name in names):
        env = dict(os.environ, VENV=str(Path(sys.executable).parent.parent))
        proc = subprocess.run(
            [str(ROOT / "scripts" / "deploy-test"), "--prepare-only"],
            capture_output=True,
            text=True,
            timeout=1200,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"scripts/deploy-test --prepare-only failed:\n{proc.stderr[-4000:]}")
        exports = proc.stdout.strip().splitlines()[-1].removeprefix("export ").split()
        os.environ.update(dict(pair.split("=", 1) for pair in exports))
    if shutil.which("podman") is None:
        pytest.fail(
            "podman is not installed: run scripts/deploy-test, which installs podman, runc and "
            "debootstrap from Debian (as root) and builds the images these tests run"
        )
    return Images(*(os.environ[name] for name in names))


class Compose:
    """deploy/compose.yaml (with the test's overrides) as one podman-compose project."""

    def __init__(self, images: Images, project: str, redis_port: int) -> None:
        self.images = images
        self.project = project
        self.redis_port = redis_port
        self.env = dict(
            os.environ,
            SCHED_IMAGE=images.sched,
            SCHED_TEST_REDIS_IMAGE=images.redis,
            SCHED_TEST_REDIS_PORT=str(redis_port),
            SCHED_JOBS_DIR=str(HERE / "jobs"),
        )

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        proc = subprocess.run(
            [self.images.compose, "-p", self.project, *files, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 0, f"podman-compose {' '.join(args)}:\n{proc.stderr[-3000:]}"
        return proc

    def containers(self, service: str) -> list[str]:
        out = podman(
            "ps",
            "--all",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ).stdout
        return sorted(out.split())

    def all_containers(self) -> list[str]:
        return [c for s in ("redis", "scheduler", "worker") for c in self.containers(s)]

    def logs(self, container: str, since: str | None = None) -> str:
        args = ["logs", *(["--since", since] if since else []), container]
        proc = podman(*args, check=False)
        return proc.stdout + proc.stderr


@pytest.fixture()
def compose(images: Images, tmp_path: Path) -> Iterator[Compose]:
    """The project, taken down (volumes too) before and after; logs kept in tmp_path."""
    c = Compose(images, "schedtest", free_port())
    c("down", "--volumes")
    try:
        yield c
    finally:
        for container in c.all_containers():
            log = c.logs(container)
            (tmp_path / f"{container}.log").write_text(log)
            print(f"--- {container} (last lines)\n" + "\n".join(log.splitlines()[-15:]))
        c("down", "--volumes", "--timeout", "5")


@pytest.fixture(scope="module")
def first_run(images: Images) -> Iterator[str]:
    """`docker run --rm IMAGE` as a user's first try: `sched run` with the example jobs."""
    name = f"schedtest-first-{uuid.uuid4().hex[:6]}"
    podman("run", "--detach", "--name", name, images.sched)
    try:
        yield name
    finally:
        podman("rm", "--force", "--time", "2", name, check=False)
