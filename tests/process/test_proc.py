"""The sweep of a process tree, with real processes that change session and double-fork."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from scheduler import proc
from tests.helpers import alive, wait_for

# A process that starts a session of its own, double-forks a child that does the same and
# prints both pids: neither is in our process group or session any more.
ESCAPER = """
import os, subprocess, sys, time
os.setsid()
child = subprocess.Popen([sys.executable, "-c", "import os,time; os.setsid(); time.sleep(600)"])
print(os.getpid(), child.pid, flush=True)
time.sleep(600)
"""

SWEEPER = """
import json, os, subprocess, sys, time
from scheduler import proc
proc.become_subreaper()
keep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
middle = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True
)
pids = [int(p) for p in middle.stdout.readline().split()]
middle.stdout.close()
middle.kill()  # its children are re-parented here, in sessions of their own
middle.wait()
killed, left = proc.sweep(keep={keep.pid})
print(json.dumps({"pids": pids, "killed": killed, "left": left, "keep": keep.pid,
                  "keep_alive": keep.poll() is None, "rest": proc.descendants_of(os.getpid())}))
keep.kill()
keep.wait()
"""


def test_sweep_kills_every_descendant_but_the_kept_ones() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SWEEPER, ESCAPER],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    result = json.loads(out)
    # The middle process was killed by hand; its child, re-parented, by the sweep.
    assert result["killed"] == 1 and result["left"] == 0
    assert result["keep_alive"] and result["rest"] == [result["keep"]]
    assert not [pid for pid in result["pids"] if alive(pid)]


def test_descendants_of_sees_through_sessions() -> None:
    child = subprocess.Popen([sys.executable, "-c", ESCAPER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]
        assert pids[0] == child.pid
        assert set(pids) <= set(proc.descendants_of(os.getpid()))
        assert not set(pids) & set(proc.descendants_of(os.getpid(), keep={child.pid}))
    finally:
        for pid in [child.pid, *proc.descendants_of(child.pid)]:
            os.kill(pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_send_goes_through_the_pidfd() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pidfd = os.pidfd_open(child.pid)
    try:
        assert proc.send(pidfd, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        wait_for(lambda: not alive(child.pid), 5, "the child to be gone")
        assert not proc.send(pidfd, signal.SIGKILL)  # reaped: never another process
    finally:
        os.close(pidfd)
