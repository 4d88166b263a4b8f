"""OpenTelemetry tracing (``pip install 'conveyor-tasks[otel]'``: opentelemetry-api).

:class:`TracingHook` makes one PRODUCER span per enqueue and one CONSUMER span per
attempt, and carries the trace context in ``Message.headers`` (W3C ``traceparent`` /
``tracestate``, or whatever propagator you configured), so an HTTP request, the tasks it
enqueues and the spans those tasks make are one trace::

    from conveyor.observability.tracing import TracingHook
    app.add_hook(TracingHook())            # uses the global tracer provider

Span names and attributes follow the OpenTelemetry messaging semantic conventions
(1.27+, where ``publish`` became ``send``):

==============================  =====================  ===========================
attribute                       ``publish <queue>``    ``process <queue>``
==============================  =====================  ===========================
span kind                       PRODUCER               CONSUMER
messaging.system                ``conveyor``           ``conveyor``
messaging.operation.type        ``send``               ``process``
messaging.operation.name        ``publish``            ``process``
messaging.destination.name      the queue              the queue
messaging.message.id            the task id            the task id
conveyor.task.name              the task               the task
conveyor.task.attempt                                  1, 2, ...
==============================  =====================  ===========================

The process span's parent is the publish span (one message per process span, so the
conventions allow it), and it is the current span while the task runs, in async tasks
and in ``def`` tasks on the thread pool alike. A failed attempt gets status ERROR with
the exception recorded as an event (type, message, stack trace); a retried one also
``conveyor.task.retry_delay``. The publish span ends when the broker accepted the
message (``after_enqueue``); one whose publish raised, or a scheduler tick another
scheduler had already enqueued, is never ended and so never exported.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "conveyor.observability.tracing needs opentelemetry-api; "
        "install it with: pip install 'conveyor-tasks[otel]'"
    ) from exc

import msgspec

from conveyor.hooks import Hook

if TYPE_CHECKING:
    from conveyor.deps import Context
    from conveyor.message import Message
    from conveyor.result import ErrorInfo, Result

__all__ = ["TracingHook"]

SYSTEM = "conveyor"


class _Open:
    """Spans begun by one hook call and ended by a later one, keyed by task id. Bounded:
    an entry whose end never comes (a publish that raised, a task released at shutdown)
    is dropped unended, which means unexported, once ``limit`` newer ones arrive."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()  # kiq_sync runs producer hooks on the portal thread
        self._items: OrderedDict[str, tuple[Span, object]] = OrderedDict()

    def put(self, key: str, span: Span, token: object = None) -> None:
        with self._lock:
            self._items[key] = (span, token)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def pop(self, key: str) -> tuple[Span, object] | None:
        with self._lock:
            return self._items.pop(key, None)


class TracingHook(Hook):
    """Spans for enqueue and execution, with the trace context carried in the message.

    ``tracer_provider`` defaults to the global one (``trace.set_tracer_provider``).
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, max_open: int = 10_000
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            own_version = version("conveyor-tasks")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            own_version = None
        self.tracer = trace.get_tracer("conveyor", own_version, tracer_provider=tracer_provider)
        self._publishing = _Open(max_open)
        self._processing = _Open(max_open)

    # -- producer ----------------------------------------------------------------------

    async def before_enqueue(self, message: Message) -> Message:
        span = self.tracer.start_span(
            f"publish {message.queue}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": message.queue,
                "messaging.message.id": message.task_id,
                "conveyor.task.name": message.task,
            },
        )
        headers = dict(message.headers)
        propagate.inject(headers, context=trace.set_span_in_context(span))
        self._publishing.put(message.task_id, span)
        return msgspec.structs.replace(message, headers=headers)

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        found = self._publishing.pop(message.task_id)
        if found is None:
            return
        span = found[0]
        if task_id != message.task_id:  # an idempotency key matched: nothing new was sent
            span.set_attribute("conveyor.duplicate_of", task_id)
        span.end()

    # -- consumer ----------------------------------------------------------------------

    async def before_execute(self, message: Message, context: Context) -> None:
        parent = propagate.extract(message.headers)
        span = self.tracer.start_span(
            f"process {message.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": message.queue,
                "messaging.message.id": message.task_id,
                "conveyor.task.name": message.task,
                "conveyor.task.attempt": context.attempt,
            },
        )
        # current for the task itself: runs in this asyncio task, and def tasks get a copy
        # of its context on the thread pool
        token = otel_context.attach(trace.set_span_in_context(span))
        self._processing.put(message.task_id, span, token)

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        found = self._processing.pop(message.task_id)
        if found is None:
            return
        span, token = found
        span.set_attribute("conveyor.task.status", str(result.status))
        if result.error is not None:
            _record_error(span, result.error)
        else:
            span.set_status(Status(StatusCode.OK))
        _end(span, token)

    async def on_retry(
        self, message: Message, attempt: int, delay: float, error: ErrorInfo
    ) -> None:
        found = self._processing.pop(message.task_id)
        if found is None:
            return
        span, token = found
        span.set_attribute("conveyor.task.status", "retrying")
        span.set_attribute("conveyor.task.retry_delay", delay)
        _record_error(span, error)
        _end(span, token)


def _record_error(span: Span, error: ErrorInfo) -> None:
    span.add_event(
        "exception",
        {
            "exception.type": error.type,
            "exception.message": error.message,
            "exception.stacktrace": error.traceback,
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{error.type}: {error.message}"))


def _end(span: Span, token: object) -> None:
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]
