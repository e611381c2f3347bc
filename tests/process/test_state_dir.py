"""The state folder is private: 0700, its append-only file and dumps 0600, whatever the umask.

It holds every run's output and traceback; `sched run` is started under umask 022, the
usual default, which would leave them readable by every local user.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from scheduler.embedded import is_alive, socket_url
from scheduler.store import RedisStore, Store
from tests.helpers import wait_for

JOB = """
from scheduler import job

@job(every="1s", timeout="5s")
def tick() -> None:
    print("secret output")
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_state_folder_and_what_redis_writes_there_are_private(tmp_path: Path) -> None:
    state, jobs = tmp_path / "state", tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "tick.py").write_text(JOB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_STATE_DIR=str(state), SCHED_JOBS=str(jobs), SCHED_NO_WEB="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "run", "--workers", "1"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        url = socket_url(state)
        wait_for(lambda: is_alive(url), 20, "the embedded Redis")
        store = Store(url)
        assert isinstance(store, RedisStore)
        wait_for(lambda: store.history(job="tick.tick", limit=1), 20, "a first run")
        store.redis.save()  # a dump, as SAVE/BGSAVE or a replica sync would write it
        store.redis.bgrewriteaof()
        wait_for(
            lambda: store.redis.info("persistence")["aof_rewrite_in_progress"] == 0, 20, "rewrite"
        )
        store.close()
        made = sorted(state.rglob("*"))
        aof = [p for p in made if p.name.startswith("appendonly") and p.is_file()]
        assert aof and (state / "dump.rdb").exists()
        assert _mode(state) == 0o700
        for path in [*aof, state / "dump.rdb", state / "redis.log"]:
            assert _mode(path) == 0o600, f"{path.name} is {oct(_mode(path))}"
        for path in made:
            assert _mode(path) & 0o077 == 0, f"{path.name} is {oct(_mode(path))}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def test_an_existing_state_folder_and_its_files_are_made_private(tmp_path: Path) -> None:
    from scheduler.embedded import EmbeddedRedis

    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    log = state / "redis.log"
    log.write_text("written by an older sched\n")
    log.chmod(0o644)
    with EmbeddedRedis(state):
        assert _mode(state) == 0o700
        assert _mode(log) == 0o600
