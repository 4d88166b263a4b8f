"""The outbox: a task written to a table in your PostgreSQL, in the same transaction as
the row it is about, and published to a Redis broker by a relay: no window between the
commit and the publish.

Needs PostgreSQL and Redis: pip install 'conveyor-tasks[postgres,redis]'. Set
EXAMPLE_POSTGRES_URL / EXAMPLE_REDIS_URL to point elsewhere than the local defaults.
The outbox is in a fresh schema and the queue under a fresh prefix, both removed at the end.

Run: python examples/outbox_relay.py        (docs/transactional-enqueue.md)
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import redis.asyncio as aioredis

from conveyor import Conveyor
from conveyor.outbox import Outbox, OutboxRelay

DATABASE = os.environ.get("EXAMPLE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0")
NAME = f"example_{uuid.uuid4().hex[:8]}"

app = Conveyor(f"{REDIS}?prefix={NAME}")
outbox = Outbox(schema=NAME)  # the table: "<NAME>".outbox, created by the relay
sent: list[int] = []


@app.task
async def send_email(email_id: int) -> str:
    sent.append(email_id)
    return f"email {email_id} sent"


async def main() -> None:
    conn = await asyncpg.connect(DATABASE)  # the application's own connection
    relay = OutboxRelay(app, DATABASE, outbox)  # `conveyor outbox relay APP --dsn URL`
    try:
        await outbox.upgrade(conn)  # the relay does it at start too
        await conn.execute(f'CREATE TABLE "{NAME}".emails (id int PRIMARY KEY)')
        async with app, app.worker(concurrency=4):
            relaying = asyncio.create_task(relay.serve())
            # committed: the row and the outbox row together; the relay publishes it
            async with conn.transaction():
                await conn.execute(f'INSERT INTO "{NAME}".emails VALUES (1)')
                handle = await send_email.with_options(outbox=outbox, connection=conn).kiq(1)
            print(await handle.get(timeout=10))  # email 1 sent

            # rolled back: neither the row nor the task ever existed
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(f'INSERT INTO "{NAME}".emails VALUES (2)')
            await send_email.with_options(outbox=outbox, connection=conn).kiq(2)
            await transaction.rollback()
            async with conn.transaction():
                third = await send_email.with_options(outbox=outbox, connection=conn).kiq(3)
            print(await third.get(timeout=10))  # email 3 sent
            relay.stop()  # what SIGTERM does to `conveyor outbox relay`
            await relaying
            print("sent:", sorted(sent))  # sent: [1, 3]
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{NAME}" CASCADE')
        await conn.close()
        client = aioredis.Redis.from_url(REDIS)
        for pattern in (f"{{{NAME}:*", f"{NAME}:*"):
            keys = [key async for key in client.scan_iter(match=pattern)]
            if keys:
                await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
