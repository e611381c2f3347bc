"""Outbound pings: the scheduler's heartbeat, and a job's start/success/fail pings.

A monitor that waits for pings (healthchecks.io, Cronitor, a self-hosted healthchecks) notices
silence, which `on_late` cannot: nothing alerts when every scheduler is down.

- The heartbeat: each scheduler GETs `SCHED_HEARTBEAT_URL` every `SCHED_HEARTBEAT_EVERY`
  (default 1m) from its loop, and only while Redis answered within the last few reaps, so a
  hung loop, a stopped process or a lost Redis all fall silent.
- A job's `ping` option (a healthchecks.io check URL): `<url>/start?rid=<uuid>` when the
  scheduler first sees the run running, `<url>?rid=<uuid>` when its last attempt succeeded,
  `<url>/fail?rid=<uuid>` when it ended failed, timed-out, killed or lost. The rid is a UUID
  derived from the run id (uuid5), the same for the start and the end of one run.

Pings go out from one background thread through a bounded queue, never from the loop, so a
monitor that is down or slow never delays a fire. The scheduler process never forks.
"""

from __future__ import annotations

import http.client
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from scheduler import __version__
from scheduler.durations import parse_duration
from scheduler.errors import InvalidOption
from scheduler.model import Run, RunStatus, format_seconds
from scheduler.options import check_url
from scheduler.urls import mask_url

log = logging.getLogger("sched.pings")

ENV_HEARTBEAT_URL = "SCHED_HEARTBEAT_URL"
ENV_HEARTBEAT_EVERY = "SCHED_HEARTBEAT_EVERY"
DEFAULT_HEARTBEAT_EVERY_S = 60.0
PING_TIMEOUT_S = 10.0
DEFAULT_QUEUE_SIZE = 1000
START, SUCCESS, FAIL = "start", "success", "fail"
FAIL_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KILLED, RunStatus.LOST})
# Start pings already sent, by run id: a run is seen running at every reap until it ends.
_REMEMBERED = 10_000


@dataclass(frozen=True)
class Heartbeat:
    """Where the scheduler's heartbeat goes, and how often."""

    url: str
    every_s: float = DEFAULT_HEARTBEAT_EVERY_S


def heartbeat_from_env(environ: Mapping[str, str] | None = None) -> Heartbeat | None:
    """The heartbeat of SCHED_HEARTBEAT_URL / SCHED_HEARTBEAT_EVERY; InvalidOption if bad."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_HEARTBEAT_URL, "").strip()
    every = env.get(ENV_HEARTBEAT_EVERY, "").strip()
    if not url:
        if every:
            raise InvalidOption(
                ENV_HEARTBEAT_EVERY,
                every,
                f"set without {ENV_HEARTBEAT_URL}",
                f"also set {ENV_HEARTBEAT_URL}=https://hc-ping.com/<uuid>, or unset it",
            )
        return None
    url = check_url(ENV_HEARTBEAT_URL, url)
    every_s = (
        parse_duration(every, option=ENV_HEARTBEAT_EVERY) if every else DEFAULT_HEARTBEAT_EVERY_S
    )
    return Heartbeat(url, every_s)


def run_uuid(run_id: str) -> str:
    """The UUID a run's pings carry as `rid`: the same for every ping of one run, its retries
    included (`job@instant#2` is the second attempt of `job@instant`)."""
    root = run_id.split("#", 1)[0]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sched-run:{root}"))


def ping_url(url: str, event: str, run_id: str) -> str:
    """healthchecks.io's URL for `event` of a run: `<url>/start`, `<url>`, `<url>/fail`."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if event != SUCCESS:
        path += "/" + event
    rid = f"rid={run_uuid(run_id)}"
    query = f"{parts.query}&{rid}" if parts.query else rid
    return urlunsplit(parts._replace(path=path, query=query))


@dataclass(frozen=True)
class _Ping:
    url: str
    what: str  # for the log: "heartbeat", "start ping for run X"


class Pinger:
    """Sends pings from one background thread (started on first use); never raises."""

    def __init__(
        self,
        heartbeat: Heartbeat | None = None,
        *,
        timeout_s: float = PING_TIMEOUT_S,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.heartbeat_config = heartbeat
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Ping | None] = queue.Queue(queue_size)
        self._queue_size = queue_size
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._heartbeat_pending = False
        self._started: OrderedDict[str, None] = OrderedDict()
        # Monitors now failing, by masked URL without the path's tail: one line when a
        # monitor starts failing and one when it answers again, not one per ping.
        self._failing: set[str] = set()
        self._opener = no_redirect_opener()

    # -- what the scheduler loop calls -------------------------------------------------

    def heartbeat(self) -> None:
        """Queue a heartbeat, unless the previous one is still waiting or in flight."""
        if self.heartbeat_config is None:
            return
        with self._lock:
            if self._heartbeat_pending:
                return
            if self._put(_Ping(self.heartbeat_config.url, "heartbeat")):
                self._heartbeat_pending = True

    def run_started(self, url: str, run: Run) -> None:
        """The start ping of a run seen running: once per run id."""
        with self._lock:
            if run.id in self._started:
                return
            self._started[run.id] = None
            if len(self._started) > _REMEMBERED:
                self._started.popitem(last=False)
            self._put(_Ping(ping_url(url, START, run.id), f"start ping for run {run.id}"))

    def run_finished(self, url: str, run: Run) -> None:
        """The success or fail ping of a run's last attempt; nothing for other statuses."""
        if run.status is RunStatus.COMPLETED:
            event = SUCCESS
        elif run.status in FAIL_STATUSES:
            event = FAIL
        else:
            return
        with self._lock:
            self._started.pop(run.id, None)
            self._put(_Ping(ping_url(url, event, run.id), f"{event} ping for run {run.id}"))

    def close(self, timeout_s: float = 5.0) -> bool:
        """Send what is queued, for at most timeout_s; False if some pings were left."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        deadline = time.monotonic() + timeout_s
        try:
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning(
                "pings: some not sent after %s; giving up on them", format_seconds(timeout_s)
            )
            return False
        return True

    # -- the thread ---------------------------------------------------------------------

    def _put(self, ping: _Ping) -> bool:
        """Queue a ping (the lock held); False if closed or full."""
        if self._closed:
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sched-pings", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(ping)
        except queue.Full:
            log.warning(
                "%s to %s dropped: %d pings already waiting",
                ping.what,
                _shown(ping.url),
                self._queue_size,
            )
            return False
        return True

    def _work(self) -> None:
        while True:
            ping = self._queue.get()
            if ping is None:
                return
            try:
                failure = self._get(ping.url)
            except Exception as exc:  # keep the thread alive for the next ping
                failure = f"{type(exc).__name__}: {exc}"
            if ping.what == "heartbeat":
                with self._lock:
                    self._heartbeat_pending = False
            self._report(ping, failure)

    def _report(self, ping: _Ping, failure: str | None) -> None:
        monitor = _monitor(ping.url)
        if failure is None:
            if monitor in self._failing:
                self._failing.discard(monitor)
                log.info("pings: %s answers again", monitor)
            log.debug("%s sent to %s", ping.what, _shown(ping.url))
            return
        if monitor not in self._failing:
            self._failing.add(monitor)
            log.warning(
                "pings: %s to %s failed: %s; further failures of this monitor are not logged "
                "until it answers again",
                ping.what,
                _shown(ping.url),
                failure,
            )

    def _get(self, url: str) -> str | None:
        """GET the URL; None on a 2xx answer, else what went wrong."""
        request = urllib.request.Request(url, headers={"User-Agent": f"sched/{__version__}"})
        return send(self._opener, request, self.timeout_s)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def no_redirect_opener() -> urllib.request.OpenerDirector:
    """An opener that follows no redirect: a monitor or hook URL is called as given, never
    sent (with what it carries) wherever an answer points."""
    return urllib.request.build_opener(_NoRedirect)


def send(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout_s: float
) -> str | None:
    """Send an outbound request (a ping, an alert); None on a 2xx answer, else what went
    wrong, in words that hold no secret."""
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status = int(response.status)
            response.read(1024)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response and its socket
        if 300 <= exc.code < 400:
            return f"answered HTTP {exc.code} (redirects are not followed)"
        return f"answered HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return _reason(exc.reason, timeout_s)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _reason(exc, timeout_s)
    return None if 200 <= status < 300 else f"answered HTTP {status}"


def _reason(reason: object, timeout_s: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {format_seconds(timeout_s)}"
    return str(reason) or type(reason).__name__


def _shown(url: str) -> str:
    """A URL as logged: password masked, query (the rid) kept."""
    try:
        return mask_url(url)
    except ValueError:
        return "<unparsable>"


def _monitor(url: str) -> str:
    """The monitor a ping URL belongs to, as logged: scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
