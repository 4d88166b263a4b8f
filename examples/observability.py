"""Observability: listen to events, read the event log, render Prometheus metrics, trace
with OpenTelemetry, and log with the task's id on every line.

Run: python examples/observability.py        (docs/observability.md)
Needs the metrics and otel extras (prometheus-client, opentelemetry-api/-sdk).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor import Conveyor, Hook, events, fixed
from conveyor.events import EventLog
from conveyor.observability.logging import configure_logging
from conveyor.observability.metrics import PrometheusHook, render_metrics, serve_metrics
from conveyor.observability.tracing import TracingHook

app = Conveyor("memory://", fetch_wait=0.1, events=True)  # events: the event log, off by default
logger = logging.getLogger("example")


class SlowOrFailed(Hook):
    """on_event is synchronous and inline: keep it short."""

    def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.TaskFailure):
            print(f"  event: {event.task} failed for good: {event.error_message}")


@app.task(name="resize")
async def resize(path: str) -> str:
    logger.info("resizing %s", path)  # carries task_id, task and attempt
    await asyncio.sleep(0.01)
    return path + ".small"


@app.task(name="flaky", retries=1, backoff=fixed(0.0))
def flaky() -> None:
    logger.warning("about to fail")  # a def task on the thread pool: same fields
    raise ConnectionError("upstream down")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        return str(response.read().decode())


async def main() -> None:
    configure_logging("INFO", "json")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app.add_hook(SlowOrFailed())
    app.add_hook(PrometheusHook())  # before starting workers
    app.add_hook(TracingHook(provider))

    async with app:
        async with app.worker(concurrency=4):  # its stop writes the last event batch
            handle = await resize.kiq("a.png")
            await handle.get(timeout=5)
            await (await flaky.kiq()).wait_result(timeout=5)
        task_id = handle.task_id

        print("the event log (what the dashboard reads):")
        log = EventLog.of(app)  # the app's broker, on the running loop
        page = await log.recent(200)  # the last 200 LoggedEvent(id, event), oldest first
        for entry in page:
            print(f"  {entry.id:>3} {entry.event.kind:<10} {getattr(entry.event, 'task', '')}")
        cursor = page[-1].id if page else ""
        new = await log.read(after=cursor, limit=500)  # strictly after the cursor, oldest first
        timeline = await log.timeline(task_id)  # one task's events, oldest first (a scan)
        print(f"  {len(new)} newer; resize's timeline: {[event.kind for event in timeline]}")

        print("the task counters (on by default; the dashboard's charts and totals):")
        counts = await app.broker.counts(since=time.time() - 3600)  # Capability.COUNTS
        print("  resize succeeded:", counts.totals[("resize", "default", "succeeded")])
        print("  minutes with counts:", len(counts.minutes))  # {minute start: {key: n}}

        body, content_type = await render_metrics(app)  # for a /metrics route of your web app
        print("some metrics, as", content_type)
        for line in body.decode().splitlines():
            if line.startswith(("conveyor_tasks_total{", "conveyor_task_retries_total{")):
                print("  " + line)
        server = serve_metrics(app, 0, "127.0.0.1")  # or a server thread; port 0: any free one
        served = await asyncio.to_thread(scrape, server.port)
        server.close()
        print("served /metrics:", "conveyor_workers_alive" in served)

    print("spans:", sorted({span.name for span in exporter.get_finished_spans()}))
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
