"""Hot reload: the jobs folder a process runs, and whether what is on disk still matches it.

`Definitions.poll()` is called from a process's own loop (no threads: workers fork). It costs a
stat walk of the folder at most once per `every_s` and nothing in between. A change written
in the last second is loaded once a later walk finds the folder unchanged, so a checkout or
copy in progress is not loaded half-done; an older one (seen late: a worker busy with a run)
is loaded at once. `request()` (SIGHUP) loads at the next poll, and reads every file's bytes,
so it also sees an edit that no stat shows.

What the poll sees: a watched file (every `*.py` under the folder, helpers in `_lib.py` or
`_helpers/` included, not in hidden folders or `__pycache__`) added, removed, renamed over
(new inode), written (mtime, ctime or size), including a rewrite with the same size whose
mtime was put back. What it does not see until a SIGHUP: a rewrite of the same size within
one tick of the filesystem's clock (a few ms on ext4, 2 s on FAT), and never anything outside
the folder: data files, modules elsewhere on sys.path, environment variables.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scheduler.api import display_path
from scheduler.cli_output import log_event
from scheduler.errors import DefinitionError, Problem
from scheduler.loader import import_graph, last_stamp, load_jobs, read_stamp, walk_folder
from scheduler.model import DEFAULT_TIMEOUT_S, JobSpec

log = logging.getLogger("sched.reload")

# A change whose files were written less than this long ago waits for the next walk to find
# the folder unchanged before it is loaded (a checkout or copy in progress); an older one is
# loaded at the walk that sees it.
SETTLE_S = 1.0
# How many job names a reload line lists per kind of change before it says "and N more".
NAMES_SHOWN = 10


@dataclass(frozen=True)
class Reloaded:
    """A change of definitions that a process has just swapped in."""

    specs: dict[str, JobSpec]
    """The new definitions, complete."""
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    """Jobs in both whose definition differs, or whose function's code (its file, or a helper
    module of the folder it refers to) changed."""
    digest: str
    """Of the files now loaded (see folder_digest)."""


def folder_digest(root: Path) -> str:
    """The digest of what is on disk now: sha256 over each watched file's path and bytes."""
    return read_stamp(Path(os.path.abspath(root))).digest


class Definitions:
    """The jobs folder a process runs: what it loaded, and whether disk still matches."""

    def __init__(
        self,
        root: Path,
        specs: Mapping[str, JobSpec],
        *,
        who: str,
        default_tz: str | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        every_s: float = 1.0,
        settle_s: float = SETTLE_S,
        list_problems: bool = True,
    ) -> None:
        """`specs` as load_jobs(root) returned them. `every_s=math.inf` watches nothing:
        only request() reloads (`--no-watch`). `list_problems=False` logs an invalid folder's
        problems at DEBUG only, beside the one ERROR line saying it keeps its definitions:
        for processes whose log another process of the same deployment (the scheduler of a
        `sched run`) already lists them in."""
        self.root = Path(os.path.abspath(root))
        self.who = who
        self.default_tz = default_tz
        self.default_timeout_s = default_timeout_s
        self.every_s = every_s
        self.settle_s = settle_s
        self.list_problems = list_problems
        self.specs: dict[str, JobSpec] = dict(specs)
        # The disk state these specs came from. A process started seconds after the load
        # (a forked child) must not take a newer disk state for the one it runs.
        stamp = last_stamp(self.root, specs) or read_stamp(self.root)
        self._stamp = stamp
        self.digest = stamp.digest
        self._code = _code_digests(self.specs, self.root, stamp.hashes)
        self.problems: list[Problem] = []
        self.loaded_at_ms = int(time.time() * 1000)
        self._seen = stamp.stats
        self._settling = False
        self._reported: str | None = None  # digest of the invalid disk state last logged
        self._requested = False
        self._next_walk = time.monotonic() + every_s if math.isfinite(every_s) else math.inf

    @property
    def watching(self) -> bool:
        """Whether poll() looks at the folder by itself (else only after request())."""
        return math.isfinite(self.every_s)

    def request(self) -> None:
        """Reload at the next poll, whatever the stats say. Safe in a signal handler."""
        self._requested = True

    def poll(self) -> Reloaded | None:
        """Swap in a changed valid folder and say what changed; None when nothing was swapped."""
        requested, self._requested = self._requested, False
        if not requested and not self._walk_due():
            return None
        stats, newest_ns = walk_folder(self.root)
        if not requested:
            if stats != self._seen:
                self._seen = stats
                if time.time_ns() - newest_ns < self.settle_s * 1e9:
                    self._settling = True  # written just now: load once it stops changing
                    return None
            elif not self._settling:
                return None
        self._settling = False
        disk = read_stamp(self.root)
        self._seen = disk.stats
        if disk.digest == self.digest:
            self._same_as_loaded(requested)
            return None
        if disk.digest == self._reported and not requested:
            return None  # the same invalid state, touched: said already
        return self._load(requested)

    def loaded_info(self) -> dict[str, str]:
        """What this process runs, for Store.set_loaded (every value a string)."""
        return {
            "digest": self.digest,
            "loaded_at": str(self.loaded_at_ms),
            "jobs": str(len(self.specs)),
            "problems": str(len(self.problems)),
            "folder": str(self.root),
            "watch": "1" if self.watching else "0",
        }

    def _walk_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_walk:
            return False
        self._next_walk = now + self.every_s
        return True

    def _same_as_loaded(self, requested: bool) -> None:
        if self.problems:
            self.problems, self._reported = [], None
            log_event(
                log,
                logging.INFO,
                "jobs_valid",
                "%s: jobs folder %s matches the running definitions again (%s)",
                self.who,
                _shown(self.root),
                _jobs(len(self.specs)),
            )
        elif requested:
            log_event(
                log,
                logging.INFO,
                "jobs_unchanged",
                "%s: reload asked for: jobs folder %s unchanged (%s)",
                self.who,
                _shown(self.root),
                _jobs(len(self.specs)),
            )

    def _load(self, requested: bool) -> Reloaded | None:
        try:
            specs = load_jobs(
                self.root, default_tz=self.default_tz, default_timeout_s=self.default_timeout_s
            )
        except DefinitionError as exc:
            stamp = last_stamp(self.root)
            self._invalid(exc.problems, stamp.digest if stamp else None, requested)
            return None
        stamp = last_stamp(self.root, specs) or read_stamp(self.root)
        code = _code_digests(specs, self.root, stamp.hashes)
        old, old_code = self.specs, self._code
        added = tuple(name for name in specs if name not in old)
        removed = tuple(name for name in old if name not in specs)
        changed = tuple(
            name
            for name in specs
            if name in old and (specs[name] != old[name] or code.get(name) != old_code.get(name))
        )
        files = _files_changed(self._stamp.hashes, stamp.hashes)
        self.specs, self._code, self._stamp = specs, code, stamp
        self.digest, self._seen = stamp.digest, stamp.stats
        self.problems, self._reported = [], None
        self.loaded_at_ms = int(time.time() * 1000)
        log_event(
            log,
            logging.INFO,
            "jobs_reloaded",
            "%s: reloaded jobs: %s",
            self.who,
            _summary(added, removed, changed, files, len(specs)),
            job=",".join(added + removed + changed) or None,
        )
        return Reloaded(dict(specs), added, removed, changed, stamp.digest)

    def _invalid(self, problems: Sequence[Problem], digest: str | None, requested: bool) -> None:
        self.problems = list(problems)
        if digest is not None and digest == self._reported and not requested:
            return
        self._reported = digest
        count = len(problems)
        log_event(
            log,
            logging.ERROR,
            "jobs_invalid",
            "%s: jobs folder %s has %d problem%s; still running the previous definitions "
            "(%s) until it is fixed",
            self.who,
            _shown(self.root),
            count,
            "s" if count != 1 else "",
            _jobs(len(self.specs)),
        )
        level = logging.ERROR if self.list_problems else logging.DEBUG
        for problem in problems:
            # One line each, so that a log search for the path finds the whole problem.
            text = str(problem).replace("\n  ", "; ")
            log_event(log, level, "job_problem", "%s", text, job=problem.job)


def _shown(root: Path) -> str:
    return display_path(root).rstrip("/") + "/"


def _summary(
    added: Sequence[str],
    removed: Sequence[str],
    changed: Sequence[str],
    files: Sequence[str],
    total: int,
) -> str:
    """`2 added (a, b), 1 removed (c), 1 changed (d)`; the files when no job changed."""
    parts = [
        f"{len(names)} {kind} ({_names(names)})"
        for kind, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
    if parts:
        return ", ".join(parts) + f"; {_jobs(total)}"
    return f"no job changed ({_names(files) or 'no file changed'}); {_jobs(total)}"


def _jobs(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'}"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    if len(names) > NAMES_SHOWN:
        shown += f" and {len(names) - NAMES_SHOWN} more"
    return shown


def _files_changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The files added, removed or edited, each with what happened: `_lib.py edited`."""
    out = []
    for rel in sorted(set(before) | set(after)):
        if rel not in before:
            out.append(f"{rel} added")
        elif rel not in after:
            out.append(f"{rel} removed")
        elif before[rel] != after[rel]:
            out.append(f"{rel} edited")
    return out


def _code_digests(
    specs: Mapping[str, JobSpec], root: Path, hashes: Mapping[str, str]
) -> dict[str, str]:
    """Per Python job, a digest of the folder files its function's code comes from.

    Its module's file, the folder modules that module imported while loading, and those
    it refers to (imported modules, the modules of imported functions and classes),
    transitively. A helper imported lazily inside the function is not seen: its edit reloads
    the code but is reported as a file.
    """
    out: dict[str, str] = {}
    memo: dict[tuple[int, ...], str] = {}
    graph = import_graph(root)
    for name, spec in specs.items():
        if spec.func is None:
            continue
        namespaces = _namespaces(spec.func)
        key = tuple(id(ns) for ns in namespaces)
        if key not in memo:
            files = _imported(_source_files(namespaces, root), graph)
            text = "".join(f"{rel}\0{hashes.get(rel, '')}\n" for rel in sorted(files))
            memo[key] = hashlib.sha256(text.encode()).hexdigest()
        out[name] = memo[key]
    return out


def _imported(files: set[str], graph: Mapping[str, frozenset[str]]) -> set[str]:
    """files and every folder file they import, transitively."""
    found, stack = set(files), list(files)
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in found:
                found.add(target)
                stack.append(target)
    return found


def _namespaces(func: Callable[..., object]) -> list[dict[str, object]]:
    """The module namespaces of a job function and of what it wraps (functools.wraps)."""
    found: list[dict[str, object]] = []
    try:
        inner = inspect.unwrap(func)
    except ValueError:  # a __wrapped__ cycle
        inner = func
    for candidate in (func, inner):
        ns = getattr(candidate, "__globals__", None)
        if isinstance(ns, dict) and all(ns is not seen for seen in found):
            found.append(ns)
    return found


def _source_files(start: list[dict[str, object]], root: Path) -> set[str]:
    files: set[str] = set()
    seen: set[int] = set()
    stack = list(start)
    while stack:
        ns = stack.pop()
        if id(ns) in seen:
            continue
        seen.add(id(ns))
        rel = _relative(ns.get("__file__"), root)
        if rel is None:
            continue  # outside the folder: not watched, not followed
        files.add(rel)
        for value in list(ns.values()):
            inner = _namespace_of(value)
            if inner is not None and id(inner) not in seen:
                stack.append(inner)
    return files


def _namespace_of(value: object) -> dict[str, object] | None:
    if isinstance(value, types.ModuleType):
        return vars(value)
    if isinstance(value, types.FunctionType):
        return value.__globals__
    if isinstance(value, type):
        module = sys.modules.get(value.__module__)
        return vars(module) if module is not None else None
    return None


def _relative(filename: object, root: Path) -> str | None:
    if not isinstance(filename, str):
        return None
    path = Path(os.path.abspath(filename))
    if not path.is_relative_to(root):
        return None
    return path.relative_to(root).as_posix()
