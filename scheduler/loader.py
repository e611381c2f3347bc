"""Import a jobs folder and return its JobSpecs, or one DefinitionError listing every problem."""

from __future__ import annotations

import builtins
import hashlib
import importlib.machinery
import importlib.util
import os
import stat
import sys
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scheduler.api import (
    Collector,
    collecting,
    display_path,
    expected_line,
    forget_validated,
)
from scheduler.api import (
    default_tz as env_default_tz,
)
from scheduler.durations import parse_duration
from scheduler.errors import DefinitionError, InvalidOption, Problem
from scheduler.model import DEFAULT_TIMEOUT_S, DEFAULT_TZ, JobSpec
from scheduler.options import check_tz

# What the last load_jobs left behind (its folder on sys.path, the modules it imported), so
# the next one can take it away: two folders loaded in one process must not see each other's
# helper modules.
_left: dict[str, list[str]] = {"path": [], "modules": []}

_HERE = os.path.abspath(__file__)

# A file's stat as the reload poll compares it: mtime_ns, ctime_ns, size, inode, device.
# ctime cannot be set from user space, so a content change hidden by restoring the mtime
# (os.utime, `touch -r`, `cp -p`) still shows; a file replaced by rename has a new inode.
StatKey = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Stamp:
    """What a jobs folder held when it was read: each watched file's stat and content hash.

    The watched files are every `*.py` under the folder (helper modules in `_lib.py` or
    `_helpers/` included), except in hidden folders and `__pycache__`. `stats` is None when
    the folder is missing or not a folder.
    """

    stats: tuple[tuple[str, StatKey], ...] | None
    # Relative POSIX path -> sha256 of the file's bytes.
    hashes: Mapping[str, str]

    @property
    def digest(self) -> str:
        """sha256 over each file's relative path and content hash: equal folders, equal digest,
        wherever they are mounted."""
        return digest_of(self.hashes if self.stats is not None else None)


# The last load of each folder: its stamp (taken before importing) and the specs it returned
# (None when it failed), so a process can tell which disk state the specs it was given came
# from, even when it starts watching seconds after they were loaded.
_stamps: dict[str, tuple[Stamp, dict[str, JobSpec] | None]] = {}
# And what its files imported (import_graph).
_imports: dict[str, dict[str, frozenset[str]]] = {}


@dataclass(frozen=True)
class SettingProblem(Problem):
    """A problem with no line to point at (the folder itself, an environment variable)."""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        if self.expected:
            text += f"\n  {self.expected}"
        return text


def load_jobs(
    folder: str | Path,
    *,
    default_tz: str | None = None,
    default_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, JobSpec]:
    """Import every job file under `folder`; the specs by name, ordered by path then line."""
    timeout_s = parse_duration(default_timeout_s, option="default timeout")
    root = Path(os.path.abspath(folder))
    # Read before importing: a file written during the import shows as changed next time.
    stamp = read_stamp(root)
    _stamps[str(root)] = (stamp, None)
    tz, problems = _default_zone(default_tz)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "not found"
        problems.append(
            SettingProblem(
                display_path(root),
                0,
                None,
                f"jobs folder {what}",
                "expected a folder of job files (*.py); pass --jobs DIR or set SCHED_JOBS",
            )
        )
        raise DefinitionError(problems)
    collector = Collector(root=root, tz=tz or DEFAULT_TZ, timeout_s=timeout_s, problems=problems)
    edges: dict[str, set[str]] = {}
    with _importable(root) as prefix, collecting(collector), _recording_imports(edges):
        for path in job_files(root):
            _import_file(path, root, prefix, collector)
    _imports[str(root)] = _file_graph(edges, root)
    forget_validated()  # the memo speeds up one load; keeping it would only hold memory
    specs = sorted(_unique(collector.specs), key=lambda s: (s.path, s.line))
    # dict.fromkeys: a broken helper imported by several job files is one problem, not many.
    problems = list(dict.fromkeys(collector.problems + _duplicates(specs)))
    if problems:
        raise DefinitionError(sorted(problems, key=lambda p: (p.path, p.line)))
    loaded = {spec.name: spec for spec in specs}
    _stamps[str(root)] = (stamp, loaded)
    return loaded


def folder_stats(root: Path) -> tuple[tuple[str, StatKey], ...] | None:
    """The stat of every watched file under root, by relative path; None if root is no folder."""
    return walk_folder(root)[0]


def walk_folder(root: Path) -> tuple[tuple[tuple[str, StatKey], ...] | None, int]:
    """folder_stats(root), and when the folder last changed (ns since the epoch): the newest
    mtime or ctime of its watched files and of its folders (a removal changes its folder's).

    A stat walk, no reads: cheap enough to run every second on a folder of thousands of files.
    Symlinked folders are not entered (job_files does not enter them either); a symlinked file
    is stat'ed through the link, so editing its target shows.
    """
    try:
        top = root.stat()
    except OSError:
        return None, 0
    if not stat.S_ISDIR(top.st_mode):
        return None, 0
    newest = max(top.st_mtime_ns, top.st_ctime_ns)
    found: list[tuple[str, StatKey]] = []
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # removed or unreadable meanwhile: the load will say what is wrong
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append((entry.path, f"{prefix}{entry.name}/"))
                        st = entry.stat(follow_symlinks=False)
                        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
                elif entry.name.endswith(".py"):
                    st = entry.stat()
                    key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)
                    found.append((prefix + entry.name, key))
                    newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            except OSError:  # vanished between the listing and the stat
                continue
    return tuple(sorted(found)), newest


def read_stamp(root: Path) -> Stamp:
    """Stat the watched files, then hash them (in that order: a write between the two shows
    as a changed stat at the next look, never as a change missed)."""
    stats = folder_stats(root)
    hashes: dict[str, str] = {}
    for rel, _key in stats or ():
        try:
            hashes[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError as exc:  # unreadable or gone: a state of its own, the load reports it
            hashes[rel] = f"unreadable: {exc.strerror or exc}"
    return Stamp(stats, hashes)


def digest_of(hashes: Mapping[str, str] | None) -> str:
    """The digest of a folder whose files hash as given (None: no folder at all)."""
    total = hashlib.sha256()
    if hashes is None:
        total.update(b"no folder\0")
    else:
        for rel in sorted(hashes):
            total.update(f"{rel}\0{hashes[rel]}\n".encode())
    return total.hexdigest()


def import_graph(folder: str | Path) -> Mapping[str, frozenset[str]]:
    """What the last load of folder saw each of its files import, by relative path: the
    import statements run while loading (not those inside functions, run later)."""
    return _imports.get(os.path.abspath(folder), {})


@contextmanager
def _recording_imports(edges: dict[str, set[str]]) -> Iterator[None]:
    """Record, by module name, what each module imports while the folder loads.

    `from _words import WORD` leaves no trace in the importing module but a copied value; an
    edit of _words.py must still count as a change of the jobs that import it.
    """
    original = builtins.__import__

    def recording(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        module = original(name, globals, locals, fromlist or (), level)
        importer = globals.get("__name__") if globals else None
        if isinstance(importer, str):
            try:
                package = globals.get("__package__") if globals else None
                parent = package if isinstance(package, str) else None
                target = importlib.util.resolve_name("." * level + name, parent)
            except (ImportError, ValueError, TypeError):
                return module
            found = edges.setdefault(importer, set())
            found.add(target)
            found.update(f"{target}.{item}" for item in fromlist or () if item != "*")
        return module

    builtins.__import__ = recording
    try:
        yield
    finally:
        builtins.__import__ = original


def _file_graph(edges: Mapping[str, set[str]], root: Path) -> dict[str, frozenset[str]]:
    """Module-name edges -> relative-path edges, between files of the folder only."""

    # Strings, not Paths, and each module once: a folder of thousands of job files each
    # importing `scheduler` must not pay for it.
    prefix = os.path.join(str(root), "")
    by_module: dict[str, str | None] = {}

    def file_of(name: str) -> str | None:
        if name not in by_module:
            origin = getattr(sys.modules.get(name), "__file__", None)
            path = os.path.abspath(origin) if isinstance(origin, str) else ""
            inside = path.startswith(prefix)
            by_module[name] = path[len(prefix) :].replace(os.sep, "/") if inside else None
        return by_module[name]

    graph: dict[str, frozenset[str]] = {}
    for importer, targets in edges.items():
        source = file_of(importer)
        if source is None:
            continue
        files = {f for f in map(file_of, targets) if f is not None and f != source}
        if files:
            graph[source] = frozenset(files | graph.get(source, frozenset()))
    return graph


def last_stamp(folder: str | Path, specs: Mapping[str, JobSpec] | None = None) -> Stamp | None:
    """The stamp of the last load of folder in this process (or its parent, before a fork).

    With `specs`, only if that load succeeded and returned these very definitions.
    """
    entry = _stamps.get(os.path.abspath(folder))
    if entry is None:
        return None
    stamp, loaded = entry
    if specs is None:
        return stamp
    if loaded is None or loaded.keys() != specs.keys():
        return None
    return stamp if all(loaded[name] is spec for name, spec in specs.items()) else None


def _default_zone(given: str | None) -> tuple[str | None, list[Problem]]:
    source = "default_tz" if given is not None else "SCHED_TZ"
    name = given if given is not None else env_default_tz()
    try:
        return check_tz(name), []
    except InvalidOption as exc:
        return None, [SettingProblem(source, 0, None, str(exc), expected_line(exc.expected))]


def job_files(root: Path) -> list[Path]:
    """Every `*.py` under root, sorted, skipping names that start with '_' or '.'."""
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        found.extend(
            Path(current, f)
            for f in sorted(files)
            if f.endswith(".py") and not f.startswith(("_", "."))
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@contextmanager
def _importable(root: Path) -> Iterator[str]:
    """Put root on sys.path and give its files a package name no other folder shares."""
    _forget()
    prefix = "_sched_jobs_" + hashlib.sha1(str(root).encode()).hexdigest()[:12]
    before = set(sys.modules)
    # Appended, not inserted first: a job file named like an installed module (queue.py,
    # email.py) must not shadow it for the rest of the process. The folder stays on sys.path
    # after loading because job code may import its helpers lazily, at run time in the horse;
    # the next load_jobs takes it off before adding its own.
    if str(root) not in sys.path:
        sys.path.append(str(root))
        _left["path"] = [str(root)]
    try:
        _add_package(prefix, root)
        yield prefix
    finally:
        # Only modules of the folder itself: forgetting a third-party package would import it
        # twice (and some extension modules refuse that).
        _left["modules"] = [
            name
            for name, module in list(sys.modules.items())
            if name not in before and (name.startswith(prefix) or _inside(module, root))
        ]


def _forget() -> None:
    """Undo what the last load left: its sys.path entry and the modules it imported."""
    for folder in _left["path"]:
        if folder in sys.path:
            sys.path.remove(folder)
    for name in _left["modules"]:
        sys.modules.pop(name, None)
    _left["path"], _left["modules"] = [], []


def _inside(module: types.ModuleType | None, root: Path) -> bool:
    origin = getattr(module, "__file__", None)
    if not isinstance(origin, str):
        paths = list(getattr(module, "__path__", None) or [])
        origin = paths[0] if paths and isinstance(paths[0], str) else None
    return origin is not None and Path(os.path.abspath(origin)).is_relative_to(root)


def _add_package(name: str, folder: Path) -> None:
    """Register a package for folder, so relative imports between job files work."""
    if name in sys.modules:
        return
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(folder)]
    sys.modules[name] = package


def _import_file(path: Path, root: Path, prefix: str, collector: Collector) -> None:
    parts = path.relative_to(root).with_suffix("").parts
    for depth in range(1, len(parts)):
        _add_package(".".join((prefix, *parts[:depth])), root.joinpath(*parts[:depth]))
    name = ".".join((prefix, *parts))
    if name in sys.modules:
        return  # already imported by another job file during this load
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        collector.problems.append(_syntax_problem(exc, path))
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        collector.problems.append(_import_problem(exc, path))


def _syntax_problem(exc: SyntaxError, path: Path) -> Problem:
    if exc.filename is None or not os.path.isfile(exc.filename):
        return _import_problem(exc, path)  # compile() of a string inside the job code
    message = f"syntax error: {exc.msg}"
    if exc.text and exc.text.strip():
        message += f" in {exc.text.strip()!r}"
    return Problem(display_path(exc.filename), exc.lineno or 1, None, message)


def _import_problem(exc: BaseException, path: Path) -> Problem:
    """Point at the deepest line of the job file in the traceback, and say where it was raised."""
    target = os.path.abspath(path)
    line, raised = 1, None
    for frame, lineno in _frames(exc.__traceback__):
        filename = os.path.abspath(frame.f_code.co_filename)
        if filename == _HERE:
            continue  # the import recorder passing the error on: not where it was raised
        if filename == target:
            line = lineno
        raised = (filename, lineno)
    detail = str(exc)
    message = f"import failed: {type(exc).__name__}" + (f": {detail}" if detail else "")
    if raised is not None and raised[0] != target and os.path.isfile(raised[0]):
        message += f" (raised at {display_path(raised[0])}:{raised[1]})"
    return Problem(display_path(path), line, None, message)


def _frames(tb: types.TracebackType | None) -> Iterator[tuple[types.FrameType, int]]:
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def _unique(specs: Iterable[JobSpec]) -> list[JobSpec]:
    """Drop re-runs of one definition (a job file imported again by another job file)."""
    seen: set[tuple[str, int, str]] = set()
    out = []
    for spec in specs:
        key = (spec.path, spec.line, spec.name)
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


def _duplicates(specs: list[JobSpec]) -> list[Problem]:
    first: dict[str, JobSpec] = {}
    problems = []
    for spec in specs:
        if spec.name in first:
            problems.append(
                Problem(
                    spec.path,
                    spec.line,
                    spec.name,
                    f"duplicate job name {spec.name!r}, first defined at {first[spec.name].where}",
                    "expected unique names; give one of them another name=",
                )
            )
        else:
            first[spec.name] = spec
    return problems


def summarize(
    specs: Mapping[str, JobSpec] | Iterable[JobSpec], folder: str | Path | None = None
) -> str:
    """One line for `sched check`, e.g. '4 jobs OK in jobs/ (3 python, 1 command)'."""
    items = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
    if folder is None and items:
        folder = os.path.commonpath([os.path.dirname(os.path.abspath(s.path)) for s in items])
    where = f" in {display_path(folder).rstrip('/')}/" if folder is not None else ""
    if not items:
        return f"no jobs defined{where}"
    python = sum(1 for s in items if s.kind == "python")
    commands = len(items) - python
    kinds = []
    if python:
        kinds.append(f"{python} python")
    if commands:
        kinds.append(f"{commands} command{'s' if commands != 1 else ''}")
    plural = "s" if len(items) != 1 else ""
    return f"{len(items)} job{plural} OK{where} ({', '.join(kinds)})"
