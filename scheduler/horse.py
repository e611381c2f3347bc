"""The work horse: the forked child that executes one run and exits.

The worker forks it ahead of its run (see `serve`). It puts itself in its own process group,
dies with its parent, resets signal dispositions and sends its output to the parent's bounded
capture; then it waits for its run, arms a real-time timer for the deadline and runs the
function (or execs the program; the timer survives exec). It never touches Redis: it reports
on a pipe with one JSON line and leaves with `os._exit`, so no atexit handler, non-daemon
thread or inherited buffer of the parent can hold it up.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import traceback
from collections.abc import Mapping
from enum import StrEnum
from types import FrameType
from typing import Any, NoReturn

import setproctitle

from scheduler import proc
from scheduler.errors import JobTimeout
from scheduler.model import JobSpec

# Exit codes the parent reads together with the report line.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 124
EXIT_ORPHAN = 125
EXIT_EXEC_FAILED = 127
ERROR_TEXT_LIMIT = 32 * 1024
# No report line is longer: a result of at most ERROR_TEXT_LIMIT bytes of JSON, or an error
# whose type, message and traceback are bounded (at most 12 bytes of JSON per character).
REPORT_LIMIT = 1 << 20
_RESETTABLE = tuple(
    sig for sig in signal.valid_signals() if sig not in (signal.SIGKILL, signal.SIGSTOP)
)
_changed: tuple[int, ...] = ()
# (device, inode) of the report pipe this horse was given: a job may close the descriptor
# and open a file of its own under the same number, which must not receive the report.
_report_pipe: tuple[int, int] | None = None


class Reported(StrEnum):
    """What a horse's report line says happened (its `outcome`); the worker checks it
    against the exit code."""

    RETURNED = "returned"
    """The function returned a JSON value (`result`)."""
    RAISED = "raised"
    """The function raised (`error`)."""
    TIMEOUT = "timeout"
    """JobTimeout at the deadline, caught or not (`error` or `note`)."""
    EXIT = "exit"
    """sys.exit() (`exit_code`)."""
    UNUSABLE = "unusable"
    """A result that is not JSON or too large (`reason`)."""
    EXEC_FAILED = "exec-failed"
    """The program could not be executed (`error`)."""


def _nondefault() -> tuple[int, ...]:
    # Python knows every disposition (None: set outside Python); only change what differs.
    return tuple(sig for sig in _RESETTABLE if signal.getsignal(sig) is not signal.SIG_DFL)


def prepare() -> None:
    """In the parent, once its handlers are set: note which signals a horse must reset."""
    global _changed
    _changed = _nondefault()


def serve(
    specs: Mapping[str, JobSpec], order_fd: int, out_fd: int, report_fd: int, parent: int
) -> NoReturn:
    """Get ready for a run before there is one, wait for the parent's order, execute it; exit.

    The worker forks the horse of its next run while the current one works, so the fork and
    this set-up are off the path from claim to the job's first line. The order is one JSON
    object on `order_fd`: the job's name, its timeout and the run's environment. End of file
    without an order means the worker no longer needs this horse.
    """
    global _report_pipe
    try:
        _report_pipe = _identity(report_fd)
        _detach(parent)
        _redirect(out_fd)
        setproctitle.setproctitle("sched horse (ready)")
        setproctitle.setthreadtitle("sched-horse")  # no spaces: see forkserver.main
        _before_order()
        order = _await_order(order_fd)
        if order is None:
            os._exit(EXIT_OK)
        spec = specs[order["job"]]
        timeout_s = float(order["timeout_s"])
        env = {str(k): str(v) for k, v in order["env"].items()}
    except BaseException as exc:  # noqa: BLE001 - a horse must always exit with a report
        _report(report_fd, {"outcome": Reported.RAISED, "error": describe_exception(exc)})
        _exit(EXIT_FAILED)
    run(spec, timeout_s, report_fd, env)


# The names of a run's environment, in the order worker._run_env gives their values; set
# empty while the horse waits.
RUN_ENV = ("SCHED_RUN_ID", "SCHED_JOB", "SCHED_ATTEMPT", "SCHED_TRIGGER", "SCHED_SCHEDULED_FOR")


def _before_order() -> None:
    """What needs no order, done while the horse waits for it: after the order, the first
    write to each page the horse still shares with its fork server costs a copy-on-write
    fault, and these writes (the environment's arrays and dict, signal handler objects) are
    most of the set-up between the order and the job's first line."""
    os.environ.pop("SCHED_REDIS_URL", None)
    os.environ.update(dict.fromkeys(RUN_ENV, ""))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python program; _exec resets it


def order_bytes(job: str, timeout_s: float, env: Mapping[str, str]) -> bytes:
    """The parent's order to a waiting horse (read by `_await_order`)."""
    return json.dumps({"job": job, "timeout_s": timeout_s, "env": dict(env)}).encode()


def _await_order(order_fd: int) -> dict[str, Any] | None:
    chunks = []
    while True:
        try:
            chunk = os.read(order_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    os.close(order_fd)
    if not chunks:
        return None
    order = json.loads(b"".join(chunks))
    return order if isinstance(order, dict) else None


def run(
    spec: JobSpec,
    timeout_s: float,
    report_fd: int,
    env: Mapping[str, str] | None = None,
) -> NoReturn:
    """Execute `spec` in this (ready) horse and exit; never returns.

    `env` is added to the environment (SCHED_RUN_ID, SCHED_JOB, SCHED_ATTEMPT, ...), so a job
    or program can tell which run and attempt it is.
    """
    try:
        setproctitle.setproctitle(f"sched horse {(env or {}).get('SCHED_RUN_ID', spec.name)}")
        setproctitle.setthreadtitle("sched-horse")
        # The job gets to know its run, not the worker's Redis credentials.
        os.environ.pop("SCHED_REDIS_URL", None)
        os.environ.update(env or {})
        for name in RUN_ENV:
            if os.environ.get(name) == "" and name not in (env or {}):
                del os.environ[name]  # a placeholder of _before_order the order did not fill
        if spec.memory_limit_bytes is not None:
            proc.limit_memory(spec.memory_limit_bytes)
        if spec.argv is not None:
            _exec(spec.argv, timeout_s, report_fd)
        _run_function(spec, timeout_s, report_fd)
    except BaseException as exc:  # noqa: BLE001 - a horse must always exit with a report
        timed_out = isinstance(exc, JobTimeout)
        outcome = Reported.TIMEOUT if timed_out else Reported.RAISED
        _report(report_fd, {"outcome": outcome, "error": describe_exception(exc)})
        _exit(EXIT_TIMEOUT if timed_out else EXIT_FAILED)


def _detach(parent: int) -> None:
    os.setpgid(0, 0)
    proc.die_with_parent(signal.SIGKILL)
    # The parent may have died before prctl took effect; then nobody would ever kill us.
    if os.getppid() != parent:
        os._exit(EXIT_ORPHAN)
    signal.set_wakeup_fd(-1)  # the parent's wake-up pipe is not ours to write to
    for sig in _changed or _nondefault():
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _redirect(out_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    for stream in (sys.stdout, sys.stderr):
        # Line by line, so a followed log shows output as it happens.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


def _exec(argv: tuple[str, ...], timeout_s: float, report_fd: int) -> NoReturn:
    # SIGALRM stays at its default action, so the program is terminated at the deadline;
    # SIGPIPE goes back to it (_before_order ignored it; an ignored signal survives exec).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _report(
            report_fd,
            {
                "outcome": Reported.EXEC_FAILED,
                "error": {
                    "type": type(exc).__name__,
                    "message": f"cannot execute {argv[0]!r}: {exc.strerror}",
                    "traceback": "",
                },
            },
        )
        _exit(EXIT_EXEC_FAILED)


class _Alarm:
    """SIGALRM handler: the first raises JobTimeout, any later one ends the horse at once."""

    def __init__(self, report_fd: int, second_after_s: float) -> None:
        self.report_fd = report_fd
        self.second_after_s = second_after_s
        self.fired = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:
            # The job swallowed JobTimeout and kept going: stop it here.
            _report(self.report_fd, {"outcome": Reported.TIMEOUT, "note": "JobTimeout was caught"})
            _exit(EXIT_TIMEOUT)
        self.fired = True
        signal.setitimer(signal.ITIMER_REAL, self.second_after_s)
        raise JobTimeout("the run's deadline passed")


def _run_function(spec: JobSpec, timeout_s: float, report_fd: int) -> NoReturn:
    assert spec.func is not None
    alarm = _Alarm(report_fd, second_after_s=min(1.0, max(timeout_s / 10, 0.05)))
    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python program
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        result = spec.func()
    except JobTimeout as exc:
        _report(report_fd, {"outcome": Reported.TIMEOUT, "error": describe_exception(exc)})
        _exit(EXIT_TIMEOUT)
    except SystemExit as exc:
        _disarm()
        code = _exit_code(exc.code)
        _report(report_fd, {"outcome": Reported.EXIT, "exit_code": code})
        _exit(code)
    except BaseException as exc:  # noqa: BLE001 - reported as `failed`
        _disarm()
        if alarm.fired:
            _report(report_fd, {"outcome": Reported.TIMEOUT, "error": describe_exception(exc)})
            _exit(EXIT_TIMEOUT)
        _report(report_fd, {"outcome": Reported.RAISED, "error": describe_exception(exc)})
        _exit(EXIT_FAILED)
    _disarm()
    if alarm.fired:
        _report(report_fd, {"outcome": Reported.TIMEOUT, "note": "returned after its deadline"})
        _exit(EXIT_TIMEOUT)
    _report_result(report_fd, result)
    _exit(EXIT_OK)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _report_result(report_fd: int, result: object) -> None:
    try:
        encoded = json.dumps(result)
    except (TypeError, ValueError) as exc:
        _report(
            report_fd,
            {"outcome": Reported.UNUSABLE, "reason": f"returned {type(result).__name__}: {exc}"},
        )
        _exit(EXIT_FAILED)
    if len(encoded) > ERROR_TEXT_LIMIT:
        _report(
            report_fd,
            {
                "outcome": Reported.UNUSABLE,
                "reason": f"returned {len(encoded)} bytes of JSON; the limit is {ERROR_TEXT_LIMIT}",
            },
        )
        _exit(EXIT_FAILED)
    _report(report_fd, {"outcome": Reported.RETURNED, "result": result})


def describe_exception(exc: BaseException) -> dict[str, str]:
    """Type, message and traceback of an exception, each bounded."""
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > ERROR_TEXT_LIMIT:
        tb = "...\n" + tb[-ERROR_TEXT_LIMIT:]
    return {
        "type": type(exc).__qualname__[:1000],
        "message": str(exc)[:ERROR_TEXT_LIMIT],
        "traceback": tb,
    }


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISFIFO(st.st_mode) else None


def _report(report_fd: int, message: dict[str, Any]) -> None:
    if _report_pipe is not None and _identity(report_fd) != _report_pipe:
        return  # the job replaced the descriptor; the exit status still speaks
    data = (json.dumps(message) + "\n").encode()
    if len(data) > REPORT_LIMIT:  # e.g. an unusable result's unbounded type name
        note = f"a report of {len(data)} bytes was cut to its outcome"
        data = (json.dumps({"outcome": message.get("outcome"), "note": note}) + "\n").encode()
    try:
        while data:
            written = os.write(report_fd, data)
            data = data[written:]
    except OSError:
        pass  # The parent is gone or stopped reading; the exit status still speaks.


def _exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a broken stream must not keep the horse alive
            pass
    os._exit(code)
