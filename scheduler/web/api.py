"""`/api/v1/...`: JSON with exactly the shapes of the CLI's `--json`, and its OpenAPI document.

| path                      | same as                              |
|---------------------------|--------------------------------------|
| `/api/v1/jobs`            | `sched list --json`                  |
| `/api/v1/jobs/{job}`      | one element of it                    |
| `/api/v1/jobs/{job}/next` | `sched next JOB --json [-n N] [--from ISO]` |
| `/api/v1/runs`            | `sched history [--job] --json` with its filters |
| `/api/v1/runs/{run_id}`   | `sched show RUN_ID --json`           |
| `/api/v1/workers`         | `sched workers --json`               |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scheduler import cli_output
from scheduler.errors import StoreError, UnknownRun
from scheduler.model import JobSpec, RunStatus
from scheduler.options import listed_schema
from scheduler.store import Store
from scheduler.web.inputs import BadInput, parse_limit, parse_statuses, parse_when, parse_zone

MAX_NEXT = 10_000
MAX_HISTORY = 10_000


class NotFound(LookupError):
    """No such job or run."""


def list_rows(store: Store, specs: Mapping[str, JobSpec]) -> list[dict[str, Any]]:
    """`sched list --json`."""
    last = store.last_runs(list(specs))
    paused = store.paused_jobs()
    now = datetime.now(UTC)
    return [cli_output.list_row(s, last.get(s.name), s.name in paused, now) for s in specs.values()]


def routes(store: Store, specs: Mapping[str, JobSpec]) -> list[Route]:
    """The API's routes over one store and the job definitions."""

    def jobs(request: Request) -> Any:
        return list_rows(store, specs)

    def job(request: Request) -> Any:
        name = request.path_params["job"]
        if name not in specs:
            raise NotFound(f"no job {name!r}; GET /api/v1/jobs lists them")
        return list_rows(store, {name: specs[name]})[0]

    def next_fires(request: Request) -> Any:
        name = request.path_params["job"]
        spec = specs.get(name)
        if spec is None:
            raise NotFound(f"no job {name!r}; GET /api/v1/jobs lists them")
        if spec.cron is None and spec.every_s is None:
            return []
        count = parse_limit(request.query_params.get("n"), "n", default=5, high=MAX_NEXT)
        after = parse_when(request.query_params.get("from"), "from") or datetime.now(UTC)
        return cli_output.next_rows(spec, after, count, parse_zone(request.query_params.get("tz")))

    def runs(request: Request) -> Any:
        q = request.query_params
        found = store.iter_history(
            job=q.get("job") or None,
            statuses=parse_statuses(q.getlist("status")),
            since=parse_when(q.get("since"), "since"),
            until=parse_when(q.get("until"), "until"),
            limit=parse_limit(q.get("limit"), "limit", default=50, high=MAX_HISTORY),
        )
        return [r.to_json() for r in found]

    def run(request: Request) -> Any:
        try:
            return store.get_run(request.path_params["run_id"]).to_json()
        except UnknownRun as exc:
            raise NotFound(str(exc)) from None

    def workers(request: Request) -> Any:
        from scheduler.cli_output import worker_json

        return [worker_json(row) for row in store.workers()]

    def document(request: Request) -> Any:
        return openapi()

    return [
        Route("/api/v1/openapi.json", _json(document)),
        Route("/api/v1/jobs", _json(jobs)),
        Route("/api/v1/jobs/{job}", _json(job)),
        Route("/api/v1/jobs/{job}/next", _json(next_fires)),
        Route("/api/v1/runs", _json(runs)),
        Route("/api/v1/runs/{run_id}", _json(run)),
        Route("/api/v1/workers", _json(workers)),
    ]


def _json(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await run_in_threadpool(handler, request)
        except BadInput as exc:
            return _error(400, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except StoreError as exc:
            return _error(503, f"cannot read the store: {exc}")
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return endpoint


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


# -- the OpenAPI document --------------------------------------------------------------------


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One run, as `sched show RUN_ID --json` prints it; times are ISO-8601 UTC.",
    "required": ["id", "job", "status", "scheduled_for"],
    "properties": {
        "id": {"type": "string"},
        "job": {"type": "string"},
        "scheduled_for": {"type": "string"},
        "enqueued_at": _nullable("string"),
        "started_at": _nullable("string"),
        "finished_at": _nullable("string"),
        "duration_s": _nullable("number"),
        "status": {"type": "string", "enum": [str(s) for s in RunStatus]},
        "reason": _nullable("string"),
        "exit_code": _nullable("integer"),
        "signal": _nullable("string"),
        "attempt": {"type": "integer"},
        "trigger": {"type": "string", "enum": ["schedule", "manual", "retry", "catchup"]},
        "worker": _nullable("string"),
        "pid": _nullable("integer"),
        "max_rss_kb": _nullable("integer"),
        "cpu_s": _nullable("number"),
        "output": _nullable("string"),
        "error": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "string"},
        },
        "queue": {"type": "string"},
        "timeout_s": _nullable("number"),
        "result": {"description": "The JSON value the function returned, if any."},
        "retry_of": _nullable("string"),
        "retry": _nullable("string"),
    },
    "additionalProperties": False,
}

JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One job, as an element of `sched list --json`.",
    "required": ["job", "schedule", "tz", "paused"],
    "properties": {
        "job": {"type": "string"},
        "kind": {"type": "string", "enum": ["python", "command"]},
        "schedule": {"type": "string"},
        "description": {"type": "string"},
        **listed_schema(),
        "where": {"type": "string"},
        "paused": {"type": "boolean"},
        "next_fire": _nullable("string"),
        "next_fire_local": _nullable("string"),
        "last_status": _nullable("string"),
        "last_run": _nullable("string"),
        "last_run_at": _nullable("string"),
    },
    "additionalProperties": False,
}

FIRE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One fire time, as an element of `sched next --json`.",
    "required": ["job", "at", "local", "tz", "job_tz"],
    "properties": {
        "job": {"type": "string"},
        "at": {"type": "string"},
        "local": {"type": "string"},
        "tz": {"type": "string", "description": "The zone `local` is shown in."},
        "job_tz": {"type": "string", "description": "The job's zone, which decides the times."},
    },
    "additionalProperties": False,
}

WORKER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One live worker, as an element of `sched workers --json`.",
    "required": ["id", "host", "pid", "queues", "current", "heartbeat_at"],
    "properties": {
        "id": {"type": "string"},
        "host": _nullable("string"),
        "pid": _nullable("integer"),
        "queues": {"type": "array", "items": {"type": "string"}},
        "current": _nullable("string"),
        "heartbeat_at": _nullable("string"),
    },
    "additionalProperties": False,
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {400: "a parameter cannot be used", 404: "no such job or run", 503: "no store"}
    return {str(c): _ok(_ref("Error"), texts[c]) for c in codes}


WHEN = {
    "type": "string",
    "description": "A duration ago (`2h`, `30m`) or an ISO time with an offset.",
}


def _param(name: str, where: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, **extra}


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document."""
    statuses = {"type": "string", "enum": [str(s) for s in RunStatus]}
    job_param = _param("job", "path", {"type": "string"}, required=True)
    get = "get"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sched dashboard API",
            "version": "1",
            "description": "Read-only JSON with the shapes of the CLI's --json output.",
        },
        "paths": {
            "/api/v1/jobs": {
                get: {
                    "summary": "Jobs (sched list --json)",
                    "responses": {
                        "200": _ok({"type": "array", "items": _ref("Job")}, "every job"),
                        **_errors(503),
                    },
                }
            },
            "/api/v1/jobs/{job}": {
                get: {
                    "summary": "One job",
                    "parameters": [job_param],
                    "responses": {"200": _ok(_ref("Job"), "the job"), **_errors(404, 503)},
                }
            },
            "/api/v1/jobs/{job}/next": {
                get: {
                    "summary": "Next fire times (sched next JOB --json)",
                    "parameters": [
                        job_param,
                        _param(
                            "n", "query", {"type": "integer", "minimum": 1, "maximum": MAX_NEXT}
                        ),
                        _param("from", "query", {"type": "string", "format": "date-time"}),
                        _param("tz", "query", {"type": "string"}),
                    ],
                    "responses": {
                        "200": _ok({"type": "array", "items": _ref("Fire")}, "fire times"),
                        **_errors(400, 404),
                    },
                }
            },
            "/api/v1/runs": {
                get: {
                    "summary": "Run history, newest first (sched history --json)",
                    "parameters": [
                        _param("job", "query", {"type": "string"}),
                        _param(
                            "status",
                            "query",
                            {"type": "array", "items": statuses},
                            style="form",
                            explode=True,
                        ),
                        _param("since", "query", WHEN),
                        _param("until", "query", WHEN),
                        _param(
                            "limit",
                            "query",
                            {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
                        ),
                    ],
                    "responses": {
                        "200": _ok({"type": "array", "items": _ref("Run")}, "runs"),
                        **_errors(400, 503),
                    },
                }
            },
            "/api/v1/runs/{run_id}": {
                get: {
                    "summary": "One run (sched show RUN_ID --json)",
                    "parameters": [_param("run_id", "path", {"type": "string"}, required=True)],
                    "responses": {"200": _ok(_ref("Run"), "the run"), **_errors(404, 503)},
                }
            },
            "/api/v1/workers": {
                get: {
                    "summary": "Live workers (sched workers --json)",
                    "responses": {
                        "200": _ok({"type": "array", "items": _ref("Worker")}, "workers"),
                        **_errors(503),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Run": RUN_SCHEMA,
                "Job": JOB_SCHEMA,
                "Fire": FIRE_SCHEMA,
                "Worker": WORKER_SCHEMA,
                "Error": ERROR_SCHEMA,
            }
        },
    }
