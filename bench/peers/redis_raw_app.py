"""Runs in bench/.venvs/redis-raw: the ceiling's producer and consumer loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import redis.asyncio as redis
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp
from redis.exceptions import ResponseError

STREAM = "bench:raw"
GROUP = "workers"


async def _connect() -> redis.Redis:
    r = redis.from_url(CONFIG.redis_url)
    try:
        await r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except ResponseError as exc:  # BUSYGROUP: already there
        if "BUSYGROUP" not in str(exc):
            raise
    return r


class App(PeerApp):
    batch_size = 100

    async def start(self) -> None:
        self.r = await _connect()

    async def stop(self) -> None:
        await self.r.aclose()

    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await self.r.xadd(STREAM, {"id": task_id})

    async def enqueue_many(self, task_ids: Sequence[int], sleep: float) -> None:
        async with self.r.pipeline(transaction=False) as pipe:
            for i in task_ids:
                pipe.xadd(STREAM, {"id": i})
            await pipe.execute()


async def worker() -> None:
    r = await _connect()
    count = CONFIG.concurrency or 100
    consumer = f"c{os.getpid()}"
    while True:
        resp = await r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count, block=1000)
        if not resp:
            continue
        done = []
        for _stream, messages in resp:
            for msg_id, fields in messages:
                record(int(fields[b"id"]), now())
                done.append(msg_id)
        async with r.pipeline(transaction=False) as pipe:
            pipe.xack(STREAM, GROUP, *done)
            pipe.xdel(STREAM, *done)
            await pipe.execute()


if __name__ == "__main__":
    asyncio.run(worker())
