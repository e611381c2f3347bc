"""Count Redis round trips and commands sent by this process and every child it forks.

redis-py writes each request (one command, or a whole pipeline) with one
`send_packed_command` call and then reads the replies, so the number of those calls is the
number of round trips. The counters live in a shared anonymous mapping, so a forked horse
(RQ's opens its own connection) adds to the same numbers as its parent.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from typing import Any, cast

from redis.connection import AbstractConnection

_FORMAT = "qq"  # round trips, commands


class WireCounter:
    """Patches redis-py's connection class; read `.round_trips` and `.commands` at any time."""

    def __init__(self) -> None:
        self.shared = mmap.mmap(-1, struct.calcsize(_FORMAT))  # MAP_SHARED: survives fork
        self._install()

    def _add(self, trips: int, commands: int) -> None:
        a, b = struct.unpack_from(_FORMAT, self.shared)
        struct.pack_into(_FORMAT, self.shared, 0, a + trips, b + commands)

    def read(self) -> tuple[int, int]:
        a, b = struct.unpack_from(_FORMAT, self.shared)
        return int(a), int(b)

    def _install(self) -> None:
        counter = self
        send_packed = cast(Callable[..., Any], AbstractConnection.send_packed_command)
        send_command = cast(Callable[..., Any], AbstractConnection.send_command)
        pack_commands = cast(Callable[..., Any], AbstractConnection.pack_commands)

        def counted_send_packed(conn: Any, command: Any, check_health: bool = True) -> Any:
            counter._add(1, 0)
            return send_packed(conn, command, check_health)

        def counted_send_command(conn: Any, *args: Any, **kwargs: Any) -> Any:
            counter._add(0, 1)
            return send_command(conn, *args, **kwargs)

        def counted_pack_commands(conn: Any, commands: Any) -> Any:
            commands = list(commands)
            counter._add(0, len(commands))
            return pack_commands(conn, commands)

        setattr(AbstractConnection, "send_packed_command", counted_send_packed)  # noqa: B010
        setattr(AbstractConnection, "send_command", counted_send_command)  # noqa: B010
        setattr(AbstractConnection, "pack_commands", counted_pack_commands)  # noqa: B010
