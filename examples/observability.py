"""Observability: listen to events, read the event log, render Prometheus metrics, trace
with OpenTelemetry, and log with the task's id on every line.

Run: python examples/observability.py        (docs/observability.md)
Needs the metrics and otel extras (prometheus-client, opentelemetry-api/-sdk).
"""

from __future__ import annotations

import asyncio
import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from conveyor import Conveyor, Hook, fixed
from conveyor.observability import events
from conveyor.observability.events import EventLog
from conveyor.observability.logging import configure_logging
from conveyor.observability.metrics import PrometheusHook, render_metrics
from conveyor.observability.tracing import TracingHook

app = Conveyor("memory://", fetch_wait=0.1)
log = logging.getLogger("example")


class SlowOrFailed(Hook):
    """on_event is synchronous and inline: keep it short."""

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.TaskFailed):
            print(f"  event: {event.task} failed for good: {event.error_message}")


@app.task(name="resize")
async def resize(path: str) -> str:
    log.info("resizing %s", path)  # carries task_id, task and attempt
    await asyncio.sleep(0.01)
    return path + ".small"


@app.task(name="flaky", retries=1, backoff=fixed(0.0))
def flaky() -> None:
    log.warning("about to fail")  # a def task on the thread pool: same fields
    raise ConnectionError("upstream down")


async def main() -> None:
    configure_logging("INFO", "json")
    registry = CollectorRegistry()  # the global one by default; a fresh one here
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app.add_hook(SlowOrFailed())
    app.add_hook(PrometheusHook(registry))
    app.add_hook(TracingHook(provider))

    async with app:
        async with app.worker(concurrency=4):  # its stop writes the last event batch
            await (await resize.kiq("a.png")).get(timeout=5)
            await (await flaky.kiq()).wait_result(timeout=5)

        print("the event log (what the dashboard reads):")
        for entry in await EventLog.of(app).recent(20):
            event = entry.event
            print(f"  {entry.id:>3} {event.kind:<10} {getattr(event, 'task', '')}")

        body, _ = await render_metrics(app, registry)
        print("some metrics:")
        for line in body.decode().splitlines():
            if line.startswith(("conveyor_tasks_total{", "conveyor_task_retries_total{")):
                print("  " + line)

    print("spans:", sorted({span.name for span in exporter.get_finished_spans()}))
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
