"""What the charts and lists show: outcomes per minute and per task name, from the
workers' task counters (on by default) or from the event log (opt-in), and one row per
task from the event log.

The counters (:class:`~conveyor.brokers.base.Counters`) are summed over every worker and
kept per minute for a day, totals for ever. The event log keeps about the last
``events_max`` events (observability/events.py), so the task search and the charts drawn
from it cover recent activity, not all history: a task whose
events were trimmed away is still found by id (its status comes from the broker and the
result store), but no longer listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from conveyor.brokers.base import TaskCounts
from conveyor.events import (
    AnyEvent,
    SchedulerTick,
    TaskAborted,
    TaskDead,
    TaskDeferred,
    TaskEvent,
    TaskFailure,
    TaskReceived,
    TaskRetried,
    TaskStarted,
    TaskSucceeded,
)

__all__ = [
    "STATUSES",
    "Minute",
    "TaskRow",
    "TaskTotals",
    "counted_minutes",
    "failure_rate",
    "first_minute",
    "per_minute",
    "search",
    "summarize",
    "task_totals",
]

# a task's status as its last event tells it ("queued": only its scheduler tick is known)
STATUSES = (
    "queued",
    "waiting",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "dead",
    "aborted",
)

_STATUS_OF: dict[type[AnyEvent], str] = {
    SchedulerTick: "queued",
    TaskReceived: "running",
    TaskStarted: "running",
    TaskRetried: "retrying",
    TaskSucceeded: "succeeded",
    TaskFailure: "failed",
    TaskDead: "dead",
    TaskAborted: "aborted",
    TaskDeferred: "waiting",  # a flow limit turned it back: its reason is in `error`
}


@dataclass(slots=True)
class TaskRow:
    """One task as its recent events describe it."""

    task_id: str
    task: str
    queue: str = ""
    status: str = "queued"
    attempt: int = 0
    worker: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0
    duration: float | None = None
    error: str = ""
    args: str = ""


def summarize(events: Iterable[AnyEvent]) -> list[TaskRow]:
    """One row per task id, newest activity first; ``events`` are oldest first."""
    rows: dict[str, TaskRow] = {}
    for event in events:
        if isinstance(event, SchedulerTick):
            if event.task_id not in rows:
                rows[event.task_id] = TaskRow(
                    event.task_id, event.task, first_seen=event.at, last_seen=event.at
                )
            continue
        if not isinstance(event, TaskEvent):
            continue
        row = rows.get(event.task_id)
        if row is None:
            row = rows[event.task_id] = TaskRow(event.task_id, event.task, first_seen=event.at)
        row.task = event.task or row.task
        row.queue = event.queue
        row.status = _STATUS_OF[type(event)]
        row.attempt = max(row.attempt, event.attempt)
        row.worker = event.worker
        row.last_seen = event.at
        if isinstance(event, TaskReceived):
            row.args = event.args or row.args
            row.duration, row.error = None, ""
        duration = getattr(event, "duration", None)
        if duration is not None:
            row.duration = duration
        if isinstance(event, TaskRetried | TaskFailure):
            row.error = f"{event.error_type}: {event.error_message}"
        elif isinstance(event, TaskDead | TaskDeferred):
            row.error = event.reason
    return sorted(rows.values(), key=lambda r: r.last_seen, reverse=True)


def search(
    rows: Sequence[TaskRow], text: str = "", status: str = "", task: str = ""
) -> list[TaskRow]:
    """The rows whose id, task name or arguments preview contains ``text`` (any case),
    with ``status`` and task name ``task`` when given."""
    needle = text.strip().lower()
    return [
        row
        for row in rows
        if (
            not needle
            or needle in row.task_id.lower()
            or needle in row.task.lower()
            or needle in row.args.lower()
        )
        and (not status or row.status == status)
        and (not task or row.task == task)
    ]


@dataclass(slots=True)
class Minute:
    """Attempts that ended in one minute, by outcome (``failed`` counts dead too)."""

    start: float
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    aborted: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.retried + self.aborted


def first_minute(now: float, minutes: int = 30) -> float:
    """The start of the first of the last ``minutes`` whole minutes up to ``now``."""
    return now - now % 60 - 60 * (minutes - 1)


def per_minute(
    events: Iterable[AnyEvent], now: float, minutes: int = 30, task: str = ""
) -> list[Minute]:
    """The last ``minutes`` whole minutes up to ``now`` (the current one last), from the
    event log; of task name ``task`` only, when given."""
    first = first_minute(now, minutes)
    buckets = [Minute(first + 60 * i) for i in range(minutes)]
    for event in events:
        if not isinstance(
            event, TaskSucceeded | TaskFailure | TaskDead | TaskRetried | TaskAborted
        ):
            continue
        if task and event.task != task:
            continue
        index = int((event.at - first) // 60)
        if not 0 <= index < minutes:
            continue
        bucket = buckets[index]
        if isinstance(event, TaskSucceeded):
            bucket.succeeded += 1
        elif isinstance(event, TaskRetried):
            bucket.retried += 1
        elif isinstance(event, TaskAborted):
            bucket.aborted += 1
        else:
            bucket.failed += 1
    return buckets


def _add(minute: Minute, status: str, n: int) -> None:
    if status == "succeeded":
        minute.succeeded += n
    elif status == "retried":
        minute.retried += n
    elif status == "aborted":
        minute.aborted += n
    elif status in ("failed", "dead"):
        minute.failed += n


def counted_minutes(
    counts: TaskCounts, now: float, minutes: int = 30, task: str = ""
) -> list[Minute]:
    """:func:`per_minute`, from the workers' task counters."""
    first = first_minute(now, minutes)
    buckets = [Minute(first + 60 * i) for i in range(minutes)]
    for start, counted in counts.minutes.items():
        index = int((start - first) // 60)
        if not 0 <= index < minutes:
            continue
        for (name, _queue, status), n in counted.items():
            if not task or name == task:
                _add(buckets[index], status, n)
    return buckets


@dataclass(slots=True)
class TaskTotals:
    """One task name's outcomes: since counting began (``total``) and in the charts'
    window (``recent``)."""

    task: str
    total: Minute
    recent: Minute


def task_totals(counts: TaskCounts, since: float) -> list[TaskTotals]:
    """Per task name (every queue summed), busiest first: the totals, and what ended in
    the minutes from ``since`` on."""
    rows: dict[str, TaskTotals] = {}

    def row(name: str) -> TaskTotals:
        found = rows.get(name)
        if found is None:
            found = rows[name] = TaskTotals(name, Minute(0.0), Minute(since))
        return found

    for (name, _queue, status), n in counts.totals.items():
        _add(row(name).total, status, n)
    for start, counted in counts.minutes.items():
        if start >= since:
            for (name, _queue, status), n in counted.items():
                _add(row(name).recent, status, n)
    return sorted(rows.values(), key=lambda r: (-r.total.total, r.task))


def failure_rate(minute: Minute) -> float | None:
    """Tasks that ended failed or dead, over all that ended (retried attempts aside, as
    the ``ConveyorFailureRate`` alert in docs/observability.md counts); None: none ended."""
    ended = minute.succeeded + minute.failed + minute.aborted
    return minute.failed / ended if ended else None
