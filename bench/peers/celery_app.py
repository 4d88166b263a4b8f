"""Runs in bench/.venvs/celery. Worker: `celery -A peers.celery_app worker`."""

from __future__ import annotations

import time

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from celery import Celery

app = Celery(
    "bench",
    broker=CONFIG.redis_url,
    backend=CONFIG.redis_url if CONFIG.results else None,
)
app.conf.update(
    task_default_queue="bench",
    task_ignore_result=not CONFIG.results,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench_task")
def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        time.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    def enqueue_one(self, task_id: int, sleep: float) -> None:
        bench_task.apply_async((task_id, sleep))
