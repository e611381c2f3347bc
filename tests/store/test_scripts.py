"""The Lua scripts' slot tables are the one declaration of their layouts: drift is caught."""

from __future__ import annotations

from importlib import resources

import pytest

from scheduler.store import RedisStore, Store
from scheduler.store.redis_store import Transition
from scheduler.store.scripts import LayoutError, Source, load, parse

LUA = resources.files("scheduler.store") / "lua"
NAMES = sorted(p.name[:-4] for p in LUA.iterdir() if p.name.endswith(".lua"))


def test_every_script_has_a_slot_table_and_uses_slots_by_name() -> None:
    assert "claim" in NAMES and "enqueue" in NAMES
    for name in NAMES:
        source = load(name)
        assert source.layout.keys or source.layout.key_rest, name
        assert source.text.startswith("-- "), name  # the table opens the script as sent


def test_a_slot_table_with_a_gap_or_a_positional_use_is_refused() -> None:
    with pytest.raises(LayoutError, match=r"KEYS slots are numbered \[1, 3\]"):
        parse("x", "-- KEYS[1] a  one\n-- KEYS[3] c  three\nreturn a\n")
    with pytest.raises(LayoutError, match=r"KEYS\[2\] used by number"):
        parse("x", "-- KEYS[1] a  one\nreturn KEYS[2]\n")
    with pytest.raises(LayoutError, match="only the last ARGV slot may be a tail"):
        parse("x", "-- ARGV[1..] rest  all\n-- ARGV[2] b  two\nreturn 1\n")


def test_a_caller_naming_a_slot_the_script_does_not_have_is_caught() -> None:
    source = load("promote")
    with pytest.raises(LayoutError, match="promote.lua: KEYS has no slot queue_list"):
        source.keys({"delayed": "d", "queue_list": "q", "run": "r"})
    with pytest.raises(LayoutError, match="promote.lua: KEYS has no slot other; slot queue not"):
        source.keys({"delayed": "d", "run": "r", "other": "o"})
    with pytest.raises(LayoutError, match="ARGV has no slot a tail"):
        source.args({"run_id": "x"}, ["extra"])


def _renamed(name: str, old: str, new: str) -> Source:
    """The script with one slot renamed in its table only, as a careless edit would leave it."""
    text = (LUA / f"{name}.lua").read_text()
    line = next(x for x in text.splitlines() if x.startswith("-- KEYS[") and f"] {old} " in x)
    text = text.replace(line, line.replace(f"] {old} ", f"] {new} "))
    layout, uses, header = parse(name, text)
    lines = text.splitlines()
    body = "\n".join(
        lines[:header] + [f"local {s} = KEYS[{i}]" for i, s in enumerate(layout.keys, 1)]
    )
    return Source(name, body, layout)


def test_a_table_changed_without_its_callers_is_caught_at_the_call(store: Store) -> None:
    assert isinstance(store, RedisStore)
    drifted = Transition(store.redis, "claim")
    drifted.source = _renamed("claim", "inbox", "inbox_list")
    store._claim = drifted
    with pytest.raises(LayoutError, match="claim.lua: KEYS has no slot inbox; slot inbox_list"):
        store.claim("w", "j@1", 10)


def test_a_table_changed_without_the_script_body_fails_in_redis(store: Store) -> None:
    assert isinstance(store, RedisStore)
    source = load("promote")
    text = source.text.replace("-- KEYS[2] queue ", "-- KEYS[2] queue_list ").replace(
        "local queue = KEYS[2]", "local queue_list = KEYS[2]"
    )
    script = store.redis.register_script(text)
    store.redis.zadd(store.keys.delayed, {"j@1": 0})
    store.redis.hset(store.keys.run("j@1"), "status", "queued")
    with pytest.raises(Exception, match="nonexistent global variable 'queue'"):
        script(keys=[store.keys.delayed, "q", store.keys.run("j@1")], args=["j@1"])
