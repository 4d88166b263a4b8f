"""Runs in bench/.venvs/ardiq. Worker: `ardiq run peers.ardiq_app:app`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ardiq import Ardiq
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp

_kwargs: dict[str, Any] = {"result_ttl_ms": 300_000 if CONFIG.results else 0}
if CONFIG.concurrency is not None:
    _kwargs["concurrency"] = CONFIG.concurrency
app = Ardiq(redis_url=CONFIG.redis_url, queue_name="bench", **_kwargs)


@app.task()
async def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        await asyncio.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await bench_task.enqueue(task_id, sleep)

    async def enqueue_many(self, task_ids: Sequence[int], sleep: float) -> None:
        await app.enqueue_many([bench_task.prepare(i, sleep) for i in task_ids])
