"""Prometheus metrics: task metrics from events, broker metrics read at scrape time, on
every broker; the HTTP server."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor, fixed
from conveyor.brokers.base import Outgoing
from conveyor.observability.metrics import (
    MetricsServer,
    PrometheusHook,
    render_metrics,
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_task_metrics_count_outcomes_durations_retries_and_latency(app: Conveyor) -> None:
    registry = CollectorRegistry()
    app.add_hook(PrometheusHook(registry))

    @app.task(name="works")
    async def works() -> None:
        await asyncio.sleep(0.02)

    @app.task(name="flaky", retries=2, backoff=fixed(0.0))
    async def flaky() -> None:
        raise ValueError("no")

    async with app.worker(concurrency=4):
        for handle in [await works.kiq() for _ in range(3)]:
            await handle.get(timeout=5)
        await (await flaky.kiq()).wait_result(timeout=5)

    body, content_type = await render_metrics(app, registry)
    assert content_type.startswith("text/plain")
    found = samples(body.decode())
    ok = {"task": "works", "queue": "default"}
    bad = {"task": "flaky", "queue": "default"}
    assert value(found, "conveyor_tasks_total", status="succeeded", **ok) == 3
    assert value(found, "conveyor_tasks_total", status="failed", **bad) == 1
    assert value(found, "conveyor_task_retries_total", **bad) == 2
    # every attempt that ended is timed: 3 successes, 2 retried attempts and 1 failure
    assert value(found, "conveyor_task_duration_seconds_count", **ok) == 3
    assert value(found, "conveyor_task_duration_seconds_count", **bad) == 3
    assert value(found, "conveyor_task_duration_seconds_sum", **ok) >= 0.06
    assert value(found, "conveyor_task_duration_seconds_bucket", le="0.01", **ok) == 0
    # latency is measured once per task, on its first attempt
    assert value(found, "conveyor_enqueue_to_start_seconds_count", **ok) == 3
    assert value(found, "conveyor_enqueue_to_start_seconds_count", **bad) == 1


async def test_broker_metrics_are_read_at_scrape_time(app: Conveyor) -> None:
    @app.task(name="blocks", queue="slow")
    async def blocks(gate: str) -> None:
        await asyncio.sleep(10)

    await app.broker.publish([Outgoing(task_id="junk", queue="default", body=b"\xc1")])
    for n in range(3):
        await blocks.kiq(str(n))
    found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
    assert value(found, "conveyor_broker_up") == 1
    assert value(found, "conveyor_queue_depth", queue="slow") == 3
    assert value(found, "conveyor_workers_alive") == 0

    async with app.worker(concurrency=2, queues=["default", "slow"]) as worker:
        for _ in range(200):
            found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
            if (
                value(found, "conveyor_dead_letters", queue="default") == 1
                and value(found, "conveyor_queue_running", queue="slow") == 2
            ):
                break
            await asyncio.sleep(0.02)
        await worker._heartbeat()
        found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
        assert value(found, "conveyor_dead_letters", queue="default") == 1
        assert value(found, "conveyor_queue_depth", queue="slow") == 1
        assert value(found, "conveyor_queue_running", queue="slow") == 2
        assert value(found, "conveyor_workers_alive") == 1
        assert value(found, "conveyor_schedulers_alive") == 0
        assert value(found, "conveyor_worker_utilization", worker=worker.worker_id) == 1.0
        age = value(found, "conveyor_heartbeat_age_seconds", worker=worker.worker_id, role="worker")
        assert 0 <= age < 5
        worker.grace = 0.0


async def test_a_broker_that_fails_the_scrape_reports_down() -> None:
    from tests.conftest import fast_app

    app = fast_app("memory://")
    async with app:

        async def broken() -> list[Any]:
            raise ConnectionError("down")

        app.broker.queue_depths = broken  # type: ignore[method-assign]
        found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
    assert value(found, "conveyor_broker_up") == 0
    assert not any(name == "conveyor_queue_depth" for name, _ in found)


async def test_the_metrics_server_serves_task_and_broker_metrics(tmp_path: Any) -> None:
    from tests.conftest import fast_app

    app = fast_app(f"sqlite:///{tmp_path / 'm.db'}")
    registry = CollectorRegistry()
    app.add_hook(PrometheusHook(registry))

    @app.task(name="works")
    async def works() -> int:
        return 1

    async with app, app.worker(concurrency=1):
        await (await works.kiq()).get(timeout=5)
        server = MetricsServer(app, 0, "127.0.0.1", registry=registry)
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        finally:
            await asyncio.to_thread(server.close)
    found = samples(text)
    labels = {"task": "works", "queue": "default", "status": "succeeded"}
    assert value(found, "conveyor_tasks_total", **labels) == 1
    assert value(found, "conveyor_broker_up") == 1
    assert value(found, "conveyor_workers_alive") == 1
