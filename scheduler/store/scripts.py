"""The store's Lua scripts: one `.lua` file per atomic transition, beside this module.

Each file opens with the table of its slots, one line each (`-- KEYS[2] run  the run hash`,
`-- ARGV[8..] fields  field, value pairs`). That table is the one declaration of the layout:
the loader binds every slot to a Lua local of the same name (a trailing `[n..]` slot binds
`n`, its first index), and Python passes keys and arguments by name, in any order, so a slot
that one side names and the other does not is an error (LayoutError) instead of a wrong key.
A `-- uses:` line names the shared pieces (`lib/*.lua`) the script needs, in order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TypeVar

from scheduler.model import PENDING

_SLOT = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\] ([a-z_][a-z0-9_]*)\b")
_USES = re.compile(r"^-- uses: ([a-z_ ]+)$")
# Positional access in a script's own code: every fixed slot must be used by its name.
_POSITIONAL = re.compile(r"\b(KEYS|ARGV)\[\d+\]")


# What a script argument may be, as redis-py sends it.
Arg = str | int | float


class LayoutError(Exception):
    """A script and its caller disagree about its slots (or its slot table is malformed)."""


@dataclass(frozen=True)
class Layout:
    """The slots of one script, in order; `*_rest` names a variable-length tail."""

    keys: tuple[str, ...]
    args: tuple[str, ...]
    key_rest: str | None = None
    arg_rest: str | None = None


@dataclass(frozen=True)
class Source:
    """A script as sent to Redis, and its layout."""

    name: str
    text: str
    layout: Layout

    def keys(self, named: Mapping[str, str], rest: Sequence[str] = ()) -> list[str]:
        """KEYS in slot order from keys given by name, then the tail."""
        return _ordered(self.name, "KEYS", self.layout.keys, self.layout.key_rest, named, rest)

    def args(self, named: Mapping[str, Arg], rest: Sequence[Arg] = ()) -> list[Arg]:
        """ARGV in slot order from arguments given by name, then the tail."""
        return _ordered(self.name, "ARGV", self.layout.args, self.layout.arg_rest, named, rest)


V = TypeVar("V")


def _ordered(
    script: str,
    table: str,
    slots: tuple[str, ...],
    rest_slot: str | None,
    named: Mapping[str, V],
    rest: Sequence[V],
) -> list[V]:
    if named.keys() != set(slots) or (rest and rest_slot is None):
        unknown = sorted(set(named) - set(slots)) + (["a tail"] if rest and not rest_slot else [])
        missing = sorted(set(slots) - set(named))
        problems = [f"has no slot {', '.join(unknown)}"] if unknown else []
        problems += [f"slot {', '.join(missing)} not given"] if missing else []
        raise LayoutError(f"{script}.lua: {table} {'; '.join(problems)}")
    return [named[slot] for slot in slots] + list(rest)


def parse(name: str, text: str) -> tuple[Layout, list[str], int]:
    """The layout, the pieces used and the number of header lines of a script's text."""
    lines = text.splitlines()
    header = 0
    while header < len(lines) and lines[header].startswith("--"):
        header += 1
    slots: dict[str, list[tuple[int, str, bool]]] = {"KEYS": [], "ARGV": []}
    uses: list[str] = []
    for line in lines[:header]:
        if match := _SLOT.match(line):
            table, index, rest, slot = match.groups()
            slots[table].append((int(index), slot, bool(rest)))
        elif match := _USES.match(line):
            uses += match.group(1).split()
    fixed: dict[str, tuple[str, ...]] = {}
    tails: dict[str, str | None] = {}
    for table, entries in slots.items():
        numbers = [index for index, _, _ in entries]
        if numbers != list(range(1, len(entries) + 1)):
            raise LayoutError(f"{name}.lua: {table} slots are numbered {numbers}, not 1, 2, ...")
        if any(rest for _, _, rest in entries[:-1]):
            raise LayoutError(f"{name}.lua: only the last {table} slot may be a tail [n..]")
        tail = entries[-1] if entries and entries[-1][2] else None
        tails[table] = tail[1] if tail else None
        fixed[table] = tuple(slot for _, slot, rest in entries if not rest)
    body = "\n".join(lines[header:])
    if found := _POSITIONAL.search(body):
        raise LayoutError(f"{name}.lua: {found.group(0)} used by number; use its slot's name")
    return Layout(fixed["KEYS"], fixed["ARGV"], tails["KEYS"], tails["ARGV"]), uses, header


def _prelude(layout: Layout) -> list[str]:
    out = [f"local {slot} = KEYS[{i}]" for i, slot in enumerate(layout.keys, 1)]
    if layout.key_rest:
        out.append(f"local {layout.key_rest} = {len(layout.keys) + 1}")
    out += [f"local {slot} = ARGV[{i}]" for i, slot in enumerate(layout.args, 1)]
    if layout.arg_rest:
        out.append(f"local {layout.arg_rest} = {len(layout.args) + 1}")
    return out


def _read(path: str) -> str:
    return resources.files(__package__ or "scheduler.store").joinpath("lua", path).read_text()


def _validate() -> str:
    """lib/validate.lua with its tables filled from codec.FIELD_KINDS and the model."""
    from scheduler.model import RunStatus, Trigger
    from scheduler.store.codec import FIELD_KINDS

    tables = {
        "$kinds": ", ".join(f"{name} = '{kind}'" for name, kind in sorted(FIELD_KINDS.items())),
        "$statuses": ", ".join(f"['{s}'] = true" for s in sorted(RunStatus)),
        "$triggers": ", ".join(f"['{t}'] = true" for t in sorted(Trigger)),
    }
    text = _read("lib/validate.lua").rstrip("\n")
    for slot, value in tables.items():
        text = text.replace(slot, value)
    return text


def _piece(name: str) -> str:
    if name == "pending":  # generated: the statuses a run may still leave, from the model
        members = ", ".join(f"['{status}'] = true" for status in sorted(PENDING))
        return (
            f"-- A run is pending while it may still change status.\nlocal pending = {{{members}}}"
        )
    if name == "validate":
        return _validate()
    return _read(f"lib/{name}.lua").rstrip("\n")


@cache
def load(name: str) -> Source:
    """The script `lua/<name>.lua` with its slots bound and its pieces included."""
    text = _read(f"{name}.lua")
    layout, uses, header = parse(name, text)
    lines = text.splitlines()
    parts = ["\n".join(lines[:header]), *_prelude(layout), *map(_piece, uses)]
    parts.append("\n".join(lines[header:]).strip("\n"))
    return Source(name, "\n".join(parts) + "\n", layout)
