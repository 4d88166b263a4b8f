"""A task enqueued inside a SQLAlchemy session's transaction, on a broker outside the
app's database (here the embedded SQLite broker, on another file than the app's): held
until the commit and published then; dropped on rollback.

Needs SQLAlchemy and aiosqlite: pip install 'sqlalchemy[asyncio]' aiosqlite.
Everything lives in a temporary directory, removed at the end.

Run: python examples/sqlalchemy_after_commit.py        (docs/transactional-enqueue.md)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from conveyor import Conveyor, TaskNotFound

sent: list[int] = []


async def main(directory: Path) -> None:
    app = Conveyor(f"sqlite:///{directory / 'conveyor.db'}")  # the queue: one file
    engine = create_async_engine(f"sqlite+aiosqlite:///{directory / 'app.db'}")  # the app's

    @app.task
    async def send_email(email_id: int) -> str:
        sent.append(email_id)
        return f"email {email_id} sent"

    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE emails (id INTEGER PRIMARY KEY)"))
    try:
        async with app, app.worker(concurrency=4), AsyncSession(engine) as session:
            # committed: published when the commit succeeds, before session.begin() returns
            async with session.begin():
                await session.execute(text("INSERT INTO emails VALUES (1)"))
                handle = await send_email.with_options(session=session).kiq(1)
                print("task id known before the commit:", bool(handle.task_id))
            print(await handle.get(timeout=10))  # email 1 sent

            # rolled back: the task was held, and is dropped with the row
            await session.execute(text("INSERT INTO emails VALUES (2)"))
            dropped = await send_email.with_options(session=session).kiq(2)
            await session.rollback()
            print(await (await send_email.kiq(3)).get(timeout=10))  # email 3 sent
            try:
                await dropped.status()
            except TaskNotFound:
                print("the rolled-back task was never published")
            print("sent:", sorted(sent))  # sent: [1, 3]
    finally:
        await engine.dispose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
