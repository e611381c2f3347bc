"""The embedded Redis: one server per state folder, data kept across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis, StateDirBusy
from scheduler.store import Store


def test_one_server_per_state_folder(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "state").start()
    try:
        with pytest.raises(StateDirBusy, match="another sched process is using"):
            EmbeddedRedis(tmp_path / "state").start(lock_wait_s=0.2)
        assert first.process is not None and first.process.poll() is None
    finally:
        first.stop()
    second = EmbeddedRedis(tmp_path / "state").start(lock_wait_s=0.2)
    second.stop()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "state") as server:
        store = Store(server.url)
        store.pause("kept")
        store.close()
    with EmbeddedRedis(tmp_path / "state") as server:
        store = Store(server.url)
        assert store.paused_jobs() == {"kept"}
        store.close()
