"""The few fields of runs that the strips and timelines draw, read once per final run.

A run that reached a final status never changes what is drawn of it (a late report is kept
beside the record, never over it), so its summary is kept here and only new and unfinished
runs are read again: a page over 50,000 runs reads their ids (one reply) and the few that
changed, not 50,000 hashes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from scheduler.store import RunSummary, Store

# Summaries kept at most (about 200 bytes each); the oldest half goes when it is reached.
LIMIT = 400_000


class Summaries:
    """Read-through cache of RunSummary records of final runs, shared by request threads."""

    def __init__(self, store: Store, limit: int = LIMIT) -> None:
        self.store = store
        self.limit = limit
        self._final: dict[str, RunSummary] = {}
        self._strips: dict[str, tuple[tuple[str, str, int], Any, RunSummary | None]] = {}
        self._lock = threading.Lock()

    def get(self, ids: Sequence[str]) -> list[RunSummary]:
        """The summaries of these ids that still have a record, in the order given."""
        final = self._final
        missing = [run_id for run_id in ids if run_id not in final]
        fresh: dict[str, RunSummary] = {}
        if missing:
            for summary in self.store.summaries(missing):
                if summary is not None:
                    fresh[summary.id] = summary
            with self._lock:
                for run_id, summary in fresh.items():
                    if summary.status.final:
                        final[run_id] = summary
                if len(final) > self.limit:
                    for run_id in list(final)[: len(final) // 2]:
                        del final[run_id]
        out = []
        for run_id in ids:
            summary = final.get(run_id) or fresh.get(run_id)
            if summary is not None:
                out.append(summary)
        return out

    def strip(
        self,
        job: str,
        head: Sequence[str],
        now_ms: int,
        draw: Callable[[str, Sequence[RunSummary], int], Any],
    ) -> tuple[Any, RunSummary | None]:
        """A job's strip of its newest runs (ids `head`, newest first) drawn by `draw`, and
        its newest run. Drawn again only when the ids changed or a run was unfinished."""
        key = (head[0], head[-1], len(head)) if head else ("", "", 0)
        kept = self._strips.get(job)
        if kept is not None and kept[0] == key:
            return kept[1], kept[2]
        runs = self.get(list(reversed(head)))
        picture = draw(job, runs, now_ms)
        last = runs[-1] if runs else None
        if all(run.status.final for run in runs):
            with self._lock:
                self._strips[job] = (key, picture, last)
        return picture, last

    def recent(self, jobs: Sequence[str], count: int) -> dict[str, list[RunSummary]]:
        """The newest `count` runs of each job, oldest first; jobs without runs left out."""
        heads = self.store.newest_ids(jobs, count)
        runs = self.get([run_id for head in heads for run_id in reversed(head)])
        out: dict[str, list[RunSummary]] = {}
        for summary in runs:
            out.setdefault(summary.id.split("@", 1)[0], []).append(summary)
        return out

    def between(self, job: str, since: datetime, until: datetime, limit: int) -> list[RunSummary]:
        """The job's runs scheduled in [since, until], oldest first, the newest `limit`."""
        ids = self.store.newest_ids([job], limit, since, until)[0]
        ids.reverse()
        return self.get(ids)
