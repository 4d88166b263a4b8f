"""taskiq's module layout and its programmatic API on Conveyor (issue 16, items 1 and 8):
every import path taskiq code uses works once ``taskiq`` becomes
``conveyor.compat.taskiq`` (and ``taskiq_redis`` ``conveyor.compat.taskiq_redis``), and
names to the same objects; what Conveyor does not run is refused by name, not faked.
``taskiq.api`` runs a worker and a scheduler as asyncio tasks; ``gather()`` waits for
several results; ``ProgressTracker`` reports progress.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import conveyor.compat.taskiq as taskiq
from conveyor.compat.taskiq import (
    AsyncBroker,
    Context,
    TaskiqDepends,
    TaskiqEvents,
    TaskiqResult,
    TaskiqResultTimeoutError,
    TaskiqScheduler,
    TaskiqState,
    gather,
)
from conveyor.compat.taskiq.api import run_receiver_task, run_scheduler_task
from conveyor.compat.taskiq.depends.progress_tracker import ProgressTracker, TaskState
from conveyor.errors import ConfigurationError
from tests.conftest import eventually, fast_app

# (submodule of taskiq, names it holds) -> the same objects as conveyor.compat.taskiq's
MIRRORS = {
    "abc": ["AsyncBroker", "AsyncResultBackend"],
    "abc.broker": ["AsyncBroker", "AsyncTaskiqDecoratedTask"],
    "abc.middleware": ["TaskiqMiddleware"],
    "abc.result_backend": ["AsyncResultBackend", "TaskiqResult"],
    "abc.schedule_source": ["ScheduleSource"],
    "schedule_sources": ["LabelScheduleSource"],
    "schedule_sources.label_based": ["LabelScheduleSource"],
    "scheduler.scheduler": ["TaskiqScheduler", "ScheduledTask"],
    "scheduler.scheduled_task": ["ScheduledTask"],
    "scheduler.scheduled_task.task": ["ScheduledTask"],
    "scheduler.created_schedule": ["CreatedSchedule"],
    "message": ["TaskiqMessage", "BrokerMessage"],
    "result": ["TaskiqResult"],
    "result.result": ["TaskiqResult"],
    "exceptions": [
        "NoResultError",
        "ResultGetError",
        "ResultIsReadyError",
        "SecurityError",
        "SendTaskError",
        "TaskiqError",
        "TaskiqResultTimeoutError",
    ],
    "context": ["Context"],
    "state": ["TaskiqState"],
    "events": ["TaskiqEvents"],
    "kicker": ["AsyncKicker"],
    "decor": ["AsyncTaskiqDecoratedTask"],
    "task": ["AsyncTaskiqTask"],
    "funcs": ["gather"],
    "brokers.inmemory_broker": ["InMemoryBroker"],
}

REDIS_NAMES = [
    "ListQueueBroker",
    "ListRedisScheduleSource",
    "RedisAsyncResultBackend",
    "RedisScheduleSource",
    "RedisStreamBroker",
]
REDIS_MODULES = {
    "redis_broker": ["ListQueueBroker", "RedisStreamBroker"],
    "redis_backend": ["RedisAsyncResultBackend"],
    "schedule_source": ["RedisScheduleSource"],
    "list_schedule_source": ["ListRedisScheduleSource"],
    "exceptions": ["ResultIsMissingError"],
}


@pytest.mark.parametrize(("module", "names"), sorted(MIRRORS.items()))
def test_taskiq_submodules_name_the_same_objects(module: str, names: list[str]) -> None:
    mirrored = importlib.import_module(f"conveyor.compat.taskiq.{module}")
    for name in names:
        assert getattr(mirrored, name) is getattr(taskiq, name), f"taskiq.{module}.{name}"
    assert set(names) <= set(mirrored.__all__)


def test_taskiq_redis_names_the_same_objects() -> None:
    redis = importlib.import_module("conveyor.compat.taskiq_redis")
    for name in REDIS_NAMES:
        assert getattr(redis, name) is getattr(taskiq, name)
    for module, names in REDIS_MODULES.items():
        mirrored = importlib.import_module(f"conveyor.compat.taskiq_redis.{module}")
        for name in names:
            assert getattr(mirrored, name) is getattr(redis, name)


def test_zeromq_broker_runs_on_the_embedded_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ZeroMQ's pub/sub joins an API and its workers on one host; so does the SQLite file
    monkeypatch.setenv("CONVEYOR_BROKER_URL", f"sqlite:///{tmp_path / 'zmq.db'}")
    broker = taskiq.ZeroMQBroker("tcp://0.0.0.0:5555", "tcp://localhost:5555")
    assert broker.conveyor.settings.broker_url.startswith("sqlite:///")
    zmq = importlib.import_module("conveyor.compat.taskiq.brokers.zmq_broker")
    assert zmq.ZeroMQBroker is taskiq.ZeroMQBroker
    scheduled = importlib.import_module("conveyor.compat.taskiq.scheduler.scheduled_task")
    assert not hasattr(scheduled, "CronSpec")


async def test_a_custom_broker_sends_through_its_own_kick() -> None:
    sent: list[taskiq.BrokerMessage] = []

    class MyBroker(AsyncBroker):  # taskiq's "extending taskiq" example
        def __init__(self) -> None:
            super().__init__()

        async def kick(self, message: taskiq.BrokerMessage) -> None:
            sent.append(message)

    broker = MyBroker()

    @broker.task(team="core")
    async def hello(name: str) -> str:
        return f"hello {name}"

    handle = await hello.kiq("you")
    assert [m.task_id for m in sent] == [handle.task_id]
    body = json.loads(sent[0].message)
    assert body["task_name"] == hello.task_name and body["args"] == ["you"]
    assert sent[0].labels == {"team": "core"}
    with pytest.raises(ConfigurationError, match="listen"):
        await broker._worker_started()  # a Conveyor worker cannot serve its listen()


@pytest.mark.parametrize(
    "name",
    [
        "ListQueueClusterBroker",
        "RedisStreamClusterBroker",
        "ListQueueSentinelBroker",
        "RedisStreamSentinelBroker",
        "RedisAsyncClusterResultBackend",
        "RedisAsyncSentinelResultBackend",
        "RedisClusterScheduleSource",
        "RedisSentinelScheduleSource",
    ],
)
def test_cluster_and_sentinel_classes_say_they_come_with_scale_out(name: str) -> None:
    cls = getattr(importlib.import_module("conveyor.compat.taskiq_redis"), name)
    with pytest.raises(ConfigurationError, match="Redis Cluster and Sentinel support"):
        cls("redis://localhost:7000", queue_name="q")


def test_pubsub_brokers_are_refused_as_broadcast() -> None:
    from conveyor.compat.taskiq_redis import PubSubBroker, PubSubSentinelBroker

    for cls in (PubSubBroker, PubSubSentinelBroker):
        with pytest.raises(ConfigurationError, match="broadcasts every task"):
            cls("redis://localhost")


# -- taskiq.api ------------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[AsyncBroker]:
    """A broker started as a client, as an application starts it."""
    broker = AsyncBroker(conveyor=fast_app("memory://"))
    await broker.startup()
    try:
        yield broker
    finally:
        await broker.shutdown()


async def test_run_receiver_task_runs_a_worker_until_cancelled(client: AsyncBroker) -> None:
    events: list[str] = []

    @client.on_event(TaskiqEvents.WORKER_STARTUP)
    async def started(state: TaskiqState) -> None:
        events.append("startup")

    @client.on_event(TaskiqEvents.WORKER_SHUTDOWN)
    async def stopped(state: TaskiqState) -> None:
        events.append("shutdown")

    @client.task
    async def double(n: int, context: Context = TaskiqDepends()) -> tuple[int, bool]:
        return n * 2, context.broker.is_worker_process

    receiver = asyncio.create_task(run_receiver_task(client, max_async_tasks=4))
    result = await (await double.kiq(21)).wait_result(timeout=10)
    assert result.return_value == (42, True)
    assert events == ["startup"]
    receiver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiver
    assert events == ["startup", "shutdown"]
    assert client.is_worker_process is False
    assert client.conveyor.is_connected  # the client's connection is the client's


async def test_run_scheduler_task_fires_schedules_until_cancelled() -> None:
    broker = AsyncBroker(conveyor=fast_app("memory://", schedule_refresh=0.05))
    fired: list[str] = []

    @broker.task(schedule=[{"interval": 1, "schedule_id": "beat"}])
    async def beat(context: Context = TaskiqDepends()) -> None:
        fired.append(context.message.labels["schedule_id"])

    scheduler = TaskiqScheduler(broker, sources=[taskiq.LabelScheduleSource(broker)])
    running = asyncio.create_task(
        run_scheduler_task(scheduler, run_startup=True, interval=timedelta(seconds=0.05))
    )
    await eventually(lambda: broker.conveyor.is_connected, what="the scheduler's startup")
    receiver = asyncio.create_task(run_receiver_task(broker))
    await eventually(lambda: fired, timeout=10, what="a tick of the 1 s schedule")
    assert fired[0] == "beat"
    for task in (receiver, running):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await scheduler.shutdown()
    assert not broker.conveyor.is_connected


async def test_run_scheduler_task_connects_and_closes_a_broker_it_started() -> None:
    broker = AsyncBroker(conveyor=fast_app("memory://"))
    scheduler = TaskiqScheduler(broker, sources=[])
    running = asyncio.create_task(run_scheduler_task(scheduler))
    await eventually(lambda: broker.conveyor.is_connected, what="the connection")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not broker.conveyor.is_connected


# -- gather ----------------------------------------------------------------------------


async def test_gather_returns_results_in_order_and_times_out(client: AsyncBroker) -> None:
    release = asyncio.Event()

    @client.task
    async def slow(n: int) -> int:
        await release.wait()
        return n

    @client.task
    async def fast(n: int) -> int:
        return n

    async with client.conveyor.worker(concurrency=4):
        blocked = await slow.kiq(1)
        with pytest.raises(TaskiqResultTimeoutError) as raised:
            await gather(blocked, await fast.kiq(2), timeout=0.1)
        assert raised.value.timeout == 0.1
        release.set()
        results = await gather(await fast.kiq(3), blocked, await fast.kiq(4))
    assert [r.return_value for r in results] == [3, 1, 4]
    assert all(isinstance(r, TaskiqResult) for r in results)


# -- ProgressTracker -------------------------------------------------------------------


async def test_progress_tracker_reports_state_and_meta(client: AsyncBroker) -> None:
    go_on = asyncio.Event()

    @client.task
    async def resize(path: str, progress: ProgressTracker[int] = TaskiqDepends()) -> str:
        await progress.set_progress(TaskState.STARTED, 10)
        await go_on.wait()
        await progress.set_progress(TaskState.SUCCESS)  # keeps the last meta
        return path

    async with client.conveyor.worker(concurrency=2):
        task = await resize.kiq("a.png")
        started = await eventually(task.get_progress, what="the first report")
        assert (started.state, started.meta) == (TaskState.STARTED, 10)
        assert await client.result_backend.get_progress(task.task_id) == started
        go_on.set()
        assert (await task.wait_result(timeout=10)).return_value == "a.png"
    final: Any = await task.get_progress()
    assert (final.state, final.meta) == (TaskState.SUCCESS, 10)
    assert final.model_dump() == {"state": "SUCCESS", "meta": 10}
