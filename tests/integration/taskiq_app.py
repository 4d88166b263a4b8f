"""A taskiq application as its users write it. Only the import lines name Conveyor.

Settings come from the environment, as in a real deployment: ``REDIS_URL`` for the
broker and results, ``DATA_REDIS_URL``/``DATA_PREFIX`` for what the tasks write, and
``ENVIRONMENT=pytest`` switches to the in-memory broker (taskiq's testing recipe).
"""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio import Redis

from conveyor.compat.taskiq import (
    AsyncBroker,
    Context,
    InMemoryBroker,
    LabelScheduleSource,
    ListRedisScheduleSource,
    RedisAsyncResultBackend,
    RedisStreamBroker,
    SimpleRetryMiddleware,
    TaskiqDepends,
    TaskiqEvents,
    TaskiqScheduler,
    TaskiqState,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
DATA_REDIS_URL = os.environ.get("DATA_REDIS_URL", "redis://localhost:6379/0")
DATA_PREFIX = os.environ.get("DATA_PREFIX", "app")

broker: AsyncBroker = (
    RedisStreamBroker(url=REDIS_URL)
    .with_result_backend(RedisAsyncResultBackend(redis_url=REDIS_URL, result_ex_time=600))
    .with_middlewares(SimpleRetryMiddleware(default_retry_count=3))
)
if os.environ.get("ENVIRONMENT") == "pytest":
    broker = InMemoryBroker().with_middlewares(SimpleRetryMiddleware(default_retry_count=3))

redis_source = ListRedisScheduleSource(REDIS_URL)
scheduler = TaskiqScheduler(broker=broker, sources=[LabelScheduleSource(broker), redis_source])


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def open_resources(state: TaskiqState) -> None:
    state.data = Redis.from_url(DATA_REDIS_URL)
    state.greeting = "hello from WORKER_STARTUP"


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def close_resources(state: TaskiqState) -> None:
    await state.data.aclose()


@broker.on_event(TaskiqEvents.CLIENT_STARTUP)
async def client_started(state: TaskiqState) -> None:
    state.client_started = True


@broker.task
async def add(a: int, b: int) -> int:
    return a + b


@broker.task(task_name="flaky", retry_on_error=True, max_retries=3)
async def flaky(context: Context = TaskiqDepends()) -> int:
    retries = int(context.message.labels.get("_retries", 0))
    if retries < 2:
        raise RuntimeError(f"run {retries + 1} fails")
    return retries + 1


@broker.task(retry_on_error=True, max_retries=2)
def always_fails(reason: str) -> None:
    raise ValueError(reason)


@broker.task(timeout=0.2)
async def too_slow() -> None:
    import asyncio

    await asyncio.Event().wait()  # slower than its timeout: ends only when cancelled


@broker.task(team="billing")
async def describe(
    number: int,
    context: Context = TaskiqDepends(),
    state: TaskiqState = TaskiqDepends(),
) -> dict[str, Any]:
    return {
        "task_id": context.message.task_id,
        "task_name": context.message.task_name,
        "labels": context.message.labels,
        "args": context.message.args,
        "kwargs": context.message.kwargs,
        "greeting": state.greeting,
        "same_state": context.state is state,
        "same_broker": context.broker is broker,
    }


@broker.task(schedule=[{"cron": "* * * * * *", "args": ["label"]}])
async def heartbeat(source: str, state: TaskiqState = TaskiqDepends()) -> None:
    await state.data.rpush(f"{DATA_PREFIX}:beats", source)


@broker.task
async def record(source: str, state: TaskiqState = TaskiqDepends()) -> None:
    await state.data.rpush(f"{DATA_PREFIX}:records", source)
