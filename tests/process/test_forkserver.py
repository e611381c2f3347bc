"""The fork server on its own: horses over SCM_RIGHTS, true wait statuses, sweeps, no secrets."""

from __future__ import annotations

import json
import os
import re
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler import horse
from scheduler.forkserver import ForkServer, Horse, scrubbed_environment
from tests.helpers import alive, wait_for

HOSTILE = Path(__file__).parent.parent / "faults" / "jobs_hostile"


@pytest.fixture()
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForkServer]:
    monkeypatch.setenv("SCHED_REDIS_URL", "redis://:hunter2@localhost:1/0")
    server = ForkServer(HOSTILE)
    server.start()
    yield server
    server.stop()


def _order(forks: ForkServer, job: str, timeout_s: float = 10.0) -> Horse:
    forks.request()
    ready = forks.take()
    os.write(ready.order_w, horse.order_bytes(job, timeout_s, {"SCHED_RUN_ID": f"{job}@t"}))
    ready.close_order()
    return ready


def _wait_exit(ready: Horse) -> None:
    poller = select.poll()
    poller.register(ready.pidfd, select.POLLIN)
    assert poller.poll(20_000), "the horse did not end"


def _read(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_the_environment_of_a_fork_server_holds_no_sched_setting() -> None:
    env = {"SCHED_REDIS_URL": "redis://:pw@h/0", "SCHED_ON_FAILURE": "https://t", "PATH": "/bin"}
    assert scrubbed_environment(env) == {"PATH": "/bin"}


def test_a_horse_from_the_fork_server_finds_no_credential(forks: ForkServer) -> None:
    ready = _order(forks, "finds-secrets")
    _wait_exit(ready)
    ended = forks.exit_of(ready.pid)
    report = json.loads(_read(ready.rep_r).splitlines()[-1])
    ready.close()
    assert ended is not None and ended.status == 0
    assert report == {"outcome": "returned", "result": []}


def test_what_a_run_leaves_is_killed_before_its_exit_is_reported(forks: ForkServer) -> None:
    ready = _order(forks, "new-session-tree")
    _wait_exit(ready)
    ended = forks.exit_of(ready.pid)
    left = {int(pid) for pid in re.findall(r"left (\d+)", _read(ready.out_r))}
    ready.close()
    assert ended is not None and ended.status == 0
    # Killed by the sweep, or before it by cgroup.kill where runs have cgroups.
    assert len(left) == 3 and ended.swept in (0, 3) and ended.left == 0
    assert not [pid for pid in left if alive(pid)]


def test_closing_the_socket_kills_the_whole_tree(forks: ForkServer) -> None:
    ready = _order(forks, "deep-tree", timeout_s=60)
    text = ""

    def printed() -> bool:
        nonlocal text
        text += _read(ready.out_r)
        return len(re.findall(r"left (\d+)", text)) >= 3

    wait_for(printed, 20, "the tree to start")
    pids = {int(pid) for pid in re.findall(r"(?:left|horse) (\d+)", text)} | {ready.pid}
    server = forks.pid
    forks.stop()
    ready.close()
    assert server is not None and not alive(server)
    assert not [pid for pid in pids if alive(pid)]


def test_where_cgroup_v2_is_writable_each_horse_has_a_cgroup_of_its_own(
    forks: ForkServer,
) -> None:
    from scheduler.forkserver import RunCgroups
    from scheduler.proc import own_cgroup

    probe = RunCgroups.create()
    if probe is None:
        pytest.skip("cgroup v2 is not writable here: the sweep alone holds")
    probe.close()
    ready = _order(forks, "sleeper", timeout_s=60)
    wait_for(lambda: "left" in _read(ready.out_r), 20, "the job to start")
    cgroup = Path(f"/proc/{ready.pid}/cgroup").read_text()
    os.kill(ready.pid, 9)
    _wait_exit(ready)
    ended = forks.exit_of(ready.pid)
    ready.close()
    assert "/sched-fork-server-" in cgroup and "/run-" in cgroup, cgroup
    assert ended is not None and ended.status == 9 and ended.left == 0
    server = forks.pid
    forks.stop()
    own = own_cgroup()
    assert own is not None and not list(own.glob(f"sched-fork-server-{server}-*"))


def test_a_fork_server_removes_the_empty_cgroups_of_dead_ones() -> None:
    from scheduler.forkserver import RunCgroups
    from scheduler.proc import own_cgroup

    probe = RunCgroups.create()
    if probe is None:
        pytest.skip("cgroup v2 is not writable here")
    probe.close()
    own = own_cgroup()
    assert own is not None
    stale = own / "sched-fork-server-4194303-deadbeef"  # above any pid in use
    (stale / "run-1").mkdir(parents=True)
    server = ForkServer(HOSTILE)
    server.start()
    server.stop()
    assert not stale.exists()
