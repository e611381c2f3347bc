"""Exceptions people can act on: each names where, what, and what was expected."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job definition."""

    path: str
    line: int
    job: str | None
    message: str
    expected: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: "
        who = f"job {self.job!r}: " if self.job else ""
        text = f"{where}{who}{self.message}"
        if self.expected:
            text += f"\n  {self.expected}"
        return text


class DefinitionError(Exception):
    """Every problem found in a jobs folder, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in job definitions"
        super().__init__(head + ":\n" + "\n".join(str(p) for p in self.problems))


class InvalidOption(ValueError):
    """One option of `@job`/`command` has a bad value; the loader adds path, line and job."""

    def __init__(self, option: str, value: object, why: str, expected: str | None = None) -> None:
        self.option = option
        self.value = value
        self.why = why
        self.expected = expected
        super().__init__(f"invalid {option} {value!r}: {why}")


class JobTimeout(BaseException):
    """Raised in the horse by SIGALRM at the run's deadline.

    A BaseException so that `except Exception` in job code does not swallow it.
    """


class StoreError(Exception):
    """Redis is unreachable or refused an operation; the message names the URL (masked)."""


class StoreUnavailable(StoreError):
    """Redis cannot serve us now; the same call may succeed later (retry with backoff).

    Connection loss, timeouts, a reply cut mid-way, and the server-side refusals that pass:
    OOM (maxmemory reached), READONLY (demoted to a replica), LOADING, BUSY (a long script),
    MASTERDOWN, TRYAGAIN, UNBLOCKED. `what` names the kind in a few words, for one log line
    per outage.
    """

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"{what}: {detail}")


class StoreCorrupt(StoreError):
    """A record in Redis cannot be used (a field that does not parse, a key of the wrong type).

    Retrying does not help: the caller sets the record aside. `record` names it when known.
    """

    def __init__(self, detail: str, record: str | None = None) -> None:
        self.detail = detail
        self.record = record
        super().__init__(f"{record}: {detail}" if record else detail)


class UnknownRun(LookupError):
    """No run with that id exists."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"no run with id {run_id!r}; `sched history` lists recent runs and their ids"
        )
