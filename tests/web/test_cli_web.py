"""`sched web` and the dashboard of `sched run`: flags, refusals, and what the CLI does not load."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.web.server import WebConfigError, claim_port, settings
from tests.helpers import wait_for

ENV = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}


def _sched(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def test_the_cli_does_not_import_the_web_stack() -> None:
    code = textwrap.dedent(
        """
        import sys
        import scheduler.cli, scheduler.runner
        loaded = sorted(m for m in ("starlette", "uvicorn", "jinja2") if m in sys.modules)
        print(loaded)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sched_run_refuses_a_public_dashboard_without_a_token(redis_url: str) -> None:
    proc = _sched("--redis-url", redis_url, "run", "--web-bind", "0.0.0.0:0")
    assert proc.returncode == 2
    assert "give an access token" in proc.stderr and "Traceback" not in proc.stderr


def test_an_explicit_busy_address_is_an_error(redis_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _sched("--redis-url", redis_url, "run", "--web-bind", f"127.0.0.1:{port}")
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--no-web" in proc.stderr


def test_a_busy_default_port_moves_to_a_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = settings(f"127.0.0.1:{busy.getsockname()[1]}")
        with pytest.raises(WebConfigError):
            claim_port(taken, fall_back=False)
        moved = claim_port(taken, fall_back=True)
    assert moved.port not in (0, taken.port)


def _children(pid: int) -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            out[int(entry)] = cmdline.replace(b"\0", b" ").decode().strip()
    return out


@pytest.fixture()
def jobs(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "a.py").write_text("from scheduler import job\n\n@job('0 0 1 1 *')\ndef f(): pass\n")
    return folder


def _start(redis_url: str, jobs: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler",
                "--jobs",
                str(jobs),
                "--redis-url",
                redis_url,
                "run",
                "--workers",
                "2",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )


@pytest.fixture()
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_sched_run_serves_the_dashboard_in_its_own_child(
    redis_url: str, jobs: Path, tmp_path: Path, stop: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "run.log"
    proc = _start(redis_url, jobs, log, "--web-bind", "127.0.0.1:0")
    stop.append(proc)
    url = wait_for(
        lambda: re.search(r"sched: dashboard on (http://\S+)", log.read_text()), timeout=30
    ).group(1)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")

    def ready() -> dict[int, str] | None:
        kids = _children(proc.pid)
        titles = " ".join(kids.values())
        return kids if "sched web" in titles and titles.count("worker") >= 2 else None

    kids = wait_for(ready, timeout=30, what=f"the children; log:\n{log.read_text()}")
    for pid, title in kids.items():
        threads = len(os.listdir(f"/proc/{pid}/task"))
        if "worker" in title:
            assert threads == 1, f"{title}: {threads} threads"  # nothing of the web server
    assert any("sched web" in t for t in kids.values())


def test_no_web_serves_nothing(
    redis_url: str, jobs: Path, tmp_path: Path, stop: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "run.log"
    proc = _start(redis_url, jobs, log, "--no-web")
    stop.append(proc)
    wait_for(lambda: "schedules loaded" in log.read_text(), timeout=30)
    wait_for(lambda: log.read_text().count("serving queues") >= 2, timeout=30)
    assert "dashboard" not in log.read_text()
    assert not any("sched web" in t for t in _children(proc.pid).values())


def test_sched_web_serves_the_api_and_read_only_has_no_actions(
    redis_url: str, jobs: Path, tmp_path: Path, stop: list[subprocess.Popen[bytes]]
) -> None:
    import urllib.error
    import urllib.request

    log = tmp_path / "web.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler",
                "--jobs",
                str(jobs),
                "--redis-url",
                redis_url,
                "web",
                "--bind",
                "127.0.0.1:0",
                "--read-only",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    stop.append(proc)
    url = wait_for(
        lambda: re.search(r"dashboard on (http://\S+) \(read-only\)", log.read_text()),
        timeout=30,
        what="the dashboard's URL",
    ).group(1)
    with urllib.request.urlopen(url + "api/v1/jobs", timeout=10) as response:
        assert [row["job"] for row in json.load(response)] == ["a.f"]
    request = urllib.request.Request(url + "jobs/a.f/trigger", data=b"csrf=x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code in (404, 405)
