"""The supervisor's crash-loop guard, in a real supervisor process with a real busy port."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

SCRIPT = """
import logging, sys
from scheduler.metrics import Metrics
from scheduler.runner import Plan, Supervisor, _serve_metrics

logging.basicConfig(level=logging.INFO, format="%(message)s")
port = int(sys.argv[1])


class MetricsOnly(Supervisor):
    def _roles(self):
        return [("metrics", lambda token: _serve_metrics(Metrics(), port))]


plan = Plan({}, "redis://127.0.0.1:1", "guard", workers=0, scheduler=False)
sys.exit(MetricsOnly(plan).run())
"""


def test_a_child_that_cannot_bind_its_port_stops_the_supervisor_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SCRIPT), str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - began
    err = done.stderr
    assert done.returncode == 1, err
    assert f"cannot serve metrics on 0.0.0.0:{port}: Address already in use" in err, err
    assert "pick another --metrics-port" in err
    assert "metrics cannot run as configured" in err, err
    assert err.count("started metrics") == 1, "a port that is taken is not tried again"
    assert "Traceback" not in err, err
    assert took < 10, f"stopped after {took:.1f}s"
