"""Runs in bench/.venvs/huey. Worker: `huey_consumer peers.huey_app.huey`."""

from __future__ import annotations

import os
import time

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.path.join(CONFIG.workdir, "huey.db"),
                  results=CONFIG.results)


@huey.task()
def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        time.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    def enqueue_one(self, task_id: int, sleep: float) -> None:
        bench_task(task_id, sleep)
