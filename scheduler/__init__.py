"""sched: a cron replacement for Python teams. Define jobs with `job` and `command`."""

from scheduler.api import command, job
from scheduler.model import RunStatus

__all__ = ["RunStatus", "__version__", "command", "job"]
__version__ = "0.1.0"
