"""The PostgreSQL event store: ``<prefix>.events``, a bigserial id per record.

The appending process trims the table to about ``events_max`` rows at most once per
``reap_interval``, in the same call. Ids are the cursors (a sequence may skip numbers,
never reorder them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from conveyor.brokers.postgres.connection import Database, as_bytes

__all__ = ["PostgresEventStore"]


class PostgresEventStore:
    """The event log of a :class:`~conveyor.brokers.postgres.PostgresBroker`
    (``broker.event_store()``), sharing its pool."""

    def __init__(self, database: Database, capacity: int) -> None:
        self._db = database
        self._q = database.queries
        self._capacity = capacity
        self._trim_every = max(database.options.reap_interval, 0.1)
        self._next_trim = 0.0

    async def append(self, records: Sequence[bytes]) -> None:
        if not records:
            return
        now = time.monotonic()
        trim = now >= self._next_trim
        if trim:
            self._next_trim = now + self._trim_every
        await self._db.run(self._append, list(records), trim)

    async def _append(self, conn: asyncpg.Connection, records: list[bytes], trim: bool) -> None:
        await conn.execute(self._q.append_events, records)
        if trim:
            await conn.execute(self._q.trim_events, self._capacity)

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        cursor = int(after) if after else 0
        return await self._db.run(_rows, self._q.read_events, cursor, limit)

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        return await self._db.run(_rows, self._q.recent_events, limit)


async def _rows(conn: asyncpg.Connection, query: str, *args: object) -> list[tuple[str, bytes]]:
    return [(str(row[0]), as_bytes(row[1])) for row in await conn.fetch(query, *args)]
