"""The dashboard's ASGI application: pages, actions, live output and the JSON API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from scheduler import actions, display
from scheduler.errors import StoreError, UnknownRun
from scheduler.model import JobSpec, KillCause, RunStatus, iso
from scheduler.store import Store
from scheduler.web import api, security, views
from scheduler.web.cache import Summaries
from scheduler.web.inputs import BadInput, parse_limit, parse_statuses, parse_when
from scheduler.web.svg import run_href

FLASH_COOKIE = "sched_flash"
# A running run's output is polled this often for its live view (as `sched logs -f`).
LIVE_POLL_S = 0.5
MAX_FORM_BYTES = 4096


@dataclass
class Context:
    """What every request handler shares."""

    store: Store
    specs: Mapping[str, JobSpec]
    read_only: bool
    templates: jinja2.Environment
    summaries: Summaries


def create_app(
    store: Store,
    specs: Mapping[str, JobSpec],
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    summaries: Summaries | None = None,
) -> Any:
    """The dashboard over one store and the job definitions, wrapped in its guard."""
    ctx = Context(store, specs, read_only, _templates(), summaries or Summaries(store))
    routes = [
        Route("/", _page(ctx, _overview)),
        Route("/jobs/{name}", _page(ctx, _job)),
        Route("/runs", _page(ctx, _runs)),
        Route("/runs/{run_id}", _page(ctx, _run)),
        Route("/runs/{run_id}/events", _events(ctx)),
        Route("/workers", _page(ctx, _workers)),
        Route("/login", _page(ctx, _login), methods=["GET", "POST"]),
        *api.routes(ctx.store, ctx.specs),
        Mount("/static", StaticFiles(packages=[("scheduler.web", "static")]), name="static"),
    ]
    if not read_only:
        routes += [
            Route("/jobs/{name}/{action:str}", _page(ctx, _job_action), methods=["POST"]),
            Route("/runs/{run_id}/kill", _page(ctx, _kill), methods=["POST"]),
        ]
    app = Starlette(routes=routes)
    return security.Guard(
        app, token=token, allowed_hosts=allowed_hosts or {"127.0.0.1", "localhost"}
    )


# -- templates -------------------------------------------------------------------------------


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("scheduler.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=views.when_text,
        dur=display.human_duration,
        visible=visible,
        runhref=run_href,
        iso=lambda m: iso(m) if m else "",
        ms=lambda ms: datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None,
    )
    env.globals.update(ago=_ago, statuses=[str(s) for s in RunStatus], windows=views.WINDOWS)
    return env


def visible(text: object) -> str:
    """Control characters (terminal escapes included) as visible symbols, not as bytes a
    terminal or browser would act on; newlines and tabs stay."""
    out = []
    for ch in str(text):
        code = ord(ch)
        if code < 32 and ch not in "\n\t":
            out.append(chr(0x2400 + code))
        elif code == 127:
            out.append("\u2421")
        elif 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def _ago(moment: datetime | None) -> str:
    return display.ago(moment, datetime.now(UTC)) if moment else ""


# -- plumbing --------------------------------------------------------------------------------


Handler = Any


def _page(ctx: Context, handler: Handler) -> Any:
    """Wrap a page handler: store calls in a thread, errors as pages people can act on."""

    async def endpoint(request: Request) -> Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await _form(request)
        try:
            return await run_in_threadpool(handler, ctx, request, form)
        except BadInput as exc:
            return _error(ctx, request, 400, str(exc))
        except StoreError as exc:
            return _error(ctx, request, 503, f"cannot read the store: {exc}")
        except HTTPException as exc:
            return _error(ctx, request, exc.status_code, str(exc.detail))

    return endpoint


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def _render(
    ctx: Context, request: Request, template_name: str, status: int = 200, **data: Any
) -> Response:
    flash = request.cookies.get(FLASH_COOKIE)
    template = ctx.templates.get_template(template_name)
    html = template.render(
        request=request,
        path=request.url.path,
        csrf=request.scope.get("state", {}).get("csrf", ""),
        read_only=ctx.read_only,
        flash=_unquote_flash(flash) if flash else None,
        **data,
    )
    response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def _unquote_flash(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)[:300]


def _error(ctx: Context, request: Request, status: int, message: str) -> Response:
    return _render(ctx, request, "error.html", status=status, status_code=status, message=message)


def _redirect(to: str, flash: str) -> Response:
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(
        FLASH_COOKIE, quote(flash[:300]), path="/", httponly=True, samesite="strict"
    )
    return response


def _spec(ctx: Context, name: str) -> JobSpec:
    spec = ctx.specs.get(name)
    if spec is None:
        raise HTTPException(404, f"no job {name!r} in the jobs folder; the overview lists them")
    return spec


# -- pages -----------------------------------------------------------------------------------


def _overview(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    q = request.query_params
    statuses = [s for s in q.getlist("status") if s in (*views.statuses_and_never(),)]
    window = q.get("window", "24h")
    if window not in views.WINDOWS:
        raise BadInput(f"window {window!r}: expected one of {', '.join(views.WINDOWS)}")
    data = views.overview(
        ctx.store,
        ctx.summaries,
        ctx.specs,
        name=q.get("name", ""),
        statuses=statuses,
        window=window,
    )
    return _render(
        ctx,
        request,
        "overview.html",
        view=data,
        name=q.get("name", ""),
        chosen=statuses,
        rows=views.job_rows(data.rows, data.now, ctx.read_only),
    )


def _job(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    spec = _spec(ctx, request.path_params["name"])
    q = request.query_params
    now = datetime.now(UTC)
    window = q.get("window", "auto" if not q.get("from") else "")
    if window == "auto":
        since, until = views.auto_window(ctx.store, spec, now), now
    elif window:
        if window not in views.WINDOWS:
            raise BadInput(f"window {window!r}: expected auto or one of {', '.join(views.WINDOWS)}")
        since, until = now - timedelta(seconds=views.WINDOWS[window]), now
    else:
        since = parse_when(q.get("from"), "from") or now - timedelta(days=1)
        until = parse_when(q.get("to"), "to") or now
        if until <= since:
            raise BadInput("to must be after from")
    page = views.job_page(
        ctx.store,
        ctx.summaries,
        spec,
        since=since,
        until=until,
        statuses=parse_statuses(q.getlist("status")),
        h_since=parse_when(q.get("since"), "since"),
        h_until=parse_when(q.get("until"), "until"),
        skip=parse_limit(q.get("skip"), "skip", default=0, low=0),
        limit=parse_limit(q.get("limit"), "limit", default=50),
    )
    return _render(
        ctx,
        request,
        "job.html",
        page=page,
        window=window,
        more=_more_link(request, page.history),
        query=q,
    )


def _more_link(request: Request, history: views.HistoryPage) -> str | None:
    if history.next_until is None:
        return None
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in ("until", "skip")]
    pairs += [("until", history.next_until), ("skip", str(history.next_skip))]
    return request.url.path + "?" + urlencode(pairs)


def _runs(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    q = request.query_params
    job = q.get("job") or None
    history = views.history_page(
        ctx.store,
        job=job,
        statuses=parse_statuses(q.getlist("status")),
        since=parse_when(q.get("since"), "since"),
        until=parse_when(q.get("until"), "until"),
        skip=parse_limit(q.get("skip"), "skip", default=0, low=0),
        limit=parse_limit(q.get("limit"), "limit", default=50),
    )
    return _render(
        ctx,
        request,
        "runs.html",
        history=history,
        more=_more_link(request, history),
        query=q,
        job=job,
    )


def _run(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    run_id = request.path_params["run_id"]
    try:
        run = ctx.store.get_run(run_id)
    except UnknownRun as exc:
        raise HTTPException(404, str(exc)) from None
    spec = ctx.specs.get(run.job)
    fields = run.to_json()
    return _render(
        ctx,
        request,
        "run.html",
        run=run,
        fields=fields,
        tz=spec.tz if spec else "UTC",
        result=json.dumps(run.result, indent=2) if run.result is not None else None,
    )


def _workers(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    queues = sorted({spec.queue for spec in ctx.specs.values()} | {"default"})
    return _render(
        ctx,
        request,
        "workers.html",
        workers=views.worker_rows(ctx.store),
        queues={q: ctx.store.queue_depth(q) for q in queues},
        running=ctx.store.running_count(),
    )


def _login(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    if request.method == "GET":
        return _render(ctx, request, "login.html", wrong=False)
    if not security.csrf_ok(request.scope, form.get("csrf")):
        raise HTTPException(403, "this form is stale or came from another site; reload and retry")
    guard_token = request.scope.get("state", {}).get("token")
    given = form.get("token", "")
    if guard_token is None or not security.tokens_equal(given, guard_token):
        return _render(ctx, request, "login.html", status=401, wrong=True)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        security.SESSION_COOKIE,
        security.session_value(guard_token),
        path="/",
        httponly=True,
        samesite="strict",
    )
    return response


# -- actions (POST, CSRF-checked; not routed with --read-only) --------------------------------


def _checked(request: Request, form: dict[str, str]) -> str:
    if not security.csrf_ok(request.scope, form.get("csrf")):
        raise HTTPException(403, "this form is stale or came from another site; reload and retry")
    back = form.get("next", "/")
    return back if back.startswith("/") and not back.startswith("//") else "/"


def _job_action(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    back = _checked(request, form)
    spec = _spec(ctx, request.path_params["name"])
    action = request.path_params["action"]
    if action == "trigger":
        run_id = actions.trigger(ctx.store, spec)
        return _redirect(back, f"queued {run_id}")
    if action == "pause":
        changed = ctx.store.pause(spec.name)
        return _redirect(
            back, f"paused {spec.name}" if changed else f"{spec.name} was already paused"
        )
    if action == "resume":
        changed = ctx.store.resume(spec.name)
        text = f"resumed {spec.name}" if changed else f"{spec.name} was not paused"
        return _redirect(back, text)
    raise HTTPException(404, f"no action {action!r}: trigger, pause or resume")


def _kill(ctx: Context, request: Request, form: dict[str, str]) -> Response:
    back = _checked(request, form)
    run_id = request.path_params["run_id"]
    try:
        before = ctx.store.kill(run_id, KillCause.OPERATOR)
    except UnknownRun as exc:
        raise HTTPException(404, str(exc)) from None
    if before == "running":
        message = f"asked the worker of {run_id} to stop it (reason: operator)"
    elif before == "queued":
        message = f"{run_id} was queued: recorded killed (reason: operator)"
    else:
        message = f"{run_id} already ended: {before}"
    return _redirect(back, message)


# -- live output -----------------------------------------------------------------------------


def _events(ctx: Context) -> Any:
    """Server-sent events of a run: `output` (status, bytes so far, tail) whenever it changes,
    then `final` once it has ended, after which the page reloads its fields."""

    async def endpoint(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            first = await run_in_threadpool(ctx.store.live_output, run_id)
        except UnknownRun as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except StoreError as exc:
            return JSONResponse({"error": f"cannot read the store: {exc}"}, status_code=503)

        async def stream() -> AsyncIterator[str]:
            state = first
            last: tuple[str, int] | None = None
            quiet = 0.0
            while True:
                status, total, text = state
                if (status, total) != last:
                    payload = {"status": status, "bytes": total, "output": text}
                    yield f"event: output\ndata: {json.dumps(payload)}\n\n"
                    last, quiet = (status, total), 0.0
                if status not in ("queued", "running"):
                    yield f"event: final\ndata: {json.dumps({'status': status})}\n\n"
                    return
                await asyncio.sleep(LIVE_POLL_S)
                quiet += LIVE_POLL_S
                if quiet >= 15:
                    yield ": still running\n\n"
                    quiet = 0.0
                state = await run_in_threadpool(ctx.store.live_output, run_id)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return endpoint
