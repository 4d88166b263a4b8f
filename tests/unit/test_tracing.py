"""OpenTelemetry: a publish span per enqueue, a process span per attempt, one trace from
the caller through the task, with the messaging semantic conventions; on every broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import Conveyor, fixed
from conveyor.observability.tracing import TracingHook


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def of_task(spans: tuple[ReadableSpan, ...], prefix: str, task_id: str) -> ReadableSpan:
    (span,) = [
        s for s in named(spans, prefix) if (s.attributes or {})["messaging.message.id"] == task_id
    ]
    return span


async def test_enqueue_and_execution_make_one_trace(
    app: Conveyor, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    app.add_hook(TracingHook(provider))
    tracer = provider.get_tracer("test")
    seen: dict[str, object] = {}

    @app.task(name="child_work", queue="default")
    async def child_work() -> None:
        with tracer.start_as_current_span("inside"):
            pass

    @app.task(name="sync_work")
    def sync_work() -> None:
        seen["sync_parent"] = trace.get_current_span().get_span_context().span_id

    async with app.worker(concurrency=2):
        with tracer.start_as_current_span("request") as request:
            handle = await child_work.kiq()
            sync_handle = await sync_work.kiq()
        await handle.get(timeout=5)
        await sync_handle.get(timeout=5)

    spans = exporter.get_finished_spans()
    trace_id = request.get_span_context().trace_id
    publish = of_task(spans, "publish", handle.task_id)
    process = of_task(spans, "process", handle.task_id)
    (inside,) = named(spans, "inside")
    assert publish.name == "publish default" and publish.kind is SpanKind.PRODUCER
    assert process.name == "process default" and process.kind is SpanKind.CONSUMER
    assert dict(publish.attributes or {}) == {
        "messaging.system": "conveyor",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "default",
        "messaging.message.id": handle.task_id,
        "conveyor.task.name": "child_work",
    }
    assert process.attributes is not None
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["conveyor.task.attempt"] == 1
    # caller -> publish -> process -> the task's own span, in one trace
    assert {s.context.trace_id for s in (publish, process, inside)} == {trace_id}
    assert publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert inside.parent is not None and inside.parent.span_id == process.context.span_id
    assert process.status.status_code is StatusCode.OK
    # a def task on the thread pool sees its process span as the current one
    assert seen["sync_parent"] == of_task(spans, "process", sync_handle.task_id).context.span_id


async def test_failures_and_retries_are_recorded(
    app: Conveyor, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    app.add_hook(TracingHook(provider))

    @app.task(name="fails", retries=1, backoff=fixed(0.0))
    async def fails() -> None:
        raise ValueError("broken")

    async with app.worker(concurrency=1):
        handle = await fails.kiq()
        await handle.wait_result(timeout=5)

    attempts = sorted(
        named(exporter.get_finished_spans(), "process"),
        key=lambda s: (s.attributes or {})["conveyor.task.attempt"],
    )
    assert [(s.attributes or {})["conveyor.task.status"] for s in attempts] == [
        "retrying",
        "failed",
    ]
    for span in attempts:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: broken"
        (event,) = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == "ValueError"
        assert "broken" in str((event.attributes or {})["exception.stacktrace"])
    (publish,) = named(exporter.get_finished_spans(), "publish")
    assert {s.parent.span_id for s in attempts if s.parent} == {publish.context.span_id}


async def test_an_idempotent_duplicate_publish_is_marked(
    app: Conveyor, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    app.add_hook(TracingHook(provider))

    @app.task(name="once")
    async def once() -> None: ...

    first = await once.with_options(key="k-1").kiq()
    second = await once.with_options(key="k-1").kiq()
    assert first.task_id == second.task_id
    spans = named(exporter.get_finished_spans(), "publish")
    assert len(spans) == 2
    assert (spans[1].attributes or {})["conveyor.duplicate_of"] == first.task_id
    assert "conveyor.duplicate_of" not in (spans[0].attributes or {})


def test_open_spans_are_bounded() -> None:
    from conveyor.observability.tracing import _Open

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    held = _Open(limit=2)
    for n in range(3):
        held.put(str(n), tracer.start_span(str(n)))
    assert held.pop("0") is None  # the oldest went unended, hence unexported
    assert held.pop("2") is not None
