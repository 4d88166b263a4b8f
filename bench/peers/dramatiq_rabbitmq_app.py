"""Runs in bench/.venvs/dramatiq-rabbitmq. Worker: `dramatiq peers.dramatiq_rabbitmq_app`."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = "bench_dramatiq"
broker = RabbitmqBroker(url=CONFIG.amqp_url, confirm_delivery=True)
if CONFIG.results:
    from dramatiq.results import Results
    from dramatiq.results.backends.redis import RedisBackend

    broker.add_middleware(Results(backend=RedisBackend(url=CONFIG.redis_url)))
dramatiq.set_broker(broker)

_options = {"store_results": True} if CONFIG.results else {}


@dramatiq.actor(queue_name=QUEUE, **_options)
def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        time.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    def enqueue_one(self, task_id: int, sleep: float) -> None:
        bench_task.send(task_id, sleep)

    def prepare(self) -> dict[str, Any]:
        channel = broker.channel
        for name in (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ"):
            channel.queue_delete(name)
        broker.close()
        return {}
