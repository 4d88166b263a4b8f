"""Runs in bench/.venvs/taskiq-aio-pika."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from taskiq import AsyncBroker
from taskiq_aio_pika import AioPikaBroker, Queue
from taskiq_redis import RedisAsyncResultBackend

QUEUE = "bench_taskiq"
broker: AsyncBroker = AioPikaBroker(
    CONFIG.amqp_url,
    qos=CONFIG.concurrency or 100,
    task_queues=[Queue(name=QUEUE)],
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
        connection = await aio_pika.connect(CONFIG.amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in (QUEUE, "taskiq.dead_letter", "taskiq.delay"):
                await channel.queue_delete(name)
        return {}
