"""``create_dashboard(app)``: the dashboard as a Starlette ASGI app.

>>> dashboard = create_dashboard(app, token=os.environ["DASHBOARD_TOKEN"])  # doctest: +SKIP
>>> api.mount("/conveyor", dashboard)            # inside FastAPI        # doctest: +SKIP
>>> uvicorn.run(dashboard, port=8000)            # or on its own         # doctest: +SKIP

Routes (all relative to where it is mounted):

==========================  ====  ===========================================
path                        verb  what
==========================  ====  ===========================================
/                           GET   Overview: charts, queue depths, totals
/workers                    GET   live workers and schedulers
/tasks                      GET   recent tasks, searchable (q, status, task)
/tasks/{task_id}            GET   one task: args, result, error, timeline
/dead-letters               GET   the dead-letter queue (queue=...)
/dead-letters/{entry_id}    GET   one dead letter: reason, decoded and raw body
/workflows                  GET   recent workflows, by state (state=...)
/workflows/{workflow_id}    GET   one workflow: its tasks and groups, with states
/schedules                  GET   schedules, next runs, paused state
/metrics                    GET   Prometheus text (``render_metrics``, cached 1 s)
/login, /logout             POST  token login (GET /login shows the form)
/actions/...                POST  abort (a task, a workflow), requeue, delete, pause,
                                  resume, run-now
/static/...                 GET   the CSS and the refresh script
==========================  ====  ===========================================

Any GET page with ``?fragment=1`` returns only its live part: the page's script swaps
it in every ``refresh`` seconds. Without JavaScript, pages are complete as served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from conveyor.app import Conveyor
from conveyor.brokers import redact_url
from conveyor.dashboard import actions, pages
from conveyor.dashboard.auth import (
    Access,
    AccessMiddleware,
    base_path,
    redact_access_log,
)

if TYPE_CHECKING:
    from conveyor.observability.metrics import SnapshotCache

__all__ = ["Dashboard", "create_dashboard"]


def create_dashboard(
    app: Conveyor,
    *,
    token: str | None = None,
    basic_auth: str | tuple[str, str] | None = None,
    read_only: bool = False,
    require_auth: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    refresh: float = 2.0,
    event_scan: int = 5000,
    title: str = "Conveyor",
) -> Starlette:
    """The dashboard of ``app`` as an ASGI app: run it, or mount it in FastAPI.

    ``token`` (a Bearer header, or a login that sets a cookie) and ``basic_auth``
    (``"user:password"``) protect it; ``require_auth=True`` raises
    :class:`~conveyor.errors.ConfigurationError` when neither is given (``conveyor
    dashboard`` sets it for any address but a loopback one). ``read_only`` hides the
    action buttons and refuses actions with 403. ``allowed_hosts`` refuses requests
    for other ``Host`` names (what a DNS-rebinding page would send). ``refresh`` is the
    seconds between live updates (0: none); ``event_scan`` how many recent events the
    Tasks page and the charts read from the event log.

    The app connects on the first request if it is not connected yet (a mounted app
    runs no lifespan of its own), and is closed at shutdown only if the dashboard
    opened it.

    >>> api.mount("/conveyor", create_dashboard(app, read_only=True))  # doctest: +SKIP
    """
    access = Access(token, basic_auth, read_only=read_only, require_auth=require_auth)
    if token is not None:
        redact_access_log()
    dashboard = Dashboard(app, access, refresh=refresh, event_scan=event_scan, title=title)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dashboard.aclose()

    starlette = Starlette(
        routes=dashboard.routes(),
        middleware=[
            Middleware(
                AccessMiddleware,
                access=access,
                unauthorized=dashboard.unauthorized,
                allowed_hosts=allowed_hosts,
            )
        ],
        lifespan=lifespan,
    )
    dashboard.router = starlette.router
    starlette.state.conveyor_dashboard = dashboard
    return starlette


def _clock(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short_clock(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S")


def _precise_clock(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("conveyor.dashboard", "templates"),
        autoescape=True,  # every template is HTML: values are escaped unless marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = _clock
    env.filters["short_clock"] = _short_clock
    env.filters["precise_clock"] = _precise_clock
    env.filters["duration"] = _duration
    return env


class Dashboard:
    """The dashboard's state: the app it shows, its access rules and templates."""

    def __init__(
        self,
        app: Conveyor,
        access: Access,
        *,
        refresh: float = 2.0,
        event_scan: int = 5000,
        title: str = "Conveyor",
    ) -> None:
        self.app = app
        self.access = access
        self.refresh = refresh
        self.event_scan = event_scan
        self.title = title
        self.env = _environment()
        self._opened = False
        self._lock: asyncio.Lock | None = None
        self.router = Router()  # create_dashboard sets the app's router, for links
        # /metrics reads the broker at most once a second, however often it is scraped
        self.metrics_cache: SnapshotCache | None = None

    def routes(self) -> list[BaseRoute]:
        """Every page, action and asset of the dashboard."""

        def page(handler: Callable[..., Any]) -> Callable[[Request], Any]:
            return functools.partial(handler, self)

        return [
            Route("/", page(pages.overview), name="overview"),
            Route("/workers", page(pages.workers), name="workers"),
            Route("/tasks", page(pages.tasks), name="tasks"),
            Route("/tasks/{task_id:path}", page(pages.task), name="task"),
            Route("/dead-letters", page(pages.dead_letters), name="dead_letters"),
            Route("/dead-letters/{entry_id:path}", page(pages.dead_letter), name="dead_letter"),
            Route("/schedules", page(pages.schedules), name="schedules"),
            Route("/workflows", page(pages.workflows), name="workflows"),
            Route("/workflows/{workflow_id:path}", page(pages.workflow), name="workflow"),
            Route("/metrics", page(pages.metrics), name="metrics"),
            Route("/login", page(pages.login_form), name="login", methods=["GET"]),
            Route("/login", page(actions.login), name="login_submit", methods=["POST"]),
            *actions.routes(self),
            Mount(
                "/static",
                app=StaticFiles(packages=[("conveyor.dashboard", "static")]),
                name="static",
            ),
        ]

    # -- the app's connection --------------------------------------------------------

    async def ready(self) -> Conveyor:
        """The app, connected on this event loop (connecting it the first time)."""
        if not self.app.is_connected:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self.app.is_connected:
                    await self.app.connect()
                    self._opened = True
        return self.app

    async def aclose(self) -> None:
        """Close the app if the dashboard connected it."""
        if self._opened:
            self._opened = False
            await self.app.close()

    # -- links and rendering ---------------------------------------------------------

    def link(
        self,
        request: Request,
        name: str,
        query: Mapping[str, Any] | None = None,
        **params: str,
    ) -> str:
        """A path to route ``name`` under the dashboard's mount point (root_path).

        ``request.url_for`` cannot be used: inside a mounted app it resolves names with
        the outer app's router and drops the mount prefix."""
        quoted = {k: quote(v, safe="") for k, v in params.items()}
        path = base_path(request.scope).rstrip("/") + self.router.url_path_for(name, **quoted)
        if query:
            kept = {k: v for k, v in query.items() if v not in (None, "")}
            if kept:
                path += "?" + urlencode(kept, doseq=True)
        return path

    def render(
        self, request: Request, page: str, context: Mapping[str, Any], status: int = 200
    ) -> Response:
        """``pages/<page>.html``, or only ``live/<page>.html`` for ``?fragment=1``."""
        fragment = request.query_params.get("fragment") == "1"
        name = f"live/{page}.html" if fragment else f"pages/{page}.html"
        values = {
            "request": request,
            "link": functools.partial(self.link, request),
            "title": self.title,
            "page": page,
            "csrf": self.access.csrf,
            "can_act": not self.access.read_only,
            "read_only": self.access.read_only,
            "signed_in": request.scope.get("conveyor.dashboard.auth") == "cookie",
            "refresh_ms": int(self.refresh * 1000),
            "broker": redact_url(self.app.settings.broker_url),
            "notice": pages.notice(request),
            **context,
        }
        html = self.env.get_template(name).render(values)
        return HTMLResponse(html, status_code=status)

    async def unauthorized(self, scope: Scope, receive: Receive, send: Send) -> None:
        """401: a login page for browsers (or the basic-auth prompt), text otherwise."""
        request = Request(scope, receive)
        wants_html = "text/html" in request.headers.get("accept", "")
        response: Response
        if self.access.token is None:  # basic auth only: let the browser ask
            response = PlainTextResponse(
                "authentication required",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="Conveyor dashboard", charset="UTF-8"'},
            )
        elif wants_html and request.method == "GET":
            response = self.render(request, "login", {"error": "", "next": request.url.path}, 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="Conveyor dashboard"'
        else:
            response = PlainTextResponse(
                "authentication required: send 'Authorization: Bearer <token>' or log in",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="Conveyor dashboard"'},
            )
        await response(scope, receive, send)
