"""Runs in bench/.venvs/streaq. Worker: `streaq run peers.streaq_app:worker`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from streaq import Worker

_kwargs: dict[str, Any] = {}
if CONFIG.concurrency is not None:
    _kwargs["concurrency"] = CONFIG.concurrency
worker = Worker(redis_url=CONFIG.redis_url, queue_name="bench", **_kwargs)


@worker.task(ttl=300 if CONFIG.results else 0)
async def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        await asyncio.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    async def start(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        await self.stack.enter_async_context(worker)

    async def stop(self) -> None:
        await self.stack.aclose()

    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await bench_task.enqueue(task_id, sleep)

    async def enqueue_many(self, task_ids: Sequence[int], sleep: float) -> None:
        await worker.enqueue_many([bench_task.enqueue(i, sleep) for i in task_ids])
