"""Runs in bench/.venvs/celery-rabbitmq. Worker: `celery -A peers.celery_rabbitmq_app worker`."""

from __future__ import annotations

import time
from typing import Any

from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from celery import Celery

QUEUE = "bench_celery"
app = Celery(
    "bench",
    broker=CONFIG.amqp_url,
    backend=CONFIG.redis_url if CONFIG.results else None,
)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=not CONFIG.results,
    task_acks_late=True,
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

    def prepare(self) -> dict[str, Any]:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            channel.queue_delete(QUEUE)
        return {}
