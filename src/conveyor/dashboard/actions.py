"""The dashboard's actions (POST): abort, requeue, delete, pause, resume, run now, and the
login. Every action goes through :func:`_guarded`, which refuses it in read-only mode
(403) and without a valid CSRF token (403) before the handler runs; the access
middleware has already refused unauthenticated requests (401). See auth.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from conveyor.dashboard.auth import CSRF_FIELD, CSRF_HEADER, SCOPE_KEY, base_path, local_target
from conveyor.scheduler.book import UnknownSchedule

if TYPE_CHECKING:
    from conveyor.dashboard.app import Dashboard

__all__ = ["login", "routes"]

MAX_FORM_BYTES = 256 * 1024  # a bulk form with thousands of ids stays far below this

Form = dict[str, list[str]]
Handler = Callable[["Dashboard", Request, Form], Awaitable[Response]]


async def _form(request: Request) -> Form | None:
    """The urlencoded body (None if it is too large or not a form). Parsed here rather
    than with ``request.form()``, which needs python-multipart for any form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in {"application/x-www-form-urlencoded", ""}:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _first(form: Form, name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def _guarded(dash: Dashboard, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if dash.access.read_only:
            return PlainTextResponse("this dashboard is read-only: actions are disabled", 403)
        form = await _form(request)
        if form is None:
            return PlainTextResponse("send a urlencoded form of at most 256 KiB", 400)
        if request.scope.get(SCOPE_KEY) != "bearer":  # browsers never add Bearer headers
            if dash.access.cross_site(request.headers):
                return PlainTextResponse("cross-site request refused", 403)
            given = _first(form, CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
            if not dash.access.check_csrf(given):
                return PlainTextResponse(
                    "missing or stale CSRF token: reload the page and try again", 403
                )
        return await handler(dash, request, form)

    return endpoint


def _back(dash: Dashboard, request: Request, name: str, done: str, **params: str) -> Response:
    query: dict[str, str | int] = {"done": done}
    return RedirectResponse(dash.link(request, name, query, **params), status_code=303)


async def abort(dash: Dashboard, request: Request, form: Form) -> Response:
    app = await dash.ready()
    task_id = _first(form, "task_id")
    if not task_id:
        return PlainTextResponse("task_id is required", 400)
    outcome = await app.abort(task_id)
    return _back(dash, request, "task", f"abort-{outcome.value}", task_id=task_id)


async def abort_workflow(dash: Dashboard, request: Request, form: Form) -> Response:
    app = await dash.ready()
    workflow_id = _first(form, "workflow_id")
    if not workflow_id:
        return PlainTextResponse("workflow_id is required", 400)
    state = await app.workflow(workflow_id).status(tasks=0)
    if state.status != "running":
        return _back(dash, request, "workflow", "workflow-ended", workflow_id=workflow_id)
    stopped = await app.workflow(workflow_id).abort()
    query = {"done": "workflow-aborted", "n": stopped}
    url = dash.link(request, "workflow", query, workflow_id=workflow_id)
    return RedirectResponse(url, status_code=303)


async def requeue_task(dash: Dashboard, request: Request, form: Form) -> Response:
    app = await dash.ready()
    task_id = _first(form, "task_id")
    moved = await app.broker.requeue_dead([task_id]) if task_id else 0
    url = dash.link(request, "task", {"done": "requeued", "n": moved}, task_id=task_id)
    return RedirectResponse(url, status_code=303)


async def dead_letters(dash: Dashboard, request: Request, form: Form) -> Response:
    """Requeue or delete the selected dead letters (``id`` repeated, ``action``)."""
    app = await dash.ready()
    ids = [i for i in form.get("id", []) if i]
    action = _first(form, "action")
    if action not in {"requeue", "delete"}:
        return PlainTextResponse("action must be requeue or delete", 400)
    queue = _first(form, "queue")
    if not ids:
        return _back(dash, request, "dead_letters", "none-selected")
    if action == "requeue":
        count = await app.broker.requeue_dead(ids)
    else:
        count = await app.broker.delete_dead(ids)
    done = "requeued" if action == "requeue" else "deleted"
    url = dash.link(request, "dead_letters", {"done": done, "n": count, "queue": queue})
    return RedirectResponse(url, status_code=303)


async def schedule(dash: Dashboard, request: Request, form: Form) -> Response:
    """Pause, resume or run now (``action``) the schedule ``schedule_id``."""
    app = await dash.ready()
    schedule_id, action = _first(form, "schedule_id"), _first(form, "action")
    try:
        if action == "pause":
            await app.schedules.pause(schedule_id)
        elif action == "resume":
            await app.schedules.resume(schedule_id)
        elif action == "run":
            handle = await app.schedules.run_now(schedule_id)
            return _back(dash, request, "task", "ran", task_id=handle.task_id)
        else:
            return PlainTextResponse("action must be pause, resume or run", 400)
    except UnknownSchedule as exc:
        return PlainTextResponse(str(exc), 404)
    return _back(dash, request, "schedules", "paused" if action == "pause" else "resumed")


async def logout(dash: Dashboard, request: Request, form: Form) -> Response:
    response = _back(dash, request, "login", "logged-out")
    response.headers["set-cookie"] = dash.access.clear_cookie(base_path(request.scope))
    return response


async def login(dash: Dashboard, request: Request) -> Response:
    """The login form's POST: a right token sets the session cookie. No CSRF token here:
    the visitor has no session yet, and a forged login would need the token itself."""
    form = await _form(request) or {}
    if dash.access.token is None:
        return PlainTextResponse("this dashboard has no token login", 404)
    if not dash.access.check_token(_first(form, "token")):
        return dash.render(request, "login", {"error": "wrong token", "next": ""}, status=401)
    home = base_path(request.scope)
    # only a path inside the dashboard: never an open redirect to another site
    target = local_target(_first(form, "next"), home) or home
    response = RedirectResponse(target, status_code=303)
    response.headers["set-cookie"] = dash.access.session_cookie(home)
    return response


def routes(dash: Dashboard) -> list[BaseRoute]:
    """The action routes, each guarded."""

    def post(path: str, handler: Handler, name: str) -> Route:
        return Route(path, _guarded(dash, handler), methods=["POST"], name=name)

    return [
        post("/actions/abort", abort, "abort"),
        post("/actions/abort-workflow", abort_workflow, "abort_workflow"),
        post("/actions/requeue", requeue_task, "requeue_task"),
        post("/actions/dead-letters", dead_letters, "dead_letters_action"),
        post("/actions/schedule", schedule, "schedule_action"),
        post("/logout", logout, "logout"),
    ]
