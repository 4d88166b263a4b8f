"""Runs in bench/.venvs/conveyor. Worker: `conveyor worker peers.conveyor_app:app`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp

from conveyor import Conveyor, Task


def make(url: str, **settings: Any) -> tuple[Conveyor, Task[Any, int], type[PeerApp]]:
    """The benchmark app, task and producer for one broker URL (``settings``: more
    Conveyor settings, e.g. ``events=False``)."""
    app = Conveyor(url, result_ttl=300.0 if CONFIG.results else 0.0, fetch_wait=1.0,
                   **settings)

    @app.task(name="bench_task")
    async def bench_task(task_id: int, sleep: float) -> int:
        started = now()
        if sleep:
            await asyncio.sleep(sleep)
        record(task_id, started)
        return task_id

    class App(PeerApp):
        async def start(self) -> None:
            await app.connect()

        async def stop(self) -> None:
            await app.close()

        async def enqueue_one(self, task_id: int, sleep: float) -> None:
            await bench_task.kiq(task_id, sleep)

        async def enqueue_many(self, task_ids: Sequence[int], sleep: float) -> None:
            await app.enqueue_many([(bench_task, (i, sleep), {}) for i in task_ids])

    return app, bench_task, App


app, bench_task, App = make(f"{CONFIG.redis_url}?prefix=bench")
