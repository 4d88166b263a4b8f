"""The dashboard's pages (GET): each reads the broker, the result store and the event log,
and renders one template. Nothing here changes anything; actions.py does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from conveyor.brokers.base import DeadLetterEntry, WorkerInfo
from conveyor.dashboard.activity import STATUSES, per_minute, search, summarize
from conveyor.dashboard.charts import failure_rate_chart, throughput_chart
from conveyor.errors import TaskNotFound
from conveyor.events import (
    AnyEvent,
    EventLog,
    TaskEvent,
    TaskReceived,
    args_preview,
)
from conveyor.message import MalformedMessage, Message, decode_message
from conveyor.result import TaskStatus

if TYPE_CHECKING:
    from conveyor.dashboard.app import Dashboard

__all__ = [
    "dead_letter",
    "dead_letters",
    "login_form",
    "metrics",
    "overview",
    "schedules",
    "task",
    "tasks",
    "workers",
]

CHART_MINUTES = 30
TASKS_SHOWN = 200
DEAD_LETTERS_SHOWN = 100
PREVIEW_CHARS = 2000  # of a dead letter's decoded arguments, and of a return value
RAW_BYTES = 4096  # of a body shown raw

NOTICES = {
    "abort-dequeued": "Aborted: the task was waiting; it will never run.",
    "abort-signalled": "Abort requested: its worker is cancelling it.",
    "abort-finished": "The task had already ended; nothing changed.",
    "abort-unknown": "No such task, or its result expired.",
    "requeued": "Requeued {n} dead letter(s).",
    "deleted": "Deleted {n} dead letter(s).",
    "paused": "Schedule paused.",
    "resumed": "Schedule resumed.",
    "ran": "Enqueued now, outside the schedule.",
    "none-selected": "Select at least one dead letter first.",
    "logged-out": "Signed out.",
}


def notice(request: Request) -> str:
    """The message for ``?done=...`` after an action (fixed texts only: a link cannot
    make the dashboard show words of its own choosing)."""
    text = NOTICES.get(request.query_params.get("done", ""), "")
    count = request.query_params.get("n", "0")
    return text.format(n=int(count) if count.isdigit() else 0)


async def _events(dash: Dashboard) -> list[AnyEvent]:
    app = await dash.ready()
    return [entry.event for entry in await EventLog.of(app).recent(dash.event_scan)]


@dataclass(frozen=True, slots=True)
class WorkerRow:
    info: WorkerInfo
    utilization: float
    age: float  # seconds since its last heartbeat


def _worker_rows(infos: list[WorkerInfo], now: float) -> tuple[list[WorkerRow], list[WorkerRow]]:
    rows = [
        WorkerRow(w, w.running / w.concurrency if w.concurrency else 0.0, max(now - w.last_seen, 0))
        for w in sorted(infos, key=lambda w: w.worker_id)
    ]
    return (
        [r for r in rows if r.info.role != "scheduler"],
        [r for r in rows if r.info.role == "scheduler"],
    )


async def overview(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    now = app.settings.clock.now()
    depths = await app.broker.queue_depths()
    working, schedulers = _worker_rows(await app.broker.workers(), now)
    logged = await _events(dash)
    minutes = per_minute(logged, now, CHART_MINUTES)
    totals = {
        "succeeded": sum(m.succeeded for m in minutes),
        "failed": sum(m.failed for m in minutes),
        "retried": sum(m.retried for m in minutes),
        "aborted": sum(m.aborted for m in minutes),
    }
    ended = totals["succeeded"] + totals["failed"] + totals["aborted"]
    return dash.render(
        request,
        "overview",
        {
            "depths": depths,
            "workers": working,
            "schedulers": schedulers,
            "totals": totals,
            "failure_rate": totals["failed"] / ended if ended else None,
            "running": sum(w.info.running for w in working),
            "capacity": sum(w.info.concurrency for w in working),
            "waiting": sum(d.ready + d.delayed for d in depths),
            "dead": sum(d.dead for d in depths),
            "throughput": throughput_chart(minutes),
            "failures": failure_rate_chart(minutes),
            "minutes": CHART_MINUTES,
            # workers write the log only with `events` on; the dashboard cannot see their
            # setting, so an empty log is the hint
            "events_on": bool(logged),
        },
    )


async def workers(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    now = app.settings.clock.now()
    working, schedulers = _worker_rows(await app.broker.workers(), now)
    return dash.render(
        request,
        "workers",
        {"workers": working, "schedulers": schedulers, "now": now},
    )


async def tasks(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    query = request.query_params
    text, status, name = query.get("q", ""), query.get("status", ""), query.get("task", "")
    rows = summarize(await _events(dash))
    found = search(rows, text, status, name)
    names = sorted({*app.tasks, *(r.task for r in rows if r.task)})
    return dash.render(
        request,
        "tasks",
        {
            "rows": found[:TASKS_SHOWN],
            "matched": len(found),
            "seen": len(rows),
            "q": text,
            "status": status,
            "task_name": name,
            "statuses": STATUSES,
            "names": names,
            "shown": TASKS_SHOWN,
            "events_on": bool(rows),
        },
    )


def _pretty(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A value as indented JSON when it is JSON-like, else its repr; capped."""
    try:
        text = json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "\n... (truncated)"


def _decoded(entry: DeadLetterEntry) -> Message | None:
    try:
        return decode_message(entry.body)
    except MalformedMessage:
        return None


def _raw(body: bytes) -> str:
    shown = body[:RAW_BYTES]
    text = shown.decode("utf-8", "backslashreplace")
    return text + (f"\n... ({len(body)} bytes)" if len(body) > RAW_BYTES else "")


async def task(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    task_id = request.path_params["task_id"]
    try:
        state = await app.handle(task_id).status()
    except TaskNotFound:
        state = None
    timeline = await EventLog.of(app).timeline(task_id, scan=dash.event_scan)
    dead = await app.broker.get_dead_letter(task_id)
    if state is None and not timeline and dead is None:
        return dash.render(request, "missing", {"what": "task", "ident": task_id}, status=404)
    message = _decoded(dead) if dead is not None else None
    received = [e for e in timeline if isinstance(e, TaskReceived)]
    name = next((e.task for e in reversed(timeline) if isinstance(e, TaskEvent) and e.task), "")
    if state is not None and state.result is not None:
        name = state.result.task or name
    if message is not None:
        call = args_preview(message.args, message.kwargs, PREVIEW_CHARS)
    elif received and received[-1].args:
        call = received[-1].args
    else:
        call = ""
    status = state.status if state is not None else None
    result = state.result if state is not None else None
    return dash.render(
        request,
        "task",
        {
            "task_id": task_id,
            "name": name,
            "state": state,
            "status": status.value if status is not None else "unknown",
            "result": result,
            "return_value": (
                _pretty(result.return_value)
                if result is not None and result.status is TaskStatus.SUCCEEDED
                else None
            ),
            "call": call,
            "call_is_preview": message is None and bool(call),
            "timeline": timeline,
            "dead": dead,
            "can_abort": status is not None and not status.is_terminal,
            "can_requeue": dead is not None,
        },
    )


async def dead_letters(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    queue = request.query_params.get("queue") or None
    entries = await app.broker.dead_letters(queue, limit=DEAD_LETTERS_SHOWN)
    depths = await app.broker.queue_depths()
    rows = [(entry, _decoded(entry)) for entry in entries]
    return dash.render(
        request,
        "dead_letters",
        {
            "rows": rows,
            "queue": queue or "",
            "queues": [d.queue for d in depths if d.dead],
            "total": sum(d.dead for d in depths if queue is None or d.queue == queue),
            "shown": DEAD_LETTERS_SHOWN,
        },
    )


async def dead_letter(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    entry_id = request.path_params["entry_id"]
    entry = await app.broker.get_dead_letter(entry_id)
    if entry is None:
        return dash.render(
            request,
            "missing",
            {"what": "dead letter", "ident": entry_id},
            status=404,
        )
    message = _decoded(entry)
    return dash.render(
        request,
        "dead_letter",
        {
            "entry": entry,
            "message": message,
            "call": args_preview(message.args, message.kwargs, PREVIEW_CHARS) if message else "",
            "labels": _pretty(message.labels) if message and message.labels else "",
            "raw": _raw(entry.body),
        },
    )


async def schedules(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    now = app.settings.clock.now()
    infos = await app.schedules.list()
    _, running = _worker_rows(await app.broker.workers(), now)
    rows = [
        (info.schedule, [] if info.schedule.paused else info.schedule.next_runs(now, 3))
        for info in infos
    ]
    return dash.render(
        request,
        "schedules",
        {"rows": rows, "schedulers": running},
    )


async def metrics(dash: Dashboard, request: Request) -> Response:
    from conveyor.observability.metrics import SnapshotCache, render_metrics

    if dash.metrics_cache is None:  # made here: prometheus-client is an optional extra
        dash.metrics_cache = SnapshotCache()
    body, content_type = await render_metrics(await dash.ready(), cache=dash.metrics_cache)
    return Response(body, media_type=content_type)


async def login_form(dash: Dashboard, request: Request) -> Response:
    if dash.access.token is None:
        return dash.render(request, "missing", {"what": "page", "ident": "login"}, status=404)
    return dash.render(
        request, "login", {"error": "", "next": request.query_params.get("next", "")}
    )
