"""Runs in bench/.venvs/conveyor-sqlite. Worker: `conveyor worker peers.conveyor_sqlite_app:app`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp

from conveyor import Conveyor

app = Conveyor(
    f"sqlite:///{os.path.join(CONFIG.workdir, 'conveyor.db')}",
    result_ttl=300.0 if CONFIG.results else 0.0,
    fetch_wait=1.0,
)


@app.task
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
