"""Hostile jobs against real workers: nothing outlives its run, statuses are true, no secrets.

Each job prints `left <pid>` for every process it starts; after the run (or after its worker
was killed) none of them may be alive. Figures (deadline to kill, processes left, what a job
found) are printed for the record.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from scheduler.model import Run, RunStatus
from scheduler.proc import children_of, descendants_of
from scheduler.store import Store
from tests.faults.conftest import GRACE, HERE, LEASE, Cluster
from tests.helpers import alive, final, trigger, wait_for

JOBS = "jobs_hostile"
GRACE_S = float(GRACE.rstrip("s"))


def _left(text: str) -> set[int]:
    return {int(pid) for pid in re.findall(r"^left (\d+)$", text, re.MULTILINE)}


def _live_pids(store: Store, run_id: str, count: int) -> set[int]:
    """The pids a running job printed, once it printed `count` of them."""

    def printed() -> set[int] | None:
        _, _, tail = store.live_output(run_id)
        pids = _left(tail)
        return pids if len(pids) >= count else None

    return wait_for(printed, 20, f"{run_id} to print {count} pids")


def _running(store: Store, run_id: str) -> Run:
    def started() -> Run | None:
        run = store.get_run(run_id)
        return run if run.status is RunStatus.RUNNING and run.pid else None

    return wait_for(started, 20, f"{run_id} to run")


def _worker_pid(store: Store, run: Run) -> int:
    for worker in store.workers():
        if worker["id"] == run.worker:
            return int(worker["pid"])
    raise AssertionError(f"no live worker {run.worker!r}")


def _survivors(pids: set[int]) -> set[int]:
    return {pid for pid in pids if alive(pid)}


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _deadline_to_kill_s(run: Run, timeout_s: float) -> float:
    assert run.started_at is not None and run.finished_at is not None
    return (run.finished_at - run.started_at - timedelta(seconds=timeout_s)).total_seconds()


# -- 1. containment ------------------------------------------------------------------------


def test_a_job_that_ignores_its_alarm_and_hides_in_the_worker_group_is_timed_out(
    cluster: Cluster,
) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run_id = trigger(store, "hides-in-worker-group")
    run = final(store, run_id, 20)
    late = _deadline_to_kill_s(run, 1.0)
    print(f"deadline to kill: {late:.3f}s (grace {GRACE_S}s)")
    assert run.status is RunStatus.TIMED_OUT, run
    assert run.signal == "SIGKILL"
    assert run.reason is not None and "process group" not in run.reason
    assert "pidfd" in run.reason
    assert late < GRACE_S + 1.5
    assert run.pid is not None and not alive(run.pid)
    assert cluster.procs["w"].poll() is None, "the worker itself was not hit"


def test_sched_kill_stops_a_job_that_ignores_sigterm_and_hides(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run_id = trigger(store, "hides-long")
    pids = _live_pids(store, run_id, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    asked = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "scheduler", "--redis-url", cluster.url, "kill", run_id],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    run = final(store, run_id, 20)
    print(f"kill request to final status: {time.monotonic() - asked:.3f}s")
    assert run.status is RunStatus.KILLED and run.reason == "operator", run
    assert _survivors(pids) == set()


def test_a_cold_shutdown_stops_a_job_that_hides(cluster: Cluster) -> None:
    store = cluster.store()
    proc = cluster.start("w", JOBS, "worker")
    run_id = trigger(store, "hides-long")
    pids = _live_pids(store, run_id, 1)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)  # at once: each signal counts, however fast
    try:
        assert proc.wait(20) == 0
    finally:
        _kill_all(pids)
    run = store.get_run(run_id)
    assert run.status is RunStatus.KILLED and run.reason == "shutdown", run
    assert _survivors(pids) == set()


def test_nothing_of_a_new_session_tree_outlives_its_run(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run = final(store, trigger(store, "new-session-tree"), 20)
    pids = _left(run.output or "")
    try:
        assert run.status is RunStatus.COMPLETED, run
        assert len(pids) == 3, run.output
        survivors = _survivors(pids)
        print(f"processes left at the final status: {len(survivors)}")
        assert survivors == set()
    finally:
        _kill_all(pids)


def test_a_sigkilled_standalone_worker_leaves_no_process_behind(cluster: Cluster) -> None:
    store = cluster.store()
    proc = cluster.start("w", JOBS, "worker")
    run_id = trigger(store, "deep-tree")
    pids = _live_pids(store, run_id, 3) | {_running(store, run_id).pid or 0}
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        wait_for(lambda: not _survivors(pids), 10, "the run's processes to die")
        print(f"worker SIGKILLed: its run's tree gone after {time.monotonic() - killed_at:.3f}s")
    finally:
        _kill_all(pids)


def test_a_worker_killed_with_its_whole_family_under_a_supervisor_leaves_nothing(
    cluster: Cluster,
) -> None:
    store = cluster.store()
    supervisor = cluster.start("w", JOBS, "worker", "--workers", "2")
    run_id = trigger(store, "deep-tree")
    run = _running(store, run_id)
    pids = _live_pids(store, run_id, 3) | {run.pid or 0}
    # Every sched process between the supervisor and the horse (the worker, and its fork
    # server where there is one), killed at once: only the supervisor can clean up.
    family = set(descendants_of(supervisor.pid)) - pids
    family -= {pid for pid in family if pid in descendants_of(run.pid or 0)}
    worker = _worker_pid(store, run)
    between = {pid for pid in family if pid == worker or pid in descendants_of(worker)}
    for pid in between:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        wait_for(lambda: not _survivors(pids), 10, "the run's processes to die")
        print(f"worker family SIGKILLed: tree gone after {time.monotonic() - killed_at:.3f}s")
    finally:
        _kill_all(pids)
    assert supervisor.poll() is None


def test_a_job_that_kills_its_parent_ends_its_own_run_only(cluster: Cluster) -> None:
    store = cluster.store()
    worker = cluster.start("w", JOBS, "worker")
    run = final(store, trigger(store, "kills-its-parent"), 20)
    pids = _left(run.output or "")
    try:
        assert run.status is RunStatus.KILLED, run
        assert len(pids) == 2 and _survivors(pids) == set()
    finally:
        _kill_all(pids)
    print(f"killed its parent: recorded {run.status} ({run.reason})")
    # The worker goes on with a new fork server.
    assert final(store, trigger(store, "quick"), 20).status is RunStatus.COMPLETED
    assert worker.poll() is None


# -- 2. worker identity --------------------------------------------------------------------


def _start(
    cluster: Cluster, name: str, prefix: list[str], url: str | None = None
) -> subprocess.Popen[str]:
    """`sched worker` on the hostile jobs, behind `prefix`, with the store URL `url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_REDIS_URL=url or cluster.url, SCHED_JOBS=str(HERE / JOBS))
    log = cluster.state / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "scheduler"]
            + ["worker", "--lease", LEASE, "--grace", GRACE],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    cluster.procs[name] = proc
    cluster.logs[name] = log
    return proc


def _in_own_pid_namespace(cluster: Cluster, name: str) -> subprocess.Popen[str]:
    return _start(cluster, name, ["unshare", "--pid", "--fork", "--mount-proc"])


def _namespace_init(unshare: subprocess.Popen[str]) -> int:
    """The host pid of the worker that is pid 1 of `unshare`'s new namespace."""
    return wait_for(lambda: (children_of(unshare.pid) or [0])[0], 10, "the worker to start")


def test_a_restarted_worker_that_reuses_host_and_pid_1_does_not_strand_a_run(
    cluster: Cluster,
) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        raise AssertionError("this test needs unshare(1) and root (PID namespaces)")
    store = cluster.store()
    first = _in_own_pid_namespace(cluster, "first")
    first_pid = _namespace_init(first)
    wait_for(lambda: [w for w in store.workers() if w.get("pid") == "1"], 20, "it to register")
    # Blocked on the queue: Redis moves the next run id into its inbox even while it stops.
    wait_for(
        lambda: [c for c in store.redis.client_list() if c.get("cmd") == "blmove"],
        20,
        "it to wait on the queue",
    )
    os.kill(first_pid, signal.SIGSTOP)
    run_id = trigger(store, "quick")
    wait_for(lambda: store.queue_depth("default") == 0, 10, "the id to be moved to its inbox")
    os.kill(first_pid, signal.SIGKILL)
    first.wait(10)
    second = _in_own_pid_namespace(cluster, "second")
    second_pid = _namespace_init(second)
    started = time.monotonic()
    try:
        run = final(store, run_id, 20)
        print(f"run completed on the restarted worker after {time.monotonic() - started:.3f}s")
        assert run.status is RunStatus.COMPLETED, run
        assert len({w["id"] for w in store.workers()}) == 1
    finally:
        os.kill(second_pid, signal.SIGKILL)  # unshare(1) does not pass SIGTERM on
        second.wait(10)


# -- 3. the exit status is the truth -------------------------------------------------------


def test_a_forged_report_does_not_turn_a_failure_into_success(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run = final(store, trigger(store, "forges-success"), 20)
    assert "forged a report" in (run.output or "")
    assert run.status is RunStatus.FAILED, run
    assert run.exit_code == 1
    assert run.reason is not None and "RuntimeError" in run.reason
    assert store.raw_run(run.id).get("result") in (None, "")


def test_a_job_that_takes_the_report_descriptor_does_not_receive_the_report(
    cluster: Cluster,
) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run_id = trigger(store, "steals-report-fd")
    run = final(store, run_id, 20)
    folder = Path(tempfile.gettempdir()) / f"sched-steal-{run_id}"
    try:
        contents = {path.name: path.read_text() for path in folder.iterdir()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert len(contents) == 16
    assert not [name for name, text in contents.items() if "outcome" in text], contents
    assert run.status is RunStatus.COMPLETED and run.exit_code == 0, run


# -- 4. credentials out of the horse's reach -----------------------------------------------


def test_a_job_finds_no_credential_and_no_redis_socket(cluster: Cluster) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    admin = cluster.store()
    admin.redis.config_set("requirepass", password)
    url = cluster.url.replace("unix://", f"unix://:{password}@", 1)
    store = Store(url)
    _start(cluster, "w", [], url)
    run = final(store, trigger(store, "finds-secrets"), 30)
    raw = store.raw_run(run.id)
    found = run.result
    print(f"what the job found: {found}")
    assert run.status is RunStatus.COMPLETED, run
    assert found == [], found
    assert password not in str(raw)


def test_a_job_without_ptrace_rights_cannot_read_the_worker(cluster: Cluster) -> None:
    # Root may read any process; a job of the worker's (non-root) user has no CAP_SYS_PTRACE:
    # the same as root without it. The worker is not dumpable, so /proc refuses that user.
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        raise AssertionError("this test needs setpriv(1) and root")
    store = cluster.store()
    _start(cluster, "w", ["setpriv", "--bounding-set", "-sys_ptrace"])
    run = final(store, trigger(store, "reads-worker"), 30)
    print(f"what the job found in the worker: {run.result}")
    assert run.status is RunStatus.COMPLETED, run
    assert run.result == [], run.result
