"""The fork server: the process that forks a worker's horses, without the worker's secrets.

A worker starts it (`ForkServer.start`) as a fresh interpreter with an environment that holds
no store setting (no `SCHED_*` variable at all), so neither it nor any horse it forks has the
Redis URL, a password, a connection or any object from which one could be read. It loads the
worker's jobs folder itself, forks one ready horse per request and hands the worker that
horse's pidfd and pipe ends over a unix socket (SCM_RIGHTS): the worker writes the order,
reads the output and kills through the pidfd directly, so no hop is added on a run's path.

It is a child subreaper. When a horse exits, it reaps it, kills every other process left in
its tree except the ready horses (`proc.sweep`, repeated until none is left) and only then
sends the worker the horse's wait status and resource usage. When its worker goes away (the
socket reaches end of file, or the kernel's parent-death signal arrives) it kills its whole
tree the same way and exits. Where cgroup v2 is writable, each horse also moves itself into
a cgroup of its own (`RunCgroups`), so what a run leaves is killed at once with `cgroup.kill`
and an out-of-memory kill can be told from other SIGKILLs (`memory.events`).

Messages are JSON objects, one per SOCK_SEQPACKET datagram:
  worker -> server  {"op": "spawn"}
  server -> worker  {"op": "hello", "pid": P}                      once, after loading the jobs
                    {"op": "ready", "pid": P, "report_fits": B}    + fds pidfd, order, out, report
                    {"op": "exit", "pid": P, "status": S, "max_rss_kb": K, "cpu_s": C,
                     "swept": N, "left": M, "oom_kills": O}
                    {"op": "error", "message": "..."}               it cannot go on
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from scheduler import horse, proc
from scheduler.model import JobSpec

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
MESSAGE_LIMIT = 64 * 1024
# How long a worker waits for its fork server to load the jobs folder and say hello.
START_TIMEOUT_S = 120.0
# How long a worker waits for an exit message after the horse's pidfd said it ended: the
# server sweeps the run's leftovers first (bounded by proc.SWEEP_LIMIT_S).
EXIT_TIMEOUT_S = proc.SWEEP_LIMIT_S + 5.0


class ForkServerError(RuntimeError):
    """The fork server could not be started, or stopped answering."""


def scrubbed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a fork server (and so of every horse): no sched setting at all.

    `SCHED_REDIS_URL` holds the store's password; hook URLs may hold tokens; the others say
    where the store and its files are. A run learns its own SCHED_RUN_ID, ... from its order.
    """
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not k.startswith("SCHED_")}


# -- the worker's side ---------------------------------------------------------------------


@dataclass
class Horse:
    """A ready horse, as the worker holds it: its pidfd and the worker's ends of its pipes."""

    pid: int
    pidfd: int
    order_w: int
    out_r: int
    rep_r: int
    # The report pipe holds the largest report: read it after the exit, not while it runs.
    report_fits: bool = False

    def close_order(self) -> None:
        """Close the order pipe: the horse's read sees end of file after the order."""
        if self.order_w >= 0:
            os.close(self.order_w)
            self.order_w = -1

    def close(self) -> None:
        """Close every descriptor the worker holds for this horse."""
        self.close_order()
        for fd in (self.out_r, self.rep_r, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.out_r = self.rep_r = self.pidfd = -1


@dataclass(frozen=True)
class Exit:
    """How a horse ended, from the fork server that reaped it."""

    status: int
    max_rss_kb: int
    cpu_s: float
    swept: int  # other processes of its tree killed after it ended
    left: int  # processes that would not die within the sweep's limit (normally 0)
    oom_kills: int = 0  # processes of its cgroup the kernel killed for want of memory


class ForkServer:
    """The worker's handle on its fork server."""

    def __init__(self, jobs: str | Path) -> None:
        self.jobs = Path(jobs)
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._ready: list[Horse] = []
        self._exits: dict[int, Exit] = {}
        self._handed: set[int] = set()

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until it has loaded the jobs folder."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scheduler.forkserver",
                    "--jobs",
                    str(self.jobs),
                    "--fd",
                    str(theirs.fileno()),
                    "--worker",
                    str(os.getpid()),
                ],
                env=scrubbed_environment(),
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                # Out of the worker's session: a Ctrl-C or a platform's SIGTERM is for the
                # worker, which decides what happens to its runs.
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.sock = ours
        message, fds = self._receive(timeout_s)
        _close_all(fds)
        if message is None or message.get("op") != "hello":
            self.stop()
            raise ForkServerError(_describe_failure(message))

    def request(self) -> None:
        """Ask for one more ready horse (taken later with `take`)."""
        self._send({"op": "spawn"})

    def take(self, timeout_s: float = START_TIMEOUT_S) -> Horse:
        """The next ready horse (requesting one first if none was asked for)."""
        deadline = time.monotonic() + timeout_s
        while not self._ready:
            message, fds = self._receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                _close_all(fds)
                raise ForkServerError(_describe_failure(message))
            self._dispatch(message, fds)
        ready = self._ready.pop(0)
        self._handed.add(ready.pid)
        return ready

    def exit_of(self, pid: int, timeout_s: float = EXIT_TIMEOUT_S) -> Exit | None:
        """The wait status of a horse that ended; None when the server is gone."""
        deadline = time.monotonic() + timeout_s
        while pid not in self._exits:
            message, fds = self._receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                _close_all(fds)
                return None
            self._dispatch(message, fds)
        self._handed.discard(pid)
        return self._exits.pop(pid)

    def forget(self, pid: int) -> None:
        """The worker no longer waits for this horse (dismissed): drop its exit message."""
        self._handed.discard(pid)
        self._exits.pop(pid, None)

    def stop(self, timeout_s: float = proc.SWEEP_LIMIT_S + 5.0) -> None:
        """Close the socket: the server kills every horse and leftover, then exits."""
        for ready in self._ready:
            ready.close()
        self._ready.clear()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None:
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            RunCgroups.left_by(self.process.pid)
            self.process = None

    def _send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            raise ForkServerError("the fork server is not running")
        try:
            self.sock.send(json.dumps(message).encode())
        except OSError as exc:
            raise ForkServerError(f"the fork server is gone ({exc})") from None

    def _receive(self, timeout_s: float) -> tuple[dict[str, Any] | None, list[int]]:
        """One message and the descriptors that came with it; (None, []) on EOF or timeout."""
        if self.sock is None:
            return None, []
        end = time.monotonic() + timeout_s
        while True:
            remaining = end - time.monotonic()
            try:
                ready, _, _ = select.select([self.sock], [], [], max(0.0, remaining))
            except InterruptedError:
                continue
            if not ready:
                return None, []
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, MESSAGE_LIMIT, 4)
            except InterruptedError:
                continue
            except OSError:
                return None, []
            if not data:
                return None, fds
            try:
                message = json.loads(data)
            except ValueError:
                _close_all(fds)
                continue
            return (message if isinstance(message, dict) else {}), fds

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "ready" and len(fds) == 4:
            pidfd, order_w, out_r, rep_r = fds
            pid = int(message["pid"])
            self._ready.append(
                Horse(pid, pidfd, order_w, out_r, rep_r, bool(message.get("report_fits")))
            )
            return
        _close_all(fds)
        if op == "exit":
            pid = int(message["pid"])
            if pid in self._handed:
                self._exits[pid] = Exit(
                    status=int(message["status"]),
                    max_rss_kb=int(message.get("max_rss_kb", 0)),
                    cpu_s=float(message.get("cpu_s", 0.0)),
                    swept=int(message.get("swept", 0)),
                    left=int(message.get("left", 0)),
                    oom_kills=int(message.get("oom_kills", 0)),
                )
        elif op == "error":
            raise ForkServerError(str(message.get("message")))


def _describe_failure(message: dict[str, Any] | None) -> str:
    if message is not None and message.get("op") == "error":
        return f"the fork server stopped: {message.get('message')}"
    return "the fork server exited or stopped answering"


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# -- the server ----------------------------------------------------------------------------


class RunCgroups:
    """One cgroup v2 per live horse, under this process's own cgroup, reused run after run.

    Made only where this process may create cgroups beside itself (root, a delegated systemd
    unit, a container with a cgroup namespace of its own); elsewhere `create` returns None and
    the sweep alone holds. Creating and removing a cgroup costs milliseconds, so a cgroup that
    is empty after its run is kept for a later horse; the horse moves itself in while it waits
    for its order, off the run's path.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.free: list[Path] = []
        self.made: list[Path] = []

    @classmethod
    def create(cls) -> RunCgroups | None:
        """The cgroups of this fork server, or None where cgroup v2 cannot be written."""
        own = proc.own_cgroup()
        if own is None:
            return None
        _remove_stale(own)
        # A nonce: in PID namespaces of their own, two fork servers may have the same pid.
        root = own / f"sched-fork-server-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            root.mkdir()
        except OSError:
            return None
        return cls(root)

    def take(self) -> tuple[Path, int] | None:
        """A cgroup for a new horse and its out-of-memory kill count so far (None: none)."""
        if self.free:
            path = self.free.pop()
        else:
            path = self.root / f"run-{len(self.made) + 1}"
            try:
                path.mkdir()
            except OSError:
                return None
            self.made.append(path)
        return path, _oom_kills(path)

    def settle(self, path: Path, oom_before: int) -> int:
        """After its horse was reaped: kill what is left in it; return its run's OOM kills."""
        if _populated(path):
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1")
            deadline = time.monotonic() + proc.SWEEP_LIMIT_S
            while _populated(path) and time.monotonic() < deadline:
                time.sleep(0.002)
        if not _populated(path):
            proc.unlimit_cgroup_memory(path)  # the next run's horse sets its own limit
            self.free.append(path)  # else left aside: the sweep and `close` try again
        return _oom_kills(path) - oom_before

    def close(self) -> None:
        """Kill everything in these cgroups and remove them."""
        remove_cgroups(self.root)

    @staticmethod
    def left_by(server: int) -> None:
        """Remove what a fork server that was killed outright left (its worker calls this)."""
        own = proc.own_cgroup()
        if own is not None:
            for root in own.glob(f"sched-fork-server-{server}-*"):
                remove_cgroups(root)


def _remove_stale(own: Path) -> None:
    """Remove the empty cgroups of fork servers that were killed outright with their worker."""
    for root in own.glob("sched-fork-server-*"):
        try:
            pid = int(root.name.split("-")[3])
            os.kill(pid, 0)
            continue  # its fork server may still be alive
        except (IndexError, ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        if not _populated(root):
            for path in [*root.glob("run-*"), root]:
                with contextlib.suppress(OSError):
                    path.rmdir()


def remove_cgroups(root: Path) -> None:
    """Kill every process in `root`'s run cgroups and remove them and `root`."""
    runs = [path for path in root.glob("run-*") if path.is_dir()]
    for path in runs:
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + proc.SWEEP_LIMIT_S
    for path in [*runs, root]:
        while True:
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.005)


def _populated(path: Path) -> bool:
    try:
        return "populated 1" in (path / "cgroup.events").read_text()
    except OSError:
        return False


def _oom_kills(path: Path) -> int:
    # Present only where the memory controller is enabled for these cgroups.
    try:
        for line in (path / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _join(path: Path) -> None:
    """In a new horse: move into its run's cgroup (failing that, the sweep still holds)."""
    with contextlib.suppress(OSError):
        (path / "cgroup.procs").write_text(str(os.getpid()))


class Server:
    """The fork server's loop: fork horses on request, reap them, sweep, report exits."""

    def __init__(self, sock: socket.socket, specs: Mapping[str, JobSpec], worker: int) -> None:
        self.sock = sock
        self.specs = specs
        self.worker = worker
        self.horses: set[int] = set()
        self.cgroups = RunCgroups.create()
        # Each live horse's cgroup and that cgroup's OOM kill count when it got it.
        self._cgroup_of: dict[int, tuple[Path, int]] = {}
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(self.sock, select.POLLIN)
        self._poller.register(self._wakeup_r, select.POLLIN)

    def serve(self) -> int:
        """Serve until the worker goes away; then kill the whole tree and return."""
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        try:
            self.send({"op": "hello", "pid": os.getpid()})
            while self._step():
                pass
        finally:
            self.sock.close()
            if self.cgroups is not None:
                self.cgroups.close()
            proc.sweep()
        return 0

    def _step(self) -> bool:
        try:
            # Wake now and then: a worker that died leaves us with a new parent.
            ready = {fd for fd, _ in self._poller.poll(1000)}
        except InterruptedError:
            ready = set()
        if self._wakeup_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup_r, 512)
        if not self._reap():
            return False
        if os.getppid() != self.worker:
            return False
        if self.sock.fileno() in ready:
            return self._handle()
        return True

    def _handle(self) -> bool:
        try:
            data = self.sock.recv(MESSAGE_LIMIT)
        except InterruptedError:
            return True
        except OSError:
            return False
        if not data:
            return False  # the worker closed its end, or died
        try:
            op = json.loads(data).get("op")
        except (ValueError, AttributeError):
            op = None
        if op == "spawn":
            try:
                self._spawn()
            except OSError as exc:  # out of processes or memory; the worker tries again
                self.send({"op": "error", "message": f"cannot fork a horse: {exc}"})
        return True

    def _reap(self) -> bool:
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            if pid not in self.horses:
                continue  # a leftover of a run, re-parented here and already killed
            self.horses.discard(pid)
            oom_kills = 0
            cgroup = self._cgroup_of.pop(pid, None)
            if cgroup is not None and self.cgroups is not None:
                oom_kills = self.cgroups.settle(*cgroup)
            swept, left = proc.sweep(keep=self.horses)
            message = {
                "op": "exit",
                "pid": pid,
                "status": status,
                "max_rss_kb": rusage.ru_maxrss,
                "cpu_s": round(rusage.ru_utime + rusage.ru_stime, 3),
                "swept": swept,
                "left": left,
                "oom_kills": oom_kills,
            }
            if not self.send(message):
                return False

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> bool:
        """Send one message; False when the worker is gone."""
        try:
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds or [])
        except OSError:
            return False
        return True

    def _spawn(self) -> None:
        fds: list[int] = []
        try:
            for _pipe in range(3):
                fds += os.pipe()
        except OSError:
            _close_all(fds)
            raise
        out_r, out_w, rep_r, rep_w, order_r, order_w = fds
        report_fits = False
        with contextlib.suppress(OSError):
            fcntl.fcntl(out_w, F_SETPIPE_SZ, PIPE_SIZE)
            report_fits = fcntl.fcntl(rep_w, F_SETPIPE_SZ, PIPE_SIZE) >= horse.REPORT_LIMIT
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the horse would print this process's buffered lines again
        me = os.getpid()
        cgroup = self.cgroups.take() if self.cgroups is not None else None
        try:
            pid = os.fork()
        except OSError:
            _close_all(fds)
            if cgroup is not None and self.cgroups is not None:
                self.cgroups.free.append(cgroup[0])
            raise
        if pid == 0:  # pragma: no cover - the horse; measured by the process tests
            try:
                # Nothing of the server's stays reachable to the job: its socket to the
                # worker, its wake-up pipe, the worker's ends of the pipes.
                self.sock.close()
                _close_all([self._wakeup_r, self._wakeup_w, out_r, rep_r, order_w])
                if cgroup is not None:
                    _join(cgroup[0])
                horse.serve(self.specs, order_r, out_w, rep_w, me)
            finally:
                os._exit(horse.EXIT_FAILED)  # never back into the server's loop
        _close_all([out_w, rep_w, order_r])
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the horse; whoever is first wins the race
        self.horses.add(pid)
        if cgroup is not None:
            self._cgroup_of[pid] = cgroup
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            _close_all([out_r, rep_r, order_w])
            os.kill(pid, signal.SIGKILL)
            raise
        try:
            ready = {"op": "ready", "pid": pid, "report_fits": report_fits}
            self.send(ready, [pidfd, order_w, out_r, rep_r])
        finally:
            _close_all([pidfd, order_w, out_r, rep_r])


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler that only wakes the loop (through the wake-up pipe)."""


def main(argv: list[str] | None = None) -> int:
    """`python -m scheduler.forkserver --jobs DIR --fd N --worker PID` (started by a worker)."""
    parser = argparse.ArgumentParser(prog="python -m scheduler.forkserver")
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker", type=int, required=True)
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    proc.become_subreaper()
    # Woken (not killed) when the worker dies, so it can still kill its tree.
    proc.die_with_parent(signal.SIGHUP)
    if os.getppid() != args.worker:
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # the worker decides; it tells us by closing
    for sig in (signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, _ignore)
    import setproctitle

    from scheduler.errors import DefinitionError
    from scheduler.loader import load_jobs

    setproctitle.setproctitle(f"sched fork server (worker {args.worker})")
    # A thread name without spaces: CPython 3.12 splits /proc/self/stat at every space and,
    # misreading its thread count, warns on each fork that the process is multi-threaded.
    setproctitle.setthreadtitle("sched-forksrv")
    try:
        specs = load_jobs(args.jobs)
    except DefinitionError as exc:
        Server(sock, {}, args.worker).send({"op": "error", "message": str(exc)})
        return 2
    horse.prepare()
    gc.collect()
    gc.freeze()  # fewer pages touched after fork: each horse's copy-on-write stays cheap
    return Server(sock, specs, args.worker).serve()


if __name__ == "__main__":
    sys.exit(main())
