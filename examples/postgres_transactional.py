"""The PostgreSQL broker, and a task enqueued in the same transaction as the row it is
about: visible to workers at COMMIT, gone on ROLLBACK.

Needs a PostgreSQL server and the extra: pip install 'conveyor-tasks[postgres]'.
Set EXAMPLE_POSTGRES_URL to point elsewhere than postgresql://postgres@127.0.0.1:5432/test.
Everything goes in a fresh schema (`?prefix=`), dropped at the end.

Run: python examples/postgres_transactional.py        (docs/transactional-enqueue.md)
"""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg

from conveyor import Conveyor, TaskNotFound

SERVER = os.environ.get("EXAMPLE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = f"example_{uuid.uuid4().hex[:8]}"  # the schema that holds this app's queue

app = Conveyor(f"{SERVER}?prefix={PREFIX}")  # results live in the same schema
sent: list[int] = []


@app.task
async def send_email(email_id: int) -> str:
    sent.append(email_id)
    return f"email {email_id} sent"


async def main() -> None:
    conn = await asyncpg.connect(SERVER)  # the application's own connection
    await conn.execute(f'CREATE TABLE "{PREFIX}_emails" (id int PRIMARY KEY)')
    try:
        async with app, app.worker(concurrency=4):
            # committed: the row and its task become visible together
            async with conn.transaction():
                await conn.execute(f'INSERT INTO "{PREFIX}_emails" VALUES (1)')
                handle = await send_email.with_options(connection=conn).kiq(1)
            print(await handle.get(timeout=10))  # email 1 sent

            # rolled back: neither the row nor the task ever existed
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(f'INSERT INTO "{PREFIX}_emails" VALUES (2)')
            dropped = await send_email.with_options(connection=conn).kiq(2)
            await transaction.rollback()
            print(await (await send_email.kiq(3)).get(timeout=10))  # email 3 sent
            try:
                await dropped.status()
            except TaskNotFound:
                print("the rolled-back task never existed")
            print("sent:", sorted(sent))  # sent: [1, 3]
    finally:
        await conn.execute(f'DROP TABLE IF EXISTS "{PREFIX}_emails"')
        await conn.execute(f'DROP SCHEMA IF EXISTS "{PREFIX}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
