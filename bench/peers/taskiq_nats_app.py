"""Runs in bench/.venvs/taskiq-nats."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from taskiq import AsyncBroker
from taskiq_nats import PullBasedJetStreamBroker
from taskiq_redis import RedisAsyncResultBackend

STREAM = "bench_taskiq"
broker: AsyncBroker = PullBasedJetStreamBroker(
    [CONFIG.nats_url],
    subject="bench_taskiq.tasks",
    stream_name=STREAM,
    durable="bench_taskiq",
    pull_consume_batch=100,
)
if CONFIG.results:
    broker = broker.with_result_backend(
        RedisAsyncResultBackend(redis_url=CONFIG.redis_url, result_ex_time=600)
    )


@broker.task
async def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        await asyncio.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    async def start(self) -> None:
        await broker.startup()

    async def stop(self) -> None:
        await broker.shutdown()

    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await bench_task.kiq(task_id, sleep)

    async def prepare(self) -> dict[str, Any]:
        nc = await nats.connect(CONFIG.nats_url)
        try:
            with contextlib.suppress(Exception):  # absent on the first run
                await nc.jetstream().delete_stream(STREAM)
        finally:
            await nc.close()
        return {}
