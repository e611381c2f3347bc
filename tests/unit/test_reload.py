"""Hot reload of a jobs folder: real files in a temporary folder, real imports, a real SIGHUP.

Each test edits the folder as a person would (add, remove, edit, break, fix), then polls as a
scheduler or worker loop does. `every_s=0` walks on every poll; a change is loaded on the walk
after the one that saw it (the folder must look the same twice), hence `settle()`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler import loader
from scheduler.loader import load_jobs
from scheduler.reload import Definitions, Reloaded, folder_digest

TICK = """
from scheduler import job

@job(every="{every}", name="{name}")
def {name}():
    return {value!r}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCHED_TZ", raising=False)
    yield
    loader._forget()


@pytest.fixture()
def jobs(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    write(folder / "a.py", TICK.format(every="1m", name="a", value="a1"))
    write(folder / "b.py", TICK.format(every="1m", name="b", value="b1"))
    return folder


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def watch(folder: Path, **kwargs: float) -> Definitions:
    return Definitions(folder, load_jobs(folder), who="test", every_s=kwargs.get("every_s", 0))


def settle(defs: Definitions) -> Reloaded | None:
    """The first walk sees the change; the second, finding the folder unchanged, loads it."""
    assert defs.poll() is None
    return defs.poll()


def reload_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "reloaded jobs" in r.getMessage()]


def test_nothing_changed_nothing_happens(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    defs = watch(jobs)
    before = defs.specs
    assert [defs.poll() for _ in range(5)] == [None] * 5
    assert defs.specs is before
    assert not caplog.records


def test_added_file_is_loaded_and_logged_once(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs)
    write(jobs / "extra.py", TICK.format(every="5s", name="extra", value="x"))
    result = settle(defs)
    assert result is not None
    assert (result.added, result.removed, result.changed) == (("extra",), (), ())
    assert set(result.specs) == {"a", "b", "extra"}
    assert defs.specs == result.specs
    assert result.specs["extra"].func is not None and result.specs["extra"].func() == "x"
    assert defs.poll() is None and defs.poll() is None
    assert reload_lines(caplog) == ["test: reloaded jobs: 1 added (extra); 3 jobs"]


def test_removed_file(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs)
    (jobs / "b.py").unlink()
    result = settle(defs)
    assert result is not None and result.removed == ("b",) and list(result.specs) == ["a"]
    assert reload_lines(caplog) == ["test: reloaded jobs: 1 removed (b); 1 job"]


def test_edited_function_runs_its_new_code_and_counts_as_changed(jobs: Path) -> None:
    defs = watch(jobs)
    old_func = defs.specs["a"].func
    # Same definition (schedule, line, options): only the body differs.
    write(jobs / "a.py", TICK.format(every="1m", name="a", value="a2-new"))
    result = settle(defs)
    assert result is not None and result.changed == ("a",) and result.added == ()
    assert result.specs["a"] == defs.specs["a"]
    new_func = result.specs["a"].func
    assert new_func is not None and new_func() == "a2-new"
    assert old_func is not None and old_func() == "a1"  # what was running is untouched


def test_several_kinds_of_change_in_one_line(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs)
    write(jobs / "a.py", TICK.format(every="2m", name="a", value="a1"))  # schedule changed
    (jobs / "b.py").unlink()
    write(
        jobs / "c.py",
        TICK.format(every="1m", name="c", value="c") + TICK.format(every="1m", name="d", value="d"),
    )
    result = settle(defs)
    assert result is not None
    assert (result.added, result.removed, result.changed) == (("c", "d"), ("b",), ("a",))
    assert result.specs["a"].every_s == 120
    assert reload_lines(caplog) == [
        "test: reloaded jobs: 2 added (c, d), 1 removed (b), 1 changed (a); 3 jobs"
    ]
    [record] = [r for r in caplog.records if "reloaded" in r.getMessage()]
    assert record.sched == {"event": "jobs_reloaded", "job": "c,d,b,a"}  # type: ignore[attr-defined]


def test_broken_folder_keeps_old_specs_and_logs_each_problem_once(
    jobs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    defs = watch(jobs)
    running = defs.specs
    digest = defs.digest
    write(
        jobs / "a.py",
        "from scheduler import job\n\n@job('61 * * * *', name='a')\ndef a():\n    pass\n",
    )
    write(jobs / "b.py", "def b(:\n")
    assert settle(defs) is None
    assert defs.specs is running and defs.digest == digest
    assert [f"{p.path}:{p.line}" for p in defs.problems] == ["jobs/a.py:3", "jobs/b.py:1"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (
        "test: jobs folder jobs/ has 2 problems; still running the previous definitions "
        "(2 jobs) until it is fixed"
    )
    assert messages[1] == (
        "jobs/a.py:3: job 'a': invalid cron '61 * * * *': minute 61 is outside 0-59; "
        "expected 5 fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
    )
    assert messages[2].startswith("jobs/b.py:1: syntax error")
    assert len(messages) == 3
    assert defs.loaded_info()["problems"] == "2"
    # Polling on, and touching a file without changing it, says nothing more.
    os.utime(jobs / "b.py")
    for _ in range(4):
        assert defs.poll() is None
    assert len(caplog.records) == 3
    # Another broken state is another report.
    write(jobs / "b.py", "def b(:\n    pass\n")
    assert settle(defs) is None
    assert len(caplog.records) == 6


def test_problems_listed_at_debug_only_when_asked(
    jobs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    defs = Definitions(jobs, load_jobs(jobs), who="test", every_s=0, list_problems=False)
    write(jobs / "b.py", "def b(:\n")
    assert settle(defs) is None
    levels = [(r.levelno, r.getMessage()[:20]) for r in caplog.records]
    assert levels == [
        (logging.ERROR, "test: jobs folder jo"),
        (logging.DEBUG, "jobs/b.py:1: syntax "),
    ]


def test_fixing_the_folder_loads_it(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs)
    write(jobs / "b.py", "def b(:\n")
    assert settle(defs) is None and defs.problems
    write(jobs / "b.py", TICK.format(every="1m", name="b", value="b-fixed"))
    result = settle(defs)
    assert result is not None and result.changed == ("b",)
    assert defs.problems == [] and defs.loaded_info()["problems"] == "0"
    func = defs.specs["b"].func
    assert func is not None and func() == "b-fixed"


def test_reverting_a_broken_edit_says_disk_matches_again(
    jobs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs)
    good = (jobs / "b.py").read_text()
    write(jobs / "b.py", "def b(:\n")
    assert settle(defs) is None and defs.problems
    write(jobs / "b.py", good)
    assert settle(defs) is None  # nothing to swap: it runs exactly this already
    assert defs.problems == []
    assert caplog.records[-1].getMessage() == (
        "test: jobs folder jobs/ matches the running definitions again (2 jobs)"
    )


def test_missing_folder_keeps_old_specs(jobs: Path) -> None:
    defs = watch(jobs)
    shutil.rmtree(jobs)
    assert settle(defs) is None
    assert set(defs.specs) == {"a", "b"}
    assert [p.message for p in defs.problems] == ["jobs folder not found"]


HELPER_USER = """
from scheduler import job
from _helpers import greeting

@job(every="1m", name="greets")
def greets():
    return greeting()
"""


def test_edited_helper_module_is_reimported_and_its_users_change(jobs: Path) -> None:
    write(jobs / "_helpers.py", "def greeting():\n    return 'hello'\n")
    write(jobs / "greets.py", HELPER_USER)
    defs = watch(jobs)
    func = defs.specs["greets"].func
    assert func is not None and func() == "hello"
    write(jobs / "_helpers.py", "def greeting():\n    return 'hello, again'\n")
    result = settle(defs)
    assert result is not None
    assert result.changed == ("greets",)  # not a and b, which do not use the helper
    func = result.specs["greets"].func
    assert func is not None and func() == "hello, again"


def test_a_value_imported_from_a_helper_counts_as_its_users_code(jobs: Path) -> None:
    """`from _words import WORD` keeps no reference to _words: the load's imports say it."""
    write(jobs / "_words.py", "WORD = 'first'\n")
    write(jobs / "pkg" / "__init__.py", "")
    write(jobs / "pkg" / "_more.py", "MORE = '!'\n")
    write(
        jobs / "pkg" / "speaks.py",
        TICK.format(every="1m", name="speaks", value="x")
        .replace(
            "from scheduler import job",
            "from scheduler import job\nfrom _words import WORD\nfrom ._more import MORE",
        )
        .replace("return 'x'", "return WORD + MORE"),
    )
    defs = watch(jobs)
    write(jobs / "pkg" / "_more.py", "MORE = '?'\n")
    result = settle(defs)
    assert result is not None and result.changed == ("speaks",)
    write(jobs / "_words.py", "WORD = 'second'\n")
    result = settle(defs)
    assert result is not None and result.changed == ("speaks",)
    func = result.specs["speaks"].func
    assert func is not None and func() == "second?"


def test_helper_package_through_a_module_reference(jobs: Path) -> None:
    write(jobs / "lib" / "__init__.py", "")
    write(jobs / "lib" / "text.py", "WORD = 'one'\n")
    write(
        jobs / "uses.py",
        TICK.format(every="1m", name="uses", value="x")
        .replace("return 'x'", "return lib.text.WORD")
        .replace("from scheduler import job", "from scheduler import job\nimport lib.text"),
    )
    defs = watch(jobs)
    write(jobs / "lib" / "text.py", "WORD = 'two'\n")
    result = settle(defs)
    assert result is not None and result.changed == ("uses",)
    func = result.specs["uses"].func
    assert func is not None and func() == "two"


def test_an_edit_no_job_refers_to_is_reloaded_and_named(
    jobs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    write(jobs / "_unused.py", "X = 1\n")
    defs = watch(jobs)
    write(jobs / "_unused.py", "X = 22\n")
    result = settle(defs)
    assert result is not None and (result.added, result.removed, result.changed) == ((), (), ())
    assert reload_lines(caplog) == [
        "test: reloaded jobs: no job changed (_unused.py edited); 2 jobs"
    ]


def test_a_touch_without_change_reloads_nothing(
    jobs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs)
    os.utime(jobs / "a.py", ns=(1, 1))
    assert settle(defs) is None
    assert not caplog.records


def test_a_change_in_progress_is_not_loaded_until_the_folder_stops_changing(jobs: Path) -> None:
    defs = watch(jobs)
    write(jobs / "c.py", TICK.format(every="1m", name="c", value="c"))
    assert defs.poll() is None  # seen
    write(jobs / "d.py", TICK.format(every="1m", name="d", value="d"))
    assert defs.poll() is None  # still changing
    result = defs.poll()
    assert result is not None and result.added == ("c", "d")


def test_a_change_seen_late_is_loaded_at_the_first_look(jobs: Path) -> None:
    """A worker busy with a run looks again only after it: an edit made long before is not
    made to wait another walk (it would claim a run with the old definitions meanwhile)."""
    defs = Definitions(jobs, load_jobs(jobs), who="test", every_s=0, settle_s=0.2)
    (jobs / "b.py").unlink()
    time.sleep(0.3)  # not a wait for anything: the edit must be older than settle_s
    result = defs.poll()
    assert result is not None and result.removed == ("b",)


def test_polls_between_walks_do_not_look(jobs: Path) -> None:
    defs = watch(jobs, every_s=3600)
    write(jobs / "c.py", TICK.format(every="1m", name="c", value="c"))
    assert [defs.poll() for _ in range(3)] == [None] * 3
    assert "c" not in defs.specs


def test_sighup_reloads_without_a_watch(jobs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    defs = watch(jobs, every_s=math.inf)  # --no-watch
    assert defs.loaded_info()["watch"] == "0"
    write(jobs / "c.py", TICK.format(every="1m", name="c", value="c"))
    assert [defs.poll() for _ in range(3)] == [None] * 3
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: defs.request())
    try:
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs before kill() returns
        result = defs.poll()  # no settling: asked for
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result is not None and result.added == ("c",)
    # Asked again with nothing new: one line saying so.
    defs.request()
    assert defs.poll() is None
    assert caplog.records[-1].getMessage() == (
        "test: reload asked for: jobs folder jobs/ unchanged (3 jobs)"
    )


def test_an_edit_with_its_mtime_put_back_is_seen(jobs: Path) -> None:
    """Same size, same inode, mtime put back (`cp -p`, `touch -r`): ctime still shows it."""
    defs = watch(jobs)
    path = jobs / "a.py"
    before = path.stat()
    write(path, TICK.format(every="1m", name="a", value="a9"))  # same size as "a1"
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size,
        before.st_ino,
        before.st_mtime_ns,
    )
    result = settle(defs)
    assert result is not None and result.changed == ("a",)


def test_file_replaced_within_the_same_second_with_the_same_size(jobs: Path) -> None:
    defs = watch(jobs)
    path = jobs / "a.py"
    before = path.stat()
    tmp = jobs / ".a.py.swp"
    tmp.write_text(TICK.format(every="1m", name="a", value="a7"))
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(tmp, path)  # an editor's atomic save: new inode, same size, same mtime
    assert path.stat().st_size == before.st_size
    result = settle(defs)
    assert result is not None and result.changed == ("a",)
    func = result.specs["a"].func
    assert func is not None and func() == "a7"


def test_a_process_started_after_an_edit_still_sees_it(jobs: Path) -> None:
    """`sched run` loads, then forks its children, which start watching a moment later."""
    specs = load_jobs(jobs)
    write(jobs / "a.py", TICK.format(every="1m", name="a", value="edited-meanwhile"))
    defs = Definitions(jobs, specs, who="test", every_s=0)
    assert defs.digest != folder_digest(jobs)
    result = defs.poll()  # the specs are older than the disk: no settling needed to notice
    result = result or defs.poll()
    assert result is not None and result.changed == ("a",)


def test_digest_is_of_content_not_of_where_the_folder_is(jobs: Path, tmp_path: Path) -> None:
    defs = watch(jobs)
    assert defs.digest == folder_digest(jobs)
    copy = tmp_path / "elsewhere" / "jobs"
    shutil.copytree(jobs, copy)
    assert folder_digest(copy) == defs.digest
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.py").write_text("ignored")
    (copy / ".hidden.py").write_text("ignored")
    (copy / "notes.txt").write_text("not Python")
    assert folder_digest(copy) == defs.digest
    (copy / "_lib.py").write_text("X = 1\n")
    assert folder_digest(copy) != defs.digest
    (tmp_path / "empty").mkdir()
    assert folder_digest(tmp_path / "nowhere") != folder_digest(tmp_path / "empty")


def test_loaded_info(jobs: Path) -> None:
    defs = watch(jobs)
    info = defs.loaded_info()
    assert info.keys() == {"digest", "loaded_at", "jobs", "problems", "folder", "watch"}
    assert info["digest"] == folder_digest(jobs) and info["jobs"] == "2"
    assert info["problems"] == "0" and info["folder"] == str(jobs) and info["watch"] == "1"
    assert int(info["loaded_at"]) > 1_700_000_000_000
    assert all(isinstance(v, str) for v in info.values())


def test_default_timeout_and_zone_apply_to_reloaded_jobs(jobs: Path) -> None:
    defs = Definitions(
        jobs,
        load_jobs(jobs, default_tz="Europe/Paris", default_timeout_s=60),
        who="test",
        default_tz="Europe/Paris",
        default_timeout_s=60,
        every_s=0,
    )
    write(jobs / "c.py", TICK.format(every="1m", name="c", value="c"))
    result = settle(defs)
    assert result is not None
    assert {(s.tz, s.timeout_s) for s in result.specs.values()} == {("Europe/Paris", 60)}
    assert result.changed == ()  # a and b did not change: same zone, same timeout
