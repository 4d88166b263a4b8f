"""Runs in bench/.venvs/saq. Worker: `saq peers.saq_app.settings`."""

from __future__ import annotations

import asyncio
from typing import Any

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from saq import Queue

queue = Queue.from_url(CONFIG.redis_url, name="bench")


async def bench_task(ctx: dict[str, Any], *, task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        await asyncio.sleep(sleep)
    record(task_id, started)
    return task_id


settings: dict[str, Any] = {"queue": queue, "functions": [bench_task]}
if CONFIG.concurrency is not None:
    settings["concurrency"] = CONFIG.concurrency


class App(PeerApp):
    async def start(self) -> None:
        await queue.connect()

    async def stop(self) -> None:
        await queue.disconnect()

    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await queue.enqueue("bench_task", task_id=task_id, sleep=sleep)
