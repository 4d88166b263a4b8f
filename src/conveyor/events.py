"""Typed events from workers and schedulers, the one emitter both send them through, and
the capped event log every process of a broker shares.

They live below the worker and the scheduler (which import them) and above nothing but
the message and result types; ``conveyor.observability`` only listens (metrics, tracing,
logs).

Events
======

A worker emits task and heartbeat events, a scheduler emits tick events, through
:meth:`conveyor.Hook.on_event`. They are built only when some hook overrides
``on_event``: with none (and ``events=False``) a worker pays nothing for them.

================  ==================================================  ============================
event (``kind``)  when                                                fields beyond the common ones
================  ==================================================  ============================
TaskReceived      a worker decoded a delivery (``received``)          enqueued_at, not_before,
                                                                      args (a capped preview)
TaskStarted       the task function is about to run (``started``)     enqueued_at, not_before
TaskSucceeded     it returned (``succeeded``)                         duration
TaskRetried       it failed and runs again after ``delay``            duration, delay, error_type,
                  (``retried``)                                       error_message
TaskFailure       it failed with no retry left; dead-lettered         duration, error_type,
                  (``failed``)                                        error_message
TaskDead          dead-lettered without running: malformed, unknown   reason
                  task, bad arguments, poison (``dead``)
TaskAborted       it ended by ``handle.abort()`` (``aborted``)        duration
TaskDeferred      a rate or concurrency limit turned it back; it      reason, delay
                  waits ``delay`` s, uncharged (``deferred``)
WorkerHeartbeat   every ``heartbeat_interval`` (``heartbeat``)        hostname, pid, queues,
                                                                      concurrency, running,
                                                                      processed, utilization,
                                                                      current_tasks
SchedulerTick     a schedule fired (``tick``)                         scheduler, schedule_id,
                                                                      fire_time, task_id, task,
                                                                      fresh
================  ==================================================  ============================

Every event has ``at`` (Unix seconds, from the app's clock) and ``kind`` (the string in
brackets). Every task event also has ``task_id``, ``task`` (the registered name),
``queue``, ``attempt`` (1-based, counted by the broker) and ``worker`` (the worker id that
``conveyor status`` shows). ``duration`` is the seconds the attempt ran. ``fresh`` is False
when another scheduler had already enqueued that tick.

A task's events, in order: received, started, then one of succeeded, retried (and the
next attempt's received, started, ...), failed or aborted. ``dead`` stands alone
(after received when the message could be decoded).

The failure event is :class:`TaskFailure` (Celery's ``task_failure``), named apart from
``conveyor.TaskFailed``, the exception ``handle.get()`` raises.

The event log (what the dashboard reads)
========================================

With the ``events`` setting on (off by default: it costs 11-22% of no-op throughput),
every worker and scheduler writes its events, except heartbeats, to a log on the broker
through its :class:`EventEmitter`, in one batch per event-loop turn: a capped Redis
stream, a SQLite table, a list in memory. It keeps about the last ``events_max``
(10,000) events, across all processes of the broker. Heartbeats are left out because the
live workers are in ``broker.workers()`` already, and because they would crowd task
events out of the cap on a quiet system. Schedulers write their ticks.

Reading it, on a loop where the app is connected::

    log = EventLog.of(app)
    page = await log.recent(200)                 # the last 200, oldest first
    cursor = page[-1].id if page else ""
    while True:                                  # tail it (SSE, short polling)
        new = await log.read(after=cursor, limit=500)   # strictly after the cursor, oldest first
        for entry in new:
            entry.id, entry.event.kind, entry.event.at, entry.event   # a typed event
        if new:
            cursor = new[-1].id
        await asyncio.sleep(1)
    await log.timeline(task_id)                  # one task's events, oldest first

``id`` is an opaque, ordered cursor (a stream id on Redis, a row id on SQLite); ``read``
after an id that was trimmed away starts at the oldest event kept. Events are
telemetry, not a ledger: a worker that is killed loses the events of its last loop turn,
and a batch that cannot be written (broker down) is dropped with a warning, never
retried and never allowed to slow a task down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import reprlib
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor.result import TaskStatus

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.brokers.base import EventStore
    from conveyor.message import Message
    from conveyor.result import Result

__all__ = [
    "AnyEvent",
    "Event",
    "EventEmitter",
    "EventLog",
    "LoggedEvent",
    "SchedulerTick",
    "TaskAborted",
    "TaskDead",
    "TaskDeferred",
    "TaskEvent",
    "TaskFailure",
    "TaskReceived",
    "TaskRetried",
    "TaskStarted",
    "TaskSucceeded",
    "WorkerHeartbeat",
    "args_preview",
    "finished_event",
    "notify",
]

log = logging.getLogger("conveyor.events")


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of every event: ``at`` is when it happened (Unix seconds)."""

    at: float

    @property
    def kind(self) -> str:
        """``received``, ``started``, ..., ``heartbeat``, ``tick``."""
        return str(self.__struct_config__.tag)


class TaskEvent(Event, frozen=True, kw_only=True):
    """What every task event carries."""

    task_id: str
    task: str
    queue: str
    attempt: int
    worker: str


class TaskReceived(TaskEvent, frozen=True, kw_only=True, tag="received"):
    """A worker decoded a delivery. ``not_before`` is 0 unless it was delayed. ``args`` is
    a preview of the call's arguments for the dashboard, at most ``event_args_preview``
    characters ("" when that setting is 0)."""

    enqueued_at: float
    not_before: float = 0.0
    args: str = ""


class TaskStarted(TaskEvent, frozen=True, kw_only=True, tag="started"):
    """The task function is about to run."""

    enqueued_at: float
    not_before: float = 0.0


class TaskSucceeded(TaskEvent, frozen=True, kw_only=True, tag="succeeded"):
    """The attempt returned; ``duration`` is its run time in seconds."""

    duration: float


class TaskRetried(TaskEvent, frozen=True, kw_only=True, tag="retried"):
    """The attempt failed and the task runs again after ``delay`` seconds."""

    duration: float
    delay: float
    error_type: str
    error_message: str


class TaskFailure(TaskEvent, frozen=True, kw_only=True, tag="failed"):
    """The attempt failed with no retry left; the task is in the dead-letter queue."""

    duration: float
    error_type: str
    error_message: str


class TaskDead(TaskEvent, frozen=True, kw_only=True, tag="dead"):
    """Dead-lettered without running (``task`` is "" when the body was not a message)."""

    reason: str


class TaskAborted(TaskEvent, frozen=True, kw_only=True, tag="aborted"):
    """The task was aborted while it ran."""

    duration: float


class TaskDeferred(TaskEvent, frozen=True, kw_only=True, tag="deferred"):
    """A flow limit turned the claimed task back before it ran (docs/flow-control.md):
    it waits ``delay`` seconds, uncharged; ``reason`` says which limit ("rate limited:
    10/s", "concurrency limited: 3 running")."""

    reason: str
    delay: float


class WorkerHeartbeat(Event, frozen=True, kw_only=True, tag="heartbeat"):
    """A worker's periodic report; ``utilization`` is running / concurrency."""

    worker: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    processed: int
    utilization: float
    current_tasks: list[str] = []


class SchedulerTick(Event, frozen=True, kw_only=True, tag="tick"):
    """A schedule fired; ``fresh`` is False when another scheduler enqueued it first
    (``task_id`` is then that copy's id)."""

    scheduler: str
    schedule_id: str
    fire_time: float
    task_id: str
    task: str
    fresh: bool


AnyEvent = (
    TaskReceived
    | TaskStarted
    | TaskSucceeded
    | TaskRetried
    | TaskFailure
    | TaskDead
    | TaskAborted
    | TaskDeferred
    | WorkerHeartbeat
    | SchedulerTick
)


def notify(listeners: Sequence[Callable[[Event], None]], event: Event) -> None:
    """Hand ``event`` to every listener; one that raises is logged and skipped, so a
    listener never changes what the worker or the scheduler does."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            owner = getattr(listener, "__self__", listener)
            log.exception(
                "%s.on_event raised on a %s event; ignoring it", type(owner).__name__, event.kind
            )


def args_preview(args: Sequence[Any], kwargs: Mapping[str, Any], limit: int) -> str:
    """The call as ``'a', 1, key=[1, 2]``, at most ``limit`` characters (ending in "...").

    reprlib bounds the work as well as the text: a 1 MB argument costs no more than a
    short one."""
    if limit <= 0:
        return ""
    shown = _preview_repr(limit)
    parts = [shown.repr(value) for value in args]
    parts += [f"{name}={shown.repr(value)}" for name, value in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


@functools.lru_cache(maxsize=4)
def _preview_repr(limit: int) -> reprlib.Repr:
    shown = reprlib.Repr()
    shown.maxlevel = 3
    shown.maxstring = shown.maxother = shown.maxlong = max(limit, 8)
    shown.maxlist = shown.maxtuple = shown.maxdict = shown.maxset = 10
    return shown


def finished_event(
    message: Message, result: Result[Any], worker: str
) -> TaskSucceeded | TaskFailure | TaskAborted | TaskDead:
    """The terminal event for ``result`` (what ``after_execute`` was called with)."""
    common: dict[str, Any] = {
        "at": result.finished_at,
        "task_id": message.task_id,
        "task": message.task,
        "queue": message.queue,
        "attempt": result.attempts,
        "worker": worker,
    }
    status = result.status
    if status is TaskStatus.SUCCEEDED:
        return TaskSucceeded(**common, duration=result.execution_time)
    if status is TaskStatus.ABORTED:
        return TaskAborted(**common, duration=result.execution_time)
    error = result.error
    if status is TaskStatus.DEAD:
        return TaskDead(**common, reason=error.message if error else "")
    return TaskFailure(
        **common,
        duration=result.execution_time,
        error_type=error.type if error else "",
        error_message=error.message if error else "",
    )


# -- the log ------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)


class LoggedEvent(msgspec.Struct, frozen=True):
    """One event as the log holds it: ``id`` is its cursor for :meth:`EventLog.read`."""

    id: str
    event: AnyEvent


class EventLog:
    """Typed access to a broker's :class:`~conveyor.brokers.base.EventStore`.

    >>> log = EventLog.of(app)                       # doctest: +SKIP
    >>> [e.event.kind for e in await log.recent(3)]  # doctest: +SKIP
    ['started', 'succeeded', 'received']
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store

    @classmethod
    def of(cls, app: Conveyor) -> EventLog:
        """The log of ``app``'s broker, as connected on the running event loop."""
        return cls(app.broker.event_store())

    async def append(self, events: Sequence[Event]) -> None:
        """Append ``events`` in one round trip."""
        if events:
            await self.store.append([_encoder.encode(e) for e in events])

    async def read(self, after: str = "", limit: int = 100) -> list[LoggedEvent]:
        """Up to ``limit`` events strictly after cursor ``after`` ("" = from the oldest
        kept), oldest first."""
        return _decode(await self.store.read(after, limit))

    async def recent(self, limit: int = 100) -> list[LoggedEvent]:
        """The last ``limit`` events, oldest first."""
        return _decode(await self.store.recent(limit))

    async def timeline(self, task_id: str, scan: int = 10_000) -> list[AnyEvent]:
        """The events of one task among the last ``scan`` events, oldest first
        (a scan, not an index: about 10 ms for 10,000 events)."""
        return [
            entry.event
            for entry in await self.recent(scan)
            if getattr(entry.event, "task_id", None) == task_id
        ]


def _decode(rows: Sequence[tuple[str, bytes]]) -> list[LoggedEvent]:
    decoded: list[LoggedEvent] = []
    for entry_id, record in rows:
        try:
            decoded.append(LoggedEvent(entry_id, _decoder.decode(record)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            # written by a newer Conveyor (a kind this one does not know): skip, not fail
            log.debug("skipping event %s that this version cannot decode", entry_id)
    return decoded


class EventEmitter:
    """Where a worker or a scheduler sends its events: to every ``on_event`` listener
    (hooks), and, given a log, to the broker's event log.

    Every event emitted in one event-loop turn goes to the log in one append (like the
    settle batches), from a task this emitter owns; :meth:`aclose` waits for the last
    ones. Nothing waits for the write. Batches are written one after another, in the order
    they were emitted: two appends in flight at once could land in either order, and a
    reader (the dashboard's task list) takes a task's last event as its state. When
    ``max_pending`` batches are already waiting or being written (the broker is slow or
    down), new events are dropped and counted in ``dropped``, so a broker fault costs
    memory for at most that many batches. Heartbeats (``skip``) are
    not logged: the live workers are in ``broker.workers()``.

    >>> emitter = EventEmitter(app.hooks.of("on_event"), EventLog.of(app))  # doctest: +SKIP
    >>> emitter.emit(event)                                                # doctest: +SKIP
    """

    def __init__(
        self,
        listeners: Sequence[Callable[[Event], None]] = (),
        log: EventLog | None = None,
        *,
        skip: tuple[type[Event], ...] = (WorkerHeartbeat,),
        max_pending: int = 8,
        warn_every: float = 30.0,
    ) -> None:
        self.listeners = list(listeners)
        self.log = log
        self.skip = skip
        self.max_pending = max_pending
        self.dropped = 0
        self._buffer: list[Event] = []
        self._scheduled = False
        self._unwritten: deque[list[Event]] = deque()  # the head is being written
        self._writer: asyncio.Task[None] | None = None
        self._warn_every = warn_every
        self._warned_at = float("-inf")

    @property
    def active(self) -> bool:
        """Someone takes events: build them only then (they cost a task ~11-22%)."""
        return bool(self.listeners) or self.log is not None

    def emit(self, event: Event) -> None:
        """Hand ``event`` to the listeners now, and queue it for the log."""
        notify(self.listeners, event)
        if self.log is None or isinstance(event, self.skip):
            return
        self._buffer.append(event)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._buffer = self._buffer, []
        if not batch or self.log is None:
            return
        if len(self._unwritten) >= self.max_pending:
            self.dropped += len(batch)
            self._warn("event log writes are backing up; dropped %d event(s)", len(batch))
            return
        self._unwritten.append(batch)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write(self.log), name="conveyor-events"
            )

    async def _write(self, log_: EventLog) -> None:
        """Append the unwritten batches in order, until none is left."""
        try:
            while self._unwritten:
                batch = self._unwritten[0]
                try:
                    await log_.append(batch)
                except Exception as exc:
                    self.dropped += len(batch)
                    self._warn("could not write %d event(s) to the event log: %s", len(batch), exc)
                finally:
                    self._unwritten.popleft()
        finally:
            self._writer = None  # in the same step as the empty check: no batch is missed

    def _warn(self, text: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned_at >= self._warn_every:
            self._warned_at = now
            log.warning(text, *args)

    async def flush(self, timeout: float = 5.0) -> None:
        """Write what is buffered now and wait (up to ``timeout`` s) for the writes in
        flight (a scheduler does, after a pass: ticks are few, and a pass is not hot)."""
        self._flush()
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Write what is buffered and wait (up to ``timeout`` s) for writes in flight."""
        self._flush()
        if self._writer is not None:
            _, late = await asyncio.wait({self._writer}, timeout=timeout)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)
