"""Prometheus metrics: task metrics from events, broker metrics read at scrape time, on
every broker; the HTTP server."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import click
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor, fixed
from conveyor.brokers.base import Outgoing
from conveyor.cli.worker import worker as worker_command
from conveyor.observability.metrics import (
    BrokerSnapshot,
    MetricsServer,
    MultiprocessMetrics,
    PrometheusHook,
    SnapshotCache,
    render_metrics,
    serve_metrics,
)
from conveyor.testing import ManualClock
from tests.conftest import eventually, fast_app


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
        # sleep: the work being timed (durations are read with perf_counter, not the clock)
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


async def test_broker_metrics_are_read_at_scrape_time(
    clocked_app: Conveyor, clock: ManualClock
) -> None:
    app = clocked_app

    @app.task(name="blocks", queue="slow")
    async def blocks(gate: str) -> None:
        await asyncio.Event().wait()  # runs until the worker stops

    await app.broker.publish([Outgoing(task_id="junk", queue="default", body=b"\xc1")])
    for n in range(3):
        await blocks.kiq(str(n))
    found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
    assert value(found, "conveyor_broker_up") == 1
    assert value(found, "conveyor_queue_depth", queue="slow") == 3
    assert value(found, "conveyor_workers_alive") == 0

    async with app.worker(concurrency=2, queues=["default", "slow"]) as worker:

        async def settled() -> bool:
            found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
            return (
                value(found, "conveyor_dead_letters", queue="default") == 1
                and value(found, "conveyor_queue_running", queue="slow") == 2
            )

        await eventually(settled, what="the junk dead-lettered and two tasks running")
        await worker._heartbeat()
        clock.advance(0.5)
        found = samples((await render_metrics(app, CollectorRegistry()))[0].decode())
        assert value(found, "conveyor_dead_letters", queue="default") == 1
        assert value(found, "conveyor_queue_depth", queue="slow") == 1
        assert value(found, "conveyor_queue_running", queue="slow") == 2
        assert value(found, "conveyor_workers_alive") == 1
        assert value(found, "conveyor_schedulers_alive") == 0
        assert value(found, "conveyor_worker_utilization", worker=worker.worker_id) == 1.0
        age = value(found, "conveyor_heartbeat_age_seconds", worker=worker.worker_id, role="worker")
        assert age == pytest.approx(0.5)
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


# -- what a scrape costs the broker ----------------------------------------------------


class FakeMonotonic:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the broker reads of scrapes, wherever they come from."""
    from conveyor.observability import metrics

    reads = [0]
    original = metrics.read_snapshot

    async def read_snapshot(*args: Any, **kwargs: Any) -> BrokerSnapshot:
        reads[0] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(metrics, "read_snapshot", read_snapshot)
    return reads


def _snapshot_reader(reads: list[int]) -> Callable[[], BrokerSnapshot]:
    def read() -> BrokerSnapshot:
        reads[0] += 1
        return BrokerSnapshot(now=float(reads[0]))

    return read


def test_the_snapshot_cache_reads_the_broker_once_per_ttl() -> None:
    clock = FakeMonotonic()
    cache = SnapshotCache(ttl=1.0, monotonic=clock)
    reads = [0]
    read = _snapshot_reader(reads)
    first = cache.read(read)
    assert all(cache.read(read) is first for _ in range(1000))  # 1,000 scrapes at once
    clock.now += 0.999
    assert cache.read(read) is first and reads == [1]
    clock.now += 0.001
    assert cache.read(read) is not first and reads == [2]
    # a zero ttl caches nothing: every scrape reads
    uncached = SnapshotCache(ttl=0, monotonic=clock)
    for _ in range(5):
        uncached.read(read)
    assert reads == [7]


def test_the_snapshot_cache_keeps_a_failed_read_too() -> None:
    """A broker that is down is not asked again by every scrape."""
    clock = FakeMonotonic()
    cache = SnapshotCache(ttl=1.0, monotonic=clock)
    calls = [0]

    def down() -> BrokerSnapshot:
        calls[0] += 1
        return BrokerSnapshot(now=0.0, up=False)

    for _ in range(10):
        assert not cache.read(down).up
    assert calls == [1]


def test_concurrent_scrapes_wait_for_the_read_in_flight() -> None:
    cache = SnapshotCache(ttl=60.0)
    started = threading.Event()
    release = threading.Event()
    reads = [0]

    def slow() -> BrokerSnapshot:
        reads[0] += 1
        started.set()
        release.wait(10)
        return BrokerSnapshot(now=1.0)

    got: list[BrokerSnapshot] = []
    threads = [threading.Thread(target=lambda: got.append(cache.read(slow))) for _ in range(20)]
    threads[0].start()
    assert started.wait(10)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert reads == [1] and len(got) == 20 and len({id(s) for s in got}) == 1


def test_ttl_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="ttl"):
        SnapshotCache(ttl=-1)


async def test_the_async_cache_coalesces_concurrent_renders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeMonotonic()
    cache = SnapshotCache(ttl=1.0, monotonic=clock)
    app = fast_app("memory://")
    reads = _counting(monkeypatch)
    async with app:
        pages = await asyncio.gather(
            *(render_metrics(app, CollectorRegistry(), cache=cache) for _ in range(50))
        )
        assert reads == [1]
        assert all(value(samples(body.decode()), "conveyor_broker_up") == 1 for body, _ in pages)
        clock.now += 1.0
        await render_metrics(app, CollectorRegistry(), cache=cache)
        assert reads == [2]
        await render_metrics(app, CollectorRegistry())  # no cache: reads now
        assert reads == [3]


async def test_the_metrics_server_reads_the_broker_once_per_second_however_often_scraped(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeMonotonic()
    app = fast_app(f"sqlite:///{tmp_path / 'm.db'}")
    reads = _counting(monkeypatch)
    async with app:
        server = MetricsServer(app, 0, registry=CollectorRegistry(), monotonic=clock)
        url = f"http://127.0.0.1:{server.port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())

        try:
            texts = [await asyncio.to_thread(scrape) for _ in range(30)]
            assert reads == [1], "30 scrapes within a second: one broker read"
            clock.now += 1.0
            await asyncio.to_thread(scrape)
            assert reads == [2]
        finally:
            await asyncio.to_thread(server.close)
    assert all(value(samples(t), "conveyor_broker_up") == 1 for t in texts)


def test_metrics_listen_on_loopback_unless_told_otherwise() -> None:
    app = fast_app("memory://")
    for server in (MetricsServer(app, 0), serve_metrics(app, 0)):
        try:
            assert server._server.server_address[0] == "127.0.0.1"
        finally:
            server.close()
    multi = MultiprocessMetrics(app, 0)
    try:
        assert multi.server._server.server_address[0] == "127.0.0.1"
    finally:
        multi.close()
    (host,) = [p for p in worker_command.params if p.name == "metrics_host"]
    assert isinstance(host, click.Option) and host.default == "127.0.0.1"
