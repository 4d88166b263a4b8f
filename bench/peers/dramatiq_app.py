"""Runs in bench/.venvs/dramatiq. Worker: `dramatiq peers.dramatiq_app`."""

from __future__ import annotations

import time

import dramatiq
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=CONFIG.redis_url)
if CONFIG.results:
    from dramatiq.results import Results
    from dramatiq.results.backends.redis import RedisBackend

    broker.add_middleware(Results(backend=RedisBackend(url=CONFIG.redis_url)))
dramatiq.set_broker(broker)


_options = {"store_results": True} if CONFIG.results else {}


@dramatiq.actor(queue_name="bench", **_options)
def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        time.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    def enqueue_one(self, task_id: int, sleep: float) -> None:
        bench_task.send(task_id, sleep)
