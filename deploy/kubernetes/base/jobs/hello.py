"""An example job for the Kubernetes deployment; replace this folder with your own jobs."""

from scheduler import command, job


@job("*/5 * * * *", timeout="30s")
def ping() -> dict[str, str]:
    """Every five minutes: a Python job that completes with a small JSON result."""
    print("hello from sched on Kubernetes")
    return {"status": "ok"}


command("uptime", "0 * * * *", ["cat", "/proc/uptime"], timeout="10s")
"""Every hour: an external program (no shell); its output is kept with the run."""
