"""The RabbitMQ broker: the quickstart on `amqp://`, with results and task records in
Redis, and what RabbitMQ adds: the queue layout, delays without a plugin, dead letters
in a queue of their own, and status reads and abort when there is no result store (the
ledger stream).

Needs RabbitMQ (3.10 or newer), Redis, and the extra: pip install 'conveyor-tasks[amqp]'.
Set EXAMPLE_AMQP_URL and EXAMPLE_REDIS_URL to point elsewhere than the local servers.
Everything goes under a fresh `?prefix=`, and every queue, exchange and key with that
prefix is deleted at the end.

Run: python examples/rabbitmq_quickstart.py        (docs/rabbitmq.md)
"""

from __future__ import annotations

import asyncio
import os
import uuid

from conveyor import BrokerUnavailable, ConfigurationError, Conveyor, TaskFailed, fixed
from conveyor.brokers.base import DeadLetterEntry
from conveyor.brokers.rabbitmq import delete_namespace

SERVER = os.environ.get("EXAMPLE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS = os.environ.get("EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"example-{uuid.uuid4().hex[:8]}"  # namespaces every queue, exchange and key
URL = f"{SERVER}?prefix={PREFIX}"

app = Conveyor(URL, results=f"{RESULTS}?prefix={PREFIX}")


@app.task
async def add(a: int, b: int) -> int:
    return a + b


@app.task(retries=2, backoff=fixed(0.1))
async def unreliable(n: int) -> int:
    raise ConnectionError(f"upstream down for {n}")


async def main() -> None:
    async with app, app.worker(concurrency=10):
        print("get():", await (await add.kiq(2, 3)).get(timeout=5))

        # a delay rides a cascade of TTL queues (no plugin): here 500 ms = 2^8+...+2^2
        later = await add.with_options(delay=0.5).kiq(1, 1)
        print("delayed task is", (await later.status()).status, "->", await later.get(timeout=5))

        # RabbitMQ has no dedupe: the key is kept in the task records, in Redis
        first = await add.with_options(key="sum-1-2").kiq(1, 2)
        again = await add.with_options(key="sum-1-2").kiq(1, 2)
        print("same idempotency key, same task:", first.task_id == again.task_id)

        failing = await unreliable.kiq(7)
        try:
            await failing.get(timeout=5)
        except TaskFailed as exc:
            print("unreliable:", exc.error.type, exc.error.message)

        # the result is stored first, then the dead letter is published: wait for it
        (entry,) = await dead_letters_soon()
        print(f"DLQ: attempts={entry.attempts} {entry.reason}")
        for depth in await app.broker.queue_depths():
            print(
                f"queue {depth.queue}: ready={depth.ready} delayed={depth.delayed} "
                f"running={depth.running} dead={depth.dead}"
            )
        names = app.broker.names  # type: ignore[attr-defined]
        print("work queue:", names.work("default").replace(PREFIX, "P"))
        print("dead letters:", names.dlq("default").replace(PREFIX, "P"))
        print("delay levels:", names.delay(0).replace(PREFIX, "P"), "...")

    # No result store: tasks still run, and their records live in the ledger, a RabbitMQ
    # stream, so status reads and abort work; nobody can wait for a return value.
    no_store = Conveyor(URL)
    no_store.register(add.fn, add.options)
    async with no_store:
        handle = await no_store.tasks[add.name].with_options(delay=60).kiq(4, 4)
        print("without results=, status:", (await handle.status()).status)
        print("abort:", await handle.abort(), "->", (await handle.status()).status)
        try:
            await handle.wait_result(timeout=1)
        except ConfigurationError as exc:
            print("without results=:", exc)

    await delete_namespace(URL, RESULTS)
    print("deleted the prefix's queues, exchanges and keys")


async def dead_letters_soon() -> list[DeadLetterEntry]:
    """The dead letters, once there are some (within 5 s)."""
    for _ in range(100):
        entries = await app.broker.dead_letters()
        if entries:
            return entries
        await asyncio.sleep(0.05)
    raise SystemExit("no dead letter after 5 s")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BrokerUnavailable as exc:
        raise SystemExit(f"this example needs RabbitMQ and Redis: {exc}") from None
