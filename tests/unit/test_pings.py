"""The heartbeat's settings and the URLs of a job's pings (healthchecks.io's scheme)."""

from __future__ import annotations

import uuid

import pytest

from scheduler.errors import InvalidOption
from scheduler.pings import Heartbeat, heartbeat_from_env, ping_url, run_uuid


def test_heartbeat_settings_from_the_environment() -> None:
    assert heartbeat_from_env({}) is None
    assert heartbeat_from_env({"SCHED_HEARTBEAT_URL": "https://hc-ping.com/abc"}) == Heartbeat(
        "https://hc-ping.com/abc", 60.0
    )
    env = {"SCHED_HEARTBEAT_URL": "https://hc-ping.com/abc", "SCHED_HEARTBEAT_EVERY": "30s"}
    assert heartbeat_from_env(env) == Heartbeat("https://hc-ping.com/abc", 30.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCHED_HEARTBEAT_URL": "hc-ping.com/abc"}, "not a URL"),
        ({"SCHED_HEARTBEAT_URL": "ftp://hc-ping.com/abc"}, "scheme 'ftp' is not http or https"),
        ({"SCHED_HEARTBEAT_URL": "https://a:secret@x/", "SCHED_HEARTBEAT_EVERY": "soon"}, "soon"),
        ({"SCHED_HEARTBEAT_EVERY": "1m"}, "set without SCHED_HEARTBEAT_URL"),
    ],
)
def test_bad_heartbeat_settings_say_what_and_where(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        heartbeat_from_env(env)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_ping_urls_follow_healthchecks() -> None:
    rid = run_uuid("backup@20261127T030000Z")
    assert uuid.UUID(rid).version == 5
    assert rid == run_uuid("backup@20261127T030000Z") != run_uuid("backup@20261128T030000Z")
    base = "https://hc-ping.com/5b3f"
    assert ping_url(base, "start", "backup@20261127T030000Z") == f"{base}/start?rid={rid}"
    assert ping_url(base + "/", "success", "backup@20261127T030000Z") == f"{base}?rid={rid}"
    assert ping_url(base, "fail", "backup@20261127T030000Z") == f"{base}/fail?rid={rid}"
    # A URL with a query of its own keeps it.
    assert (
        ping_url(base + "?create=1", "fail", "b@1") == f"{base}/fail?create=1&rid={run_uuid('b@1')}"
    )
