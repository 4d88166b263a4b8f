"""Runs in bench/.venvs/taskiq."""

from __future__ import annotations

import asyncio

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from taskiq import AsyncBroker
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

broker: AsyncBroker = RedisStreamBroker(url=CONFIG.redis_url)
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

