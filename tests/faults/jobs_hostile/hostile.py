"""Jobs written as an adversary would: escape the run, forge a status, find the credentials.

Each prints the pids of what it starts ("left <pid>"), so a test can check that none of
them outlives the run.
"""

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from scheduler import job

NEVER = "@yearly"


def _ancestors() -> list[int]:
    found, pid = [], os.getppid()
    while pid > 1:
        found.append(pid)
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def _worker() -> int:
    """The worker process this run belongs to (its parent, or its parent's parent)."""
    for pid in _ancestors():
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if fh.read().startswith(b"sched worker"):
                return pid
    return os.getppid()


def _hide() -> None:
    """Ignore the alarm and SIGTERM, and try to hide in the worker's own process group."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for pid in (_worker(), os.getppid()):
        try:
            os.setpgid(0, os.getpgid(pid))
            print(f"joined group {os.getpgid(pid)}", flush=True)
            break
        except OSError as exc:  # another session: not allowed
            print(f"cannot join the group of {pid}: {exc}", flush=True)
    print(f"left {os.getpid()}", flush=True)


@job(NEVER, name="hides-in-worker-group", timeout="1s")
def hides_in_worker_group() -> None:
    _hide()
    while True:
        time.sleep(1000)


@job(NEVER, name="hides-long", timeout="60s")
def hides_long() -> None:
    _hide()
    while True:
        time.sleep(1000)


@job(NEVER, name="new-session-tree", timeout="20s")
def new_session_tree() -> None:
    # bash in a session of its own, with two children: bash dies first, then they are
    # re-parented to whoever reaps orphans here.
    shell = subprocess.Popen(["bash", "-c", "sleep 600 & sleep 601 & wait"], start_new_session=True)
    print(f"left {shell.pid}", flush=True)
    children: list[str] = []
    deadline = time.monotonic() + 10
    while len(children) < 2 and time.monotonic() < deadline:  # bash has started both
        time.sleep(0.01)
        with open(f"/proc/{shell.pid}/task/{shell.pid}/children") as fh:
            children = fh.read().split()
    for pid in children:
        print(f"left {pid}", flush=True)


def _chain(depth: int) -> None:
    """A chain of `depth` processes, each in a new session, each printing its pid."""
    script = "import os,sys,time\nprint('left', os.getpid(), flush=True)\n"
    script += "time.sleep(600)\n"
    for _ in range(depth - 1):
        script = (
            "import os,subprocess,sys,time\n"
            "print('left', os.getpid(), flush=True)\n"
            f"subprocess.Popen([sys.executable, '-c', {script!r}], start_new_session=True)\n"
            "time.sleep(600)\n"
        )
    subprocess.Popen([sys.executable, "-c", script], start_new_session=True)


@job(NEVER, name="deep-tree", timeout="60s")
def deep_tree() -> None:
    _chain(3)
    print(f"horse {os.getpid()}", flush=True)
    time.sleep(600)


@job(NEVER, name="forges-success", timeout="10s")
def forges_success() -> None:
    forged = (json.dumps({"outcome": "returned", "result": "forged"}) + "\n").encode()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("pipe:") and int(name) > 2:
            try:
                os.write(int(name), forged)
                print(f"forged a report on fd {name}", flush=True)
            except OSError:
                pass
    raise RuntimeError("really failed")


@job(NEVER, name="steals-report-fd", timeout="10s")
def steals_report_fd() -> None:
    folder = os.path.join(tempfile.gettempdir(), "sched-steal-" + os.environ["SCHED_RUN_ID"])
    os.makedirs(folder, exist_ok=True)
    os.closerange(3, 256)
    for i in range(16):  # one of these gets the report's old descriptor number
        os.open(os.path.join(folder, f"file-{i}"), os.O_WRONLY | os.O_CREAT, 0o600)
    print("opened 16 files", flush=True)


SECRET_MARKERS = ("redis://", "rediss://", "unix://", "password")
SECRET_TYPES = ("Redis", "ConnectionPool", "Connection", "UnixDomainSocketConnection", "Store")


def _objects() -> list[str]:
    found = []
    gc.unfreeze()  # objects frozen before the fork are not listed otherwise
    for obj in gc.get_objects():
        name = type(obj).__name__
        module = type(obj).__module__ or ""
        if name in SECRET_TYPES and module.startswith(("redis", "scheduler")):
            found.append(f"object {module}.{name}")
        elif isinstance(obj, dict):
            for value in list(obj.values()):
                if isinstance(value, str) and any(m in value for m in SECRET_MARKERS[:3]):
                    found.append(f"string {value[:80]!r}")
    return found


def _frames() -> list[str]:
    found = []
    frame = sys._getframe()
    while frame is not None:
        for name, value in list(frame.f_locals.items()):
            if type(value).__name__ in SECRET_TYPES:
                found.append(f"frame local {name}: {type(value).__name__}")
        frame = frame.f_back
    return found


def _files() -> list[str]:
    found = []
    for key, value in os.environ.items():
        if key == "SCHED_REDIS_URL" or any(m in value for m in SECRET_MARKERS[:3]):
            found.append(f"environment {key}")
    for path in ("/proc/self/environ", "/proc/self/cmdline"):
        with open(path, "rb") as fh:
            data = fh.read()
        for marker in (b"SCHED_REDIS_URL", b"redis://", b"unix://"):
            if marker in data:
                found.append(f"{path} has {marker.decode()}")
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            try:
                sock = socket.socket(fileno=os.dup(int(name)))
                peer = sock.getpeername()
                sock.detach()
            except OSError:
                peer = "?"
            found.append(f"fd {name} is a socket ({peer!r})")
    return found


@job(NEVER, name="finds-secrets", timeout="20s")
def finds_secrets() -> list[str]:
    found = _objects() + _frames() + _files()
    print(json.dumps(found), flush=True)
    return found


@job(NEVER, name="quick", timeout="10s")
def quick() -> str:
    return "done"


@job(NEVER, name="sleeper", timeout="60s")
def sleeper() -> None:
    print(f"left {os.getpid()}", flush=True)
    time.sleep(60)


def _scan_memory(pid: int) -> list[str]:
    """Look for a store URL in the writable memory of `pid`."""
    found = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if not perms.startswith("rw") or end - start > 256 << 20:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            for marker in (b"unix:///", b"redis://:", b"rediss://:"):  # URLs, not docs
                at = data.find(marker)
                if at >= 0:
                    found.append(f"the worker's memory has {data[at : at + 40]!r}")
    return found[:5]


@job(NEVER, name="reads-worker", timeout="20s")
def reads_worker() -> list[str]:
    """Read the worker's environment, command line and memory through /proc."""
    found = []
    worker = _worker()
    for name in ("environ", "cmdline"):
        try:
            with open(f"/proc/{worker}/{name}", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        for marker in (b"SCHED_REDIS_URL", b"redis://", b"unix://"):
            if marker in data:
                found.append(f"the worker's {name} has {marker.decode()}")
    try:
        found += _scan_memory(worker)
    except OSError:
        pass
    print(json.dumps(found), flush=True)
    return found


@job(NEVER, name="kills-its-parent", timeout="20s")
def kills_its_parent() -> None:
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    print(f"left {child.pid}", flush=True)
    print(f"left {os.getpid()}", flush=True)
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(600)
