"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real
`sched run`: trigger a job and watch its run, read its output, pause a job and see its next
fire recorded skipped; and a screenshot of every page, light and dark.

Screenshots go to $SCHED_WEB_SHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.model import RunStatus
from scheduler.store import Store
from tests.helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MARK = "hello from the dashboard test"
JOBS = f'''
import time
from scheduler import job

@job("0 0 1 1 *", timeout="30s")
def hello():
    print("{MARK}")
    print("<script>window.pwned = 1</script>")
    print('"><img src=x onerror="window.pwned = 2">')
    print("\\x1b[31mred\\x1b[0m")
    time.sleep(1.5)
    print("done")
    return {{"html": "<script>window.pwned = 3</script>"}}

@job(every="2s", timeout="10s")
def often():
    print("often")

@job("0 0 1 1 *", timeout="60s")
def slow():
    print("slow: started", flush=True)
    time.sleep(60)
'''


@pytest.fixture()
def sched_run(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """A real `sched run` over the session's Redis; yields the dashboard's URL."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium when run as root "
            "(apt-get install -y chromium)"
        )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "web.py").write_text(textwrap.dedent(JOBS))
    log = tmp_path / "sched.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler",
                "--jobs",
                str(jobs),
                "--redis-url",
                redis_url,
                "run",
                "--workers",
                "1",
                "--web-bind",
                "127.0.0.1:0",
                "--lease",
                "3s",
                "--grace",
                "1s",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def url() -> str | None:
            found = re.search(r"dashboard on (http://127\.0\.0\.1:\d+/)", log.read_text())
            return found.group(1) if found and _answers(found.group(1)) else None

        yield wait_for(url, timeout=30, what=f"the dashboard; log:\n{log.read_text()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/v1/workers", timeout=2) as response:
            return bool(response.status == 200 and response.read() != b"[]")
    except OSError:
        return False


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p, tmp_path / "chromium-profile"


def _context(browser: Any, scheme: str) -> Any:
    p, profile = browser
    return p.chromium.launch_persistent_context(
        str(profile / scheme),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        color_scheme=scheme,
        viewport={"width": 1360, "height": 860},
    )


def _watch(page: Any) -> dict[str, list[str]]:
    """Collect what must not happen: dialogs (a script ran), CSP violations, page errors."""
    seen: dict[str, list[str]] = {"dialogs": [], "console": [], "errors": []}
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    return seen


def test_trigger_watch_read_and_pause_in_a_real_browser(
    sched_run: str, browser: Any, store: Store, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    shots = Path(os.environ.get("SCHED_WEB_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    context = _context(browser, "light")
    page = context.new_page()
    seen = _watch(page)

    # The overview lists the jobs; trigger one.
    page.goto(sched_run)
    hello_row = page.locator("tr", has=page.locator("a[href='/jobs/web.hello']"))
    expect(hello_row).to_contain_text("At 00:00, on day 1 of the month, only in January")
    hello_row.get_by_role("button", name="Run now").click()
    flash = page.locator(".flash")
    expect(flash).to_contain_text("queued web.hello@manual-")
    run_id = flash.inner_text().split("queued ", 1)[1].strip()

    # The run appears on the overview and finishes, without a reload (the page refreshes
    # its own content).
    latest = page.locator("#latest")
    expect(latest).to_contain_text(run_id)
    expect(hello_row.locator(".st").first).to_have_text("completed", timeout=30_000)

    # Open it while another one runs: status and output stream in, the page turns final.
    hello_row.get_by_role("button", name="Run now").click()
    second = page.locator(".flash").inner_text().split("queued ", 1)[1].strip()
    page.goto(sched_run + "runs/" + second.replace("#", "%23"))
    page.evaluate("window.sameDocument = true")
    expect(page.locator("#run-status")).to_contain_text("running", timeout=20_000)
    expect(page.locator("#output")).to_contain_text(MARK, timeout=10_000)
    page.screenshot(path=str(shots / "run-live-light.png"), full_page=True)
    expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
    expect(page.locator("table.fields")).to_contain_text("finished_at")
    expect(page.locator("table.fields")).to_contain_text("duration_s")
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    output = page.locator("#output").inner_text()
    assert MARK in output and "done" in output
    # Hostile output is text: shown literally, never run.
    assert "<script>window.pwned = 1</script>" in output
    assert '"><img src=x onerror="window.pwned = 2">' in output
    assert "\u241b[31mred" in output
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#main img").count() == 0

    # The first run's page, opened from the overview's list.
    page.goto(sched_run)
    page.locator("#latest a", has_text=run_id).click()
    expect(page.locator("#output")).to_contain_text(MARK)
    expect(page.locator("pre.result")).to_contain_text("window.pwned = 3")
    assert page.evaluate("typeof window.pwned") == "undefined"

    # Pause the every-2s job: its next fire is recorded skipped, reason paused.
    page.goto(sched_run)
    often_row = page.locator("tr", has=page.locator("a[href='/jobs/web.often']"))
    often_row.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash")).to_contain_text("paused web.often")
    expect(often_row.locator(".badge")).to_have_text("paused")
    paused_at = time.time()
    page.goto(sched_run + "jobs/web.often?status=skipped")

    def skipped_row() -> bool:
        page.reload()
        return page.locator("table.runs tbody tr", has_text="paused").count() > 0

    wait_for(skipped_row, timeout=20, what="a fire of web.often recorded skipped (paused)")
    skipped = store.history(job="web.often", statuses=[RunStatus.SKIPPED])
    assert skipped and skipped[0].reason == "paused"
    assert skipped[0].scheduled_for.timestamp() >= paused_at - 2.5

    # Kill a running run from its page: the worker stops it, recorded killed by the operator.
    page.goto(sched_run + "jobs/web.slow")
    page.get_by_role("button", name="Run now").click()
    slow_id = page.locator(".flash").inner_text().split("queued ", 1)[1].strip()
    page.goto(sched_run + "runs/" + slow_id)
    expect(page.locator("#output")).to_contain_text("slow: started", timeout=20_000)
    page.get_by_role("button", name="Kill").click()
    expect(page.locator(".flash")).to_contain_text("asked the worker of")
    expect(page.locator("#run-status")).to_have_text("killed", timeout=20_000)
    expect(page.locator("table.fields")).to_contain_text("operator")
    assert store.get_run(slow_id).reason == "operator"

    _screenshots(page, sched_run, shots, "light", run_id)
    context.close()
    dark = _context(browser, "dark")
    dark_page = dark.new_page()
    dark_seen = _watch(dark_page)
    _screenshots(dark_page, sched_run, shots, "dark", run_id)
    dark.close()
    for what in (seen, dark_seen):
        assert what["dialogs"] == [], what
        assert what["errors"] == [], what
        assert not [m for m in what["console"] if "Content Security Policy" in m], what


def _screenshots(page: Any, url: str, shots: Path, scheme: str, run_id: str) -> None:
    for name, path in [
        ("overview", ""),
        ("job", "jobs/web.often"),
        ("run", "runs/" + run_id),
        ("runs", "runs"),
        ("workers", "workers"),
    ]:
        page.goto(url + path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shots / f"{name}-{scheme}.png"), full_page=True)
