"""sched: a cron replacement for Python teams. Define jobs with `job` and `command`.

The names are imported on first use, so the `sched` command starts without loading the
cron machinery it does not need (`sched --help`, `sched history`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.api import command, job
    from scheduler.model import RunStatus

__all__ = ["RunStatus", "__version__", "command", "job"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("job", "command"):
        from scheduler import api

        return getattr(api, name)
    if name == "RunStatus":
        from scheduler.model import RunStatus

        return RunStatus
    raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
