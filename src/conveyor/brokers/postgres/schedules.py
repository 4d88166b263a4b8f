"""The PostgreSQL schedule store: dynamic schedule definitions in ``<prefix>.schedules``.

Once-per-tick is not kept here: the scheduler publishes each tick with an idempotency
key, and the broker's publish admits one copy (the key table's primary key).
"""

from __future__ import annotations

import asyncpg

from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.postgres.connection import Database, as_bytes

__all__ = ["PostgresScheduleStore"]


class PostgresScheduleStore:
    """Schedule definitions in PostgreSQL; ``broker.schedule_store()`` shares the
    broker's pool, a standalone one opens its own on :meth:`connect`."""

    def __init__(
        self, url: str, options: BrokerOptions | None = None, *, database: Database | None = None
    ) -> None:
        self.url = url
        self._db = database or Database(url, options or BrokerOptions())
        self._q = self._db.queries

    async def connect(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def save_schedule(self, schedule_id: str, spec: bytes) -> None:
        """Insert or replace a schedule definition."""
        await self._db.run(_execute, self._q.save_schedule, schedule_id, spec)

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; False if it did not exist."""
        found = await self._db.run(_fetchval, self._q.delete_schedule, schedule_id)
        return found is not None

    async def load_schedules(self) -> dict[str, bytes]:
        """Every stored schedule definition by id."""
        rows = await self._db.run(_fetch, self._q.load_schedules)
        return {row[0]: as_bytes(row[1]) for row in rows}


async def _execute(conn: asyncpg.Connection, query: str, *args: object) -> None:
    await conn.execute(query, *args)


async def _fetchval(conn: asyncpg.Connection, query: str, *args: object) -> object:
    return await conn.fetchval(query, *args)


async def _fetch(conn: asyncpg.Connection, query: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(query)
    return rows
