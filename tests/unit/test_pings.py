"""The heartbeat's settings and the URLs of a job's pings (healthchecks.io's scheme)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from scheduler.errors import DefinitionError, InvalidOption
from scheduler.loader import load_jobs
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


def test_a_bad_ping_option_is_a_definition_error(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from scheduler import job\n\n"
        "@job('* * * * *', ping='hc-ping.com/x')\ndef j() -> None: ...\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_jobs(tmp_path)
    text = str(caught.value)
    assert "bad.py:3: job 'bad.j': invalid ping 'hc-ping.com/x': not a URL" in text, text
    assert "expected an http(s) URL, e.g. ping=https://hc-ping.com/<uuid>" in text


def test_a_ping_url_stays_out_of_repr(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(
        "from scheduler import job\n\n"
        "@job('* * * * *', ping='https://hc-ping.com/secret-uuid')\ndef j() -> None: ...\n"
    )
    (spec,) = load_jobs(tmp_path).values()
    assert spec.ping_url == "https://hc-ping.com/secret-uuid"
    assert "secret-uuid" not in repr(spec)
