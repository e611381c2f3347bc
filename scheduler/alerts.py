"""Alert hooks: a job's `on_failure` / `on_late` webhook or command, delivered off the caller.

A hook is an http(s) URL (POSTed a JSON body) or a command (argv, no shell; the same JSON on
stdin). A job's own hook wins; jobs that set none use the global one from `SCHED_ON_FAILURE` /
`SCHED_ON_LATE`. Deliveries go through a bounded queue to one background thread, so the
worker and the scheduler never wait for, or fail because of, someone else's endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from scheduler import __version__
from scheduler.errors import InvalidOption
from scheduler.model import PENDING, JobSpec, Run, RunStatus, format_seconds
from scheduler.options import ENV_ON_FAILURE, ENV_ON_LATE, check_hook, hook_from_env
from scheduler.pings import Heartbeat, Pinger, heartbeat_from_env, no_redirect_opener, send
from scheduler.urls import mask_url

log = logging.getLogger("sched.alerts")

Hook = str | tuple[str, ...]
"""An http(s) URL, or a command as argv."""

FAILURE = "failure"
LATE = "late"
FAILURE_STATUSES = frozenset(
    {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KILLED, RunStatus.LOST}
)
HOOK_TIMEOUT_S = 10.0  # how long a webhook or hook command may take (not a job's timeout)
DEFAULT_QUEUE_SIZE = 100

# What a hook command gets from the worker's environment: enough to find programs and speak
# the locale, nothing else. The worker's environment holds SCHED_REDIS_URL (with its password)
# and whatever the deployment put there; a notification script needs none of it.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")
# Alerts already queued, by (event, run id, attempt): callers poll for lateness and several
# code paths may see one failure, but a person should get one message. Bounded so that a
# long-lived worker does not grow without limit.
_REMEMBERED = 10_000
_STDERR_TAIL = 400


def is_late(spec: JobSpec, run: Run, now: datetime) -> str | None:
    """Why `run` is late at `now` (not started within misfire_grace, or over expected_duration)."""
    if run.status not in PENDING:
        return None
    if run.started_at is None:
        if spec.misfire_grace_s is None:
            return None
        waited = (now - run.scheduled_for).total_seconds()
        if waited <= spec.misfire_grace_s:
            return None
        return (
            f"late: not started {format_seconds(round(waited, 1))} after its fire time "
            f"(misfire_grace {format_seconds(spec.misfire_grace_s)})"
        )
    if spec.expected_duration_s is None:
        return None
    ran = (now - run.started_at).total_seconds()
    if ran <= spec.expected_duration_s:
        return None
    return (
        f"late: still running after {format_seconds(round(ran, 1))}, past its expected "
        f"duration of {format_seconds(spec.expected_duration_s)}"
    )


def describe_hook(hook: Hook) -> str:
    """The hook as it may be logged: the URL, or the argv, with any URL password masked."""
    if isinstance(hook, str):
        return _masked(hook)
    # An argument may be a URL with a password too (curl https://user:pw@...).
    return repr([_masked(arg) for arg in hook])


def _masked(text: str) -> str:
    try:
        return mask_url(text)
    except ValueError:  # not parsable as a URL (an unclosed '['): show nothing of it
        return "<unparsable>"


def payload(event: str, run: Run, why: str | None = None) -> dict[str, Any]:
    """The JSON body of an alert: event, job, the run record, and for `late` the reason."""
    body: dict[str, Any] = {"event": event, "job": run.job, "run": run.to_json()}
    if why is not None:
        body["reason"] = why
    return body


@dataclass(frozen=True)
class _Delivery:
    event: str
    hook: Hook
    run: Run
    why: str | None


class Alerter:
    """Sends a job's on_failure/on_late alerts from one background thread; never raises."""

    def __init__(
        self,
        specs: Mapping[str, JobSpec],
        *,
        global_on_failure: str | Sequence[str] | None = None,
        global_on_late: str | Sequence[str] | None = None,
        timeout_s: float = HOOK_TIMEOUT_S,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        pinger: Pinger | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"alert timeout_s must be greater than zero, not {timeout_s!r}")
        if queue_size < 1:
            raise ValueError(f"alert queue_size must be 1 or more, not {queue_size!r}")
        self.specs = specs
        # The scheduler's heartbeat and jobs' pings (scheduler/pings.py): the scheduler loop
        # sends them; they have a thread of their own, so a down monitor delays no alert.
        self.pinger = pinger
        self.timeout_s = float(timeout_s)
        self.global_hooks: dict[str, Hook | None] = {
            FAILURE: _optional_hook("global on_failure", global_on_failure),
            LATE: _optional_hook("global on_late", global_on_late),
        }
        self._queue_size = queue_size
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._sent: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        # No redirects: urllib would turn the POST into a GET without its body, and would
        # send the Authorization header on to wherever the redirect points.
        self._opener = no_redirect_opener()

    # -- what the worker and the scheduler call ----------------------------------------

    def run_finished(self, run: Run) -> None:
        """Alert `on_failure` if the run ended failed, timed-out, killed or lost; else nothing."""
        if run.status in FAILURE_STATUSES:
            self._submit(FAILURE, run, None)

    def run_late(self, run: Run, why: str) -> None:
        """Alert `on_late` for a run that is late (see is_late); once per run and attempt."""
        self._submit(LATE, run, why)

    def hook_for(self, job: str, event: str) -> Hook | None:
        """The hook an `event` ('failure' or 'late') of `job` goes to: the job's, else global."""
        spec = self.specs.get(job)
        own = None if spec is None else {FAILURE: spec.on_failure, LATE: spec.on_late}.get(event)
        return own if own is not None else self.global_hooks.get(event)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop taking alerts and deliver the queued ones (and pings); False if some were
        still pending."""
        deadline = time.monotonic() + timeout_s
        sent = self._close(timeout_s)
        if self.pinger is not None:
            sent = self.pinger.close(max(0.0, deadline - time.monotonic())) and sent
        return sent

    def _close(self, timeout_s: float) -> bool:
        with self._lock:
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
        if thread is None or not thread.is_alive():
            return True
        deadline = time.monotonic() + timeout_s
        try:
            # Behind everything queued: the thread stops after delivering all of it.
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            marker = 1
        except queue.Full:
            marker = 0
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            # The delivery in flight is undelivered too; the stop marker is no alert.
            pending = self._queue.qsize() - marker + 1
            log.warning(
                "alerts: %d undelivered after %s; giving up on them",
                pending,
                format_seconds(timeout_s),
            )
            return False
        return True

    def __enter__(self) -> Alerter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queueing ---------------------------------------------------------------------

    def _submit(self, event: str, run: Run, why: str | None) -> None:
        try:
            hook = self.hook_for(run.job, event)
            if hook is None:
                return
            key = (event, run.id, run.attempt)
            with self._lock:
                if self._closed:
                    log.warning("%s alert for run %s dropped: alerts are closed", event, run.id)
                    return
                if key in self._sent:
                    return
                self._start_thread()
                try:
                    self._queue.put_nowait(_Delivery(event, hook, run, why))
                except queue.Full:
                    log.warning(
                        "%s alert for run %s to %s dropped: %d alerts already waiting",
                        event,
                        run.id,
                        describe_hook(hook),
                        self._queue_size,
                    )
                    return
                self._sent[key] = None
                if len(self._sent) > _REMEMBERED:
                    self._sent.popitem(last=False)
        except Exception:  # an alert must never break the run it is about
            log.exception("%s alert for run %s not sent", event, run.id)

    def _start_thread(self) -> None:
        """Start the delivery thread on first use, and again in a forked child."""
        # Started lazily: a process with no hooks (or no failures) never has the thread, and a
        # forked child (threads do not survive fork) gets a fresh queue and thread of its own.
        if self._thread is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._queue = queue.Queue(self._queue_size)
        self._thread = threading.Thread(
            target=self._work, args=(self._queue,), name="sched-alerts", daemon=True
        )
        self._thread.start()

    def _work(self, deliveries: queue.Queue[_Delivery | None]) -> None:
        while True:
            item = deliveries.get()
            if item is None:
                return
            try:
                self._deliver(item)
            except Exception:  # keep the thread alive for the next alert
                log.exception(
                    "%s alert for run %s to %s failed",
                    item.event,
                    item.run.id,
                    describe_hook(item.hook),
                )

    # -- delivery (on the background thread) ------------------------------------------

    def _deliver(self, item: _Delivery) -> None:
        body = json.dumps(payload(item.event, item.run, item.why), default=str).encode()
        if isinstance(item.hook, str):
            failure = self._post(item.hook, body)
        else:
            failure = self._run_command(item.hook, body, _command_env(item))
        target = describe_hook(item.hook)
        if failure is None:
            log.info("%s alert for run %s sent to %s", item.event, item.run.id, target)
        else:
            log.warning(
                "%s alert for run %s to %s failed: %s", item.event, item.run.id, target, failure
            )

    def _post(self, url: str, body: bytes) -> str | None:
        """POST the body; None on a 2xx answer, else what went wrong (no secrets in it)."""
        return send(self._opener, _request(url, body), self.timeout_s)

    def _run_command(self, argv: tuple[str, ...], body: bytes, env: dict[str, str]) -> str | None:
        """Run the hook command with the body on stdin; None on exit 0, else what went wrong."""
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    # A file, not a pipe: a chatty hook cannot block or grow our memory.
                    stderr=errors,
                    env=env,
                    close_fds=True,
                    # Its own session: the terminal's Ctrl-C is not for it, and a timeout
                    # kills whatever it started too.
                    start_new_session=True,
                )
            except OSError as exc:
                return f"could not start: {exc}"
            with proc:
                return self._wait_command(proc, body, errors)

    def _wait_command(
        self, proc: subprocess.Popen[bytes], body: bytes, errors: IO[bytes]
    ) -> str | None:
        try:
            proc.communicate(body, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"timed out after {format_seconds(self.timeout_s)}; killed"
        code = proc.returncode
        if code == 0:
            return None
        if code < 0:
            what = f"killed by {signal.Signals(-code).name}"
        else:
            what = f"exited with {code}"
        tail = _tail(errors)
        return f"{what}: {tail}" if tail else what


def _optional_hook(option: str, value: str | Sequence[str] | None) -> Hook | None:
    return None if value is None else check_hook(option, value)


def _request(url: str, body: bytes) -> urllib.request.Request:
    """A POST of body to url; credentials in the URL become a Basic Authorization header."""
    headers = {"Content-Type": "application/json", "User-Agent": f"sched/{__version__}"}
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # urllib does not use userinfo itself: it would try to connect to "user:pw@host".
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def _command_env(item: _Delivery) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        SCHED_EVENT=item.event,
        SCHED_RUN_ID=item.run.id,
        SCHED_JOB=item.run.job,
        SCHED_STATUS=str(item.run.status),
        SCHED_REASON=item.why or item.run.reason or "",
    )
    return env


def _tail(errors: IO[bytes]) -> str:
    """The last few hundred bytes the command wrote to stderr, on one line."""
    size = errors.seek(0, os.SEEK_END)
    errors.seek(max(0, size - _STDERR_TAIL))
    text = errors.read().decode("utf-8", "replace")
    return " ".join(text.split())


def from_env(
    specs: Mapping[str, JobSpec],
    *,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = HOOK_TIMEOUT_S,
) -> Alerter:
    """An Alerter for `specs` with the global hooks of SCHED_ON_FAILURE and SCHED_ON_LATE, and
    a Pinger with the heartbeat of SCHED_HEARTBEAT_URL / SCHED_HEARTBEAT_EVERY."""
    return Alerter(
        specs,
        global_on_failure=hook_from_env(ENV_ON_FAILURE, environ),
        global_on_late=hook_from_env(ENV_ON_LATE, environ),
        timeout_s=timeout_s,
        pinger=Pinger(_heartbeat(environ)),
    )


def _heartbeat(environ: Mapping[str, str] | None) -> Heartbeat | None:
    # The commands check these settings before they start anything (exit 2); a process
    # started some other way logs the problem rather than crash-looping on it.
    try:
        return heartbeat_from_env(environ)
    except InvalidOption as exc:
        log.error("heartbeat off: %s; expected %s", exc, exc.expected)
        return None
