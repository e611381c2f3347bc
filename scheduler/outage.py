"""One process's view of a store outage: a line when it starts, a line when it ends.

Loops that talk to the store report each failure here and sleep for the backoff it returns;
however many calls fail meanwhile, an outage is logged once, saying what failed, since when
and what the process does about it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from scheduler.errors import StoreUnavailable
from scheduler.model import iso


class Outage:
    """Backoff and logging for the store being unavailable to one process."""

    def __init__(
        self, log: logging.Logger, who: str, *, first_s: float = 0.2, max_s: float = 5.0
    ) -> None:
        self.log = log
        self.who = who
        self.first_s = first_s
        self.max_s = max_s
        self.since: datetime | None = None
        self.what = ""
        self.failures = 0
        self._started = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: StoreUnavailable, doing: str) -> float:
        """Note a failed call; the seconds to wait before the next try (doubling, capped)."""
        self.failures += 1
        if self.since is None:
            self.since = datetime.now(UTC)
            self._started = time.monotonic()
            self.what = exc.what
            self.log.warning(
                "%s: Redis unavailable since %s (%s: %s); %s",
                self.who,
                iso(self.since),
                exc.what,
                exc.detail,
                doing,
            )
        elif exc.what != self.what:
            self.what = exc.what
            self.log.warning(
                "%s: Redis still unavailable, now %s: %s", self.who, exc.what, exc.detail
            )
        doubled: float = self.first_s * (1 << min(self.failures - 1, 10))
        return min(doubled, self.max_s)

    def ended(self) -> None:
        """Note a call that succeeded: the outage, if any, is over."""
        if self.since is None:
            return
        self.log.warning(
            "%s: Redis available again after %.1fs (%d failed calls)",
            self.who,
            time.monotonic() - self._started,
            self.failures,
        )
        self.since = None
        self.failures = 0
        self.what = ""
