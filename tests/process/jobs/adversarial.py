"""Jobs that misbehave in every way a worker must survive; the process tests run each one."""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

from scheduler import command, job

SHORT = "0.5s"
NEVER = "@yearly"


@job(NEVER, name="returns")
def returns() -> dict[str, int]:
    print("hello from the horse")
    return {"answer": 42}


@job(NEVER, name="raises")
def raises() -> None:
    raise ValueError("boom")


@job(NEVER, name="raises-huge")
def raises_huge() -> None:
    # Each character is 12 bytes of JSON in the report: far more than a pipe's default 64 KiB.
    raise ValueError("\U0001f600" * 100_000)


@job(NEVER, name="exit-0")
def exit_0() -> None:
    sys.exit(0)


@job(NEVER, name="exit-3")
def exit_3() -> None:
    sys.exit(3)


@job(NEVER, name="os-exit-3")
def os_exit_3() -> None:
    os._exit(3)


@job(NEVER, name="sleeps", timeout=SHORT)
def sleeps() -> None:
    time.sleep(1000)


@job(NEVER, name="swallows-timeout", timeout=SHORT)
def swallows_timeout() -> None:
    for _ in range(1000):
        try:
            time.sleep(1000)
        except BaseException:
            print("caught it, sleeping again")


@job(NEVER, name="holds-gil", timeout=SHORT)
def holds_gil() -> None:
    sum(range(10**12))


@job(NEVER, name="disarms-alarm", timeout=SHORT)
def disarms_alarm() -> None:
    signal.alarm(0)
    time.sleep(1000)


@job(NEVER, name="ignores-alarm", timeout=SHORT)
def ignores_alarm() -> None:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(1000)


@job(NEVER, name="blocks-alarm", timeout=SHORT)
def blocks_alarm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(1000)


@job(NEVER, name="leaves-grandchild")
def leaves_grandchild() -> None:
    child = subprocess.Popen(["sleep", "1000"])
    escaped = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    print(f"grandchild {child.pid}")
    print(f"escaped {escaped.pid}")


@job(NEVER, name="segfaults")
def segfaults() -> None:
    ctypes.string_at(0)


@job(NEVER, name="aborts")
def aborts() -> None:
    os.abort()


@job(NEVER, name="waits", timeout="60s")
def waits() -> None:
    print(f"horse {os.getpid()}", flush=True)
    time.sleep(1000)


@job(NEVER, name="sleeps-a-second")
def sleeps_a_second() -> None:
    time.sleep(1.0)
    print("slept")


@job(NEVER, name="prints-100mb")
def prints_100mb() -> None:
    line = ("x" * 1023 + "\n") * 1024
    for _ in range(100):
        sys.stdout.write(line)
    print("the end")


@job(NEVER, name="leaves-thread")
def leaves_thread() -> None:
    threading.Thread(target=time.sleep, args=(1000,), daemon=False).start()


def _worker() -> int:
    """The worker this run belongs to: the nearest ancestor titled `sched worker`."""
    pid = os.getppid()
    while pid > 1:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if fh.read().startswith(b"sched worker"):
                return pid
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return os.getppid()


@job(NEVER, name="terminates-worker")
def terminates_worker() -> None:
    os.kill(_worker(), signal.SIGTERM)
    time.sleep(0.3)


@job(NEVER, name="returns-object")
def returns_object() -> object:
    return object()


command("cmd-exit-7", NEVER, ["sh", "-c", "echo seven; exit 7"])
command("cmd-sleeps", NEVER, ["sleep", "1000"], timeout=SHORT)
command("cmd-missing", NEVER, ["/nonexistent/program"])
# A program's environment and its ignored signals (SigIgn), as the kernel holds them.
command("cmd-env", NEVER, ["sh", "-c", "env; cat /proc/self/status"])


def _raise_in_parent(signum: int, frame: object) -> None:
    raise RuntimeError("a job module's signal handler raised")


# Imported into the worker parent: a handler that raises while the parent waits.
signal.signal(signal.SIGUSR1, _raise_in_parent)


@job(NEVER, name="prints-env")
def prints_env() -> None:
    for name in ("SCHED_RUN_ID", "SCHED_JOB", "SCHED_ATTEMPT", "SCHED_REDIS_URL"):
        print(f"{name}={os.environ.get(name, '-')}")
