"""The port between sched and its storage: every operation, typed records in and out.

Callers see `Run`, `Claimed`, `Enqueued`, `Fire`, `Heartbeat`, `RunSummary` and the package's
errors only: StoreUnavailable when the storage cannot serve now (retry with backoff),
StoreCorrupt for a record that cannot be used, UnknownRun for an id with no record. Each
transition is one call (one round trip). `Store(url, ...)` opens the Redis implementation,
as `pathlib.Path(...)` gives a `PosixPath`; a subclass implements every method.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from scheduler.model import KillCause, Overlap, Run, RunStatus, Trigger
from scheduler.policy import Retry, RunPolicy
from scheduler.store.keys import DEFAULT_NAMESPACE
from scheduler.store.records import Claimed, Enqueued, Fire, Heartbeat, Retention, RunSummary


class Store:
    """Typed operations over one deployment's storage (one Redis database and namespace)."""

    url: str
    namespace: str
    # The longest a heartbeat may wait on the storage (workers plan their waits with it).
    heartbeat_timeout_s: float

    def __new__(
        cls,
        url: str,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        socket_timeout_s: float = 10.0,
        clock_gap_s: float = 5.0,
    ) -> Store:
        if cls is Store:
            from scheduler.store.redis_store import RedisStore

            cls = RedisStore
        return object.__new__(cls)

    # -- connection ----------------------------------------------------------------------

    def describe(self) -> str:
        """Where the data lives, with any password masked."""
        raise NotImplementedError

    def ping(self) -> None:
        """Check that the storage answers, lets us use our keys and keeps them.

        StoreUnavailable when it cannot be reached now, StoreError when it is set up wrong.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Close the connections."""
        raise NotImplementedError

    # -- scheduling ----------------------------------------------------------------------

    def enqueue(
        self,
        *,
        run_id: str,
        job: str,
        scheduled_for: datetime,
        queue: str,
        overlap: Overlap = Overlap.SKIP,
        trigger: Trigger = Trigger.SCHEDULE,
        attempt: int = 1,
        timeout_s: float | None = None,
        advance_last_fire: bool = True,
        outcome: RunStatus = RunStatus.QUEUED,
        reason: str = "",
        policy: RunPolicy | None = None,
    ) -> Enqueued:
        """Create the run for one fire (once per id) and queue it, skip it or record it missed.

        `policy` is stored on the run for later transitions (retries, misfire grace). With
        overlap `queue` or `replace` the job's active runs are read first and re-checked
        atomically, retrying if they changed.
        """
        raise NotImplementedError

    def enqueue_many(
        self, fires: Sequence[Fire], *, hold_after_empty_s: float = 0.0
    ) -> list[Enqueued]:
        """Enqueue fires in order, in batches of one round trip each.

        Each fire is judged exactly as enqueue() would judge it after the ones before it:
        created at most once per run id, with its overlap policy, pause and last-fire guard.
        With `hold_after_empty_s`, a fire whose overlap policy looks at the job's active runs
        (skip, queue, replace) is held (Enqueued.held_s, nothing written) while Redis may not
        know of runs still running: for that long after the storage was found without its
        epoch mark (restarted empty, flushed; the mark is set then) or after claim_epoch()
        started such a hold. Workers write back the runs they hold within a heartbeat.
        """
        raise NotImplementedError

    def record_missed(
        self,
        job: str,
        fires: Sequence[tuple[str, datetime]],
        *,
        queue: str,
        timeout_s: float | None,
        reason: str,
    ) -> int:
        """Record many (run id, fire) pairs as `missed`; return how many were created."""
        raise NotImplementedError

    def pause(self, job: str) -> bool:
        """Pause a job's schedule (fires are recorded skipped); False if it already was."""
        raise NotImplementedError

    def resume(self, job: str) -> bool:
        """Resume a paused job; False if it was not paused."""
        raise NotImplementedError

    def paused_jobs(self) -> set[str]:
        """The names of paused jobs."""
        raise NotImplementedError

    def claim_epoch(self, hold_s: float = 0.0) -> bool:
        """Mark the storage as holding our data; True if the mark was missing (new or emptied).

        With `hold_s`, a missing mark also starts a hold of fires (see enqueue_many).
        """
        raise NotImplementedError

    def last_fires(self) -> dict[str, datetime]:
        """The newest fire instant enqueued (or recorded) for each job."""
        raise NotImplementedError

    # -- workers -------------------------------------------------------------------------

    def wait_for_run(self, worker: str, queues: Sequence[str], timeout_s: float) -> str | None:
        """Move the next queued run id into the worker's inbox, waiting up to timeout_s."""
        raise NotImplementedError

    def claim(self, worker: str, run_id: str, lease_s: float) -> Claimed | None:
        """Turn a run in the worker's inbox into `running`; None when it is not to be run."""
        raise NotImplementedError

    def refuse(
        self,
        worker: str,
        run_id: str,
        job: str,
        reason: str,
        status: RunStatus = RunStatus.FAILED,
    ) -> bool:
        """End a queued run the worker will not execute, without starting it.

        `status` is FAILED (it cannot run here) or SKIPPED (its job was removed); any other
        is a ValueError. False when the run was no longer queued.
        """
        raise NotImplementedError

    def heartbeat(
        self,
        worker: str,
        lease_s: float,
        run_id: str | None = None,
        horse_pid: int | None = None,
        live: tuple[int, str] | None = None,
        info: Mapping[str, object] | None = None,
    ) -> Heartbeat:
        """Renew the worker's presence and its run's lease, and collect any kill request.

        With `horse_pid`, the horse's pid is recorded on the run (so it can be seen while it
        runs); with `live`, (bytes so far, tail) of its output, for `sched logs -f`; `info`
        updates the worker's own fields (host, pid, queues).
        """
        raise NotImplementedError

    def finish(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
        retry: Retry | None = None,
    ) -> tuple[bool, str]:
        """Record a run's final status; (False, current status) if the worker did not hold it.

        With `retry`, the next attempt is created in the same step, due after its backoff.
        """
        raise NotImplementedError

    def finish_and_take(
        self,
        worker: str,
        run_id: str,
        job: str,
        status: RunStatus,
        duration_s: float,
        fields: Mapping[str, object],
        retry: Retry | None,
        queue: str,
    ) -> tuple[bool, str, str | None]:
        """`finish`, and move the next run id of `queue` into the worker's inbox, in one trip.

        The third value is that id (None when the queue is empty); claim it next, or give it
        back. The id is moved even when the report is refused.
        """
        raise NotImplementedError

    def inbox_head(self, worker: str) -> str | None:
        """The first run id in the worker's inbox (moved from a queue, not claimed yet)."""
        raise NotImplementedError

    def give_back(self, worker: str, run_id: str, queue: str) -> bool:
        """Return a run id this worker moved into its inbox, unclaimed, to the head of `queue`."""
        raise NotImplementedError

    def restore(self, fields: Mapping[str, object], retry: Retry | None = None) -> bool:
        """Re-create a finished run's record from a worker's copy (after the storage lost it).

        Like finish(): the run goes to the ended feed and earns its retry (`retry`, or when
        None the one its stored policy gives). False when a record exists already.
        """
        raise NotImplementedError

    def kill(self, run_id: str, reason: KillCause = KillCause.OPERATOR) -> str:
        """Stop a run: a queued one at once, a running one through its worker's heartbeat.

        Returns the status it had; UnknownRun when there is no such run.
        """
        raise NotImplementedError

    def unregister_worker(self, worker: str) -> None:
        """Remove a worker that is shutting down (its inbox is empty by then)."""
        raise NotImplementedError

    def workers(self) -> list[dict[str, str]]:
        """Live workers with their fields (host, pid, queues, current run, heartbeat)."""
        raise NotImplementedError

    def set_loaded(self, process: str, info: Mapping[str, str], ttl_s: float) -> None:
        """Say which job definitions `process` runs (Definitions.loaded_info()), for ttl_s."""
        raise NotImplementedError

    def loaded(self) -> dict[str, dict[str, str]]:
        """What each live process said it runs (process id -> info); expired ones absent."""
        raise NotImplementedError

    def server_time_ms(self) -> int:
        """The storage's clock, in milliseconds (every host agrees on it)."""
        raise NotImplementedError

    # -- recovery ------------------------------------------------------------------------

    def reap(
        self, lease_s: float, reason: str = "lease expired: its worker stopped renewing it"
    ) -> list[str]:
        """Mark runs whose lease expired `lost` (retrying them per policy); return their ids.

        After the storage was unreachable for a while, nothing is reaped for one `lease_s`,
        so workers that were cut off too have a chance to renew first.
        """
        raise NotImplementedError

    def lose_runs_of(self, worker: str, reason: str) -> list[str]:
        """Mark every run `worker` holds (running, by it) `lost` now: its worker is known dead.

        ended_at is now and the duration runs from its start to now (not to a lease); each
        goes to the ended feed and earns its retry like a reaped run. Returns their ids.
        """
        raise NotImplementedError

    def take_ended(self, count: int = 500) -> list[Run]:
        """Take up to `count` runs from the feed of runs that reached a final status.

        Each id is handed to one caller only, so with several schedulers every run is counted
        and alerted on once.
        """
        raise NotImplementedError

    def running_count(self) -> int:
        """How many runs hold a lease now."""
        raise NotImplementedError

    def promote_due(self) -> int:
        """Queue the retries whose backoff has passed; return how many."""
        raise NotImplementedError

    def recover_inboxes(self) -> int:
        """Requeue runs that dead workers took from a queue but never claimed."""
        raise NotImplementedError

    # -- history -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """The run with this id; UnknownRun when there is none."""
        raise NotImplementedError

    def live_output(self, run_id: str) -> tuple[str, int, str]:
        """(status, bytes written so far, output tail) of a run, for following its output."""
        raise NotImplementedError

    def raw_run(self, run_id: str) -> dict[str, str]:
        """The stored fields of a run as they are (for diagnostics such as late reports)."""
        raise NotImplementedError

    def history(
        self,
        *,
        job: str | None = None,
        statuses: Iterable[RunStatus] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs newest first (by fire time), filtered by job, statuses and a time window."""
        raise NotImplementedError

    def iter_history(
        self,
        *,
        job: str | None = None,
        statuses: Iterable[RunStatus] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 50,
    ) -> Iterator[Run]:
        """Stream runs newest first (by fire time) from the most selective indexes.

        With a job, its index is read; with statuses, their indexes are merged; else all.
        """
        raise NotImplementedError

    def last_runs(self, jobs: Sequence[str]) -> dict[str, Run]:
        """The newest run of each job that has one."""
        raise NotImplementedError

    def queue_depth(self, queue: str) -> int:
        """How many runs wait in a queue."""
        raise NotImplementedError

    def trim(self, jobs: Iterable[str], retention: Retention) -> int:
        """Apply retention to each job's history; return how many runs were forgotten."""
        raise NotImplementedError

    # -- views over many runs --------------------------------------------------------------

    def newest_ids(
        self,
        jobs: Sequence[str],
        count: int,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[list[str]]:
        """The ids of each job's newest `count` runs scheduled in [since, until], newest
        first (one list per job, in the order given)."""
        raise NotImplementedError

    def summaries(self, ids: Sequence[str]) -> list[RunSummary | None]:
        """RunSummary of each id, in the order given; None for a run that is gone."""
        raise NotImplementedError

    def oldest_run_at(self, job: str) -> datetime | None:
        """The fire time of the job's oldest kept run (history before it was trimmed)."""
        raise NotImplementedError

    def status_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        """How many runs of every job have each status, among those scheduled in the window."""
        raise NotImplementedError
