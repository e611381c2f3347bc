"""Key names: every key sched uses, under one prefix with a hash tag.

The hash tag (`{sched}:` by default) makes every key hash to one Redis Cluster slot, so each
script's keys, all passed in KEYS, may be used together.
"""

from __future__ import annotations

from scheduler.model import RunStatus

DEFAULT_NAMESPACE = "sched"


class Keys:
    """Builds every key the project uses; no other module writes a key string."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.prefix = f"{{{namespace}}}:"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def out(self, run_id: str) -> str:
        """The run's side key: its long texts (output, error, result...), beside its record."""
        return f"{self.prefix}out:{run_id}"

    def queue(self, name: str) -> str:
        return f"{self.prefix}queue:{name}"

    def inbox(self, worker: str) -> str:
        return f"{self.prefix}inbox:{worker}"

    def active(self, job: str) -> str:
        return f"{self.prefix}active:{job}"

    def by_job(self, job: str) -> str:
        return f"{self.prefix}idx:job:{job}"

    def by_status(self, status: RunStatus | str) -> str:
        return f"{self.prefix}idx:status:{status}"

    def worker(self, worker: str) -> str:
        return f"{self.prefix}worker:{worker}"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    @property
    def all_runs(self) -> str:
        return f"{self.prefix}idx:all"

    @property
    def last_fire(self) -> str:
        return f"{self.prefix}last_fire"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def paused(self) -> str:
        return f"{self.prefix}paused"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def clock(self) -> str:
        return f"{self.prefix}clock"

    @property
    def ended(self) -> str:
        return f"{self.prefix}ended"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch"
