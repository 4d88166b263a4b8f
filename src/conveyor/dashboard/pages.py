"""The dashboard's pages (GET): each reads the broker (its queues, heartbeats, dead letters
and task counters), the result store and, when workers write it, the event log, and
renders one template. Nothing here changes anything; actions.py does.

What needs no setting: the charts and totals (the task counters), running tasks (the
heartbeats), failures (the dead letters) and any task by id (the broker and the result
store). What needs the event log (``events=True``): searching tasks by name or
arguments, and each task's timeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from conveyor.brokers.base import (
    WORKFLOW_STATES,
    Capability,
    DeadLetterEntry,
    TaskCounts,
    WorkerInfo,
    WorkflowRecord,
)
from conveyor.dashboard.activity import (
    STATUSES,
    counted_minutes,
    first_minute,
    per_minute,
    search,
    summarize,
    task_totals,
)
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
from conveyor.result import TaskState, TaskStatus
from conveyor.workflow.handle import read_workflow
from conveyor.workflow.plan import WorkflowInfo

if TYPE_CHECKING:
    from conveyor.app import Conveyor
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
    "workflow",
    "workflows",
]

CHART_MINUTES = 30
TASKS_SHOWN = 200
FAILURES_SHOWN = 20
DEAD_LETTERS_SHOWN = 100
WORKFLOWS_SHOWN = 100
WORKFLOW_TASKS_SHOWN = 100  # of one workflow's tasks, each a read of its state
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
    "workflow-aborted": "Workflow aborted: {n} of its task(s) stopped, nothing more of it runs.",
    "workflow-ended": "The workflow had already ended; nothing changed.",
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


async def _counts(app: Conveyor, since: float) -> TaskCounts | None:
    """The workers' task counters from ``since`` on; None if the broker keeps none."""
    if Capability.COUNTS not in app.broker.capabilities:
        return None
    return await app.broker.counts(since)


async def overview(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    now = app.settings.clock.now()
    name = request.query_params.get("task", "")
    depths = await app.broker.queue_depths()
    working, schedulers = _worker_rows(await app.broker.workers(), now)
    since = first_minute(now, CHART_MINUTES)
    counted = await _counts(app, since)
    if counted is not None:  # on by default: what every worker counted
        minutes = counted_minutes(counted, now, CHART_MINUTES, name)
        by_task = task_totals(counted, since)
        logged: list[AnyEvent] = []
    else:
        logged = await _events(dash)
        minutes = per_minute(logged, now, CHART_MINUTES, name)
        by_task = []
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
            "by_task": by_task,
            "task_name": name,
            "counted": counted is not None,
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


@dataclass(frozen=True, slots=True)
class RunningRow:
    task_id: str
    worker: str
    hostname: str


@dataclass(frozen=True, slots=True)
class FailureRow:
    entry: DeadLetterEntry
    task: str


async def _by_id(app: Conveyor, task_id: str) -> TaskState | DeadLetterEntry | None:
    """What the broker and the result store know of ``task_id`` (no event log needed)."""
    try:
        return await app.handle(task_id).status()
    except TaskNotFound:
        return await app.broker.get_dead_letter(task_id)


async def tasks(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    query = request.query_params
    text, status, name = query.get("q", ""), query.get("status", ""), query.get("task", "")
    rows = summarize(await _events(dash))
    found = search(rows, text, status, name)
    names = sorted({*app.tasks, *(r.task for r in rows if r.task)})
    running: list[RunningRow] = []
    failures: list[FailureRow] = []
    searching = bool(text or status or name)
    if not searching:  # on by default, from the heartbeats and the dead-letter queue
        running = [
            RunningRow(task_id, w.worker_id, w.hostname)
            for w in sorted(await app.broker.workers(), key=lambda w: w.worker_id)
            for task_id in w.current_tasks
        ]
        letters = await app.broker.dead_letters(limit=FAILURES_SHOWN)
        failures = [FailureRow(e, m.task if (m := _decoded(e)) else "") for e in letters]
    looked_up = None
    wanted = text.strip()
    if wanted and not found and "/" not in wanted:
        looked_up = await _by_id(app, wanted)
    return dash.render(
        request,
        "tasks",
        {
            "searching": searching,
            "running": running,
            "failures": failures,
            "failures_shown": FAILURES_SHOWN,
            "looked_up": looked_up,
            "looked_up_status": _status_text(looked_up),
            "wanted": wanted,
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


def _status_text(found: TaskState | DeadLetterEntry | None) -> str:
    if found is None:
        return ""
    if isinstance(found, DeadLetterEntry):
        return TaskStatus.DEAD.value
    return found.status.value


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
    workflow = None  # a workflow's task ids start with the workflow's id
    if Capability.WORKFLOWS in app.broker.capabilities:
        record = await app.broker.workflow(task_id.split(".", 1)[0])
        workflow = record.workflow_id if record is not None else None
    return dash.render(
        request,
        "task",
        {
            "task_id": task_id,
            "workflow": workflow,
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


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    record: WorkflowRecord
    kind: str
    name: str


async def workflows(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    if Capability.WORKFLOWS not in app.broker.capabilities:
        return dash.render(request, "workflows", {"capable": False, "rows": [], "state": ""})
    state = request.query_params.get("state") or None
    if state not in (None, *WORKFLOW_STATES):
        state = None
    records = await app.broker.workflows(state, limit=WORKFLOWS_SHOWN)
    counts = await app.broker.workflow_counts()
    rows = []
    for record in records:
        try:
            info = msgspec.msgpack.decode(record.info, type=WorkflowInfo)
        except msgspec.DecodeError:
            rows.append(WorkflowRow(record, "?", "(unreadable record)"))
            continue
        rows.append(WorkflowRow(record, info.kind, info.name))
    return dash.render(
        request,
        "workflows",
        {
            "capable": True,
            "rows": rows,
            "state": state or "",
            "states": WORKFLOW_STATES,
            "counts": counts,
            "total": sum(counts.get(s, 0) for s in ([state] if state else WORKFLOW_STATES)),
            "shown": WORKFLOWS_SHOWN,
        },
    )


async def workflow(dash: Dashboard, request: Request) -> Response:
    app = await dash.ready()
    workflow_id = request.path_params["workflow_id"]
    if Capability.WORKFLOWS not in app.broker.capabilities:
        return dash.render(request, "missing", {"what": "workflow", "ident": workflow_id}, 404)
    try:
        state = await read_workflow(app, workflow_id, WORKFLOW_TASKS_SHOWN)
    except TaskNotFound:
        return dash.render(request, "missing", {"what": "workflow", "ident": workflow_id}, 404)
    return dash.render(
        request,
        "workflow",
        {
            "workflow_id": workflow_id,
            "state": state,
            "can_abort": state.status == "running",
        },
    )


async def metrics(dash: Dashboard, request: Request) -> Response:
    from conveyor.observability.metrics import SnapshotCache, render_metrics

    if dash.metrics_cache is None:  # made here: prometheus-client is an optional extra
        dash.metrics_cache = SnapshotCache()
    # conveyor_tasks_total from the broker's counters: one scrape covers every worker
    body, content_type = await render_metrics(
        await dash.ready(), cache=dash.metrics_cache, counts=True
    )
    return Response(body, media_type=content_type)


async def login_form(dash: Dashboard, request: Request) -> Response:
    if dash.access.token is None:
        return dash.render(request, "missing", {"what": "page", "ident": "login"}, status=404)
    return dash.render(
        request, "login", {"error": "", "next": request.query_params.get("next", "")}
    )
