"""Runs in bench/.venvs/arq. Worker: `arq peers.arq_app.WorkerSettings`."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp

REDIS = RedisSettings.from_dsn(CONFIG.redis_url)


async def bench_task(ctx: dict[str, Any], task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        await asyncio.sleep(sleep)
    record(task_id, started)
    return task_id


class WorkerSettings:
    functions: ClassVar[list[Any]] = [bench_task]
    redis_settings = REDIS
    keep_result = 3600 if CONFIG.results else 0
    if CONFIG.concurrency is not None:
        max_jobs = CONFIG.concurrency


class App(PeerApp):
    pool: ArqRedis

    async def start(self) -> None:
        self.pool = await create_pool(REDIS)

    async def stop(self) -> None:
        await self.pool.aclose()

    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await self.pool.enqueue_job("bench_task", task_id, sleep)
