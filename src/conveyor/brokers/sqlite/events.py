"""The SQLite event store: the ``events`` table of the broker's file (``events.sql``).

A batch is one ``BEGIN IMMEDIATE`` transaction on the broker's database thread. The
table is trimmed to the last ``events_max`` rows by the appending process itself, at
most once per ``reap_interval`` (in the same transaction), so it holds ``events_max``
rows plus at most one interval's worth. Row ids are the cursors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields

from conveyor.brokers.sqlite.connection import Database, as_bytes, transaction
from conveyor.brokers.sqlite.queries import parse_queries, read_sql

__all__ = ["SqliteEventStore"]


@dataclass(frozen=True, slots=True)
class _Queries:
    create_events: str
    append_event: str
    trim_events: str
    read_events: str
    recent_events: str


def _load() -> _Queries:
    parsed = parse_queries(read_sql("events.sql"))
    return _Queries(**{f.name: parsed[f.name][1] for f in fields(_Queries)})


_SQL = _load()


class SqliteEventStore:
    """The event log of a :class:`~conveyor.brokers.sqlite.SqliteBroker`
    (``broker.event_store()``), sharing its connection."""

    def __init__(self, database: Database, capacity: int) -> None:
        self._db = database
        self._capacity = capacity
        self._trim_every = max(database.options.reap_interval, 0.1)
        self._clock = database.options.clock
        self._created = False
        self._next_trim = 0.0

    async def append(self, records: Sequence[bytes]) -> None:
        if not records:
            return
        now = self._clock.now()
        trim = now >= self._next_trim
        if trim:
            self._next_trim = now + self._trim_every
        await self._db.run(self._append, list(records), trim)
        self._created = True

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        cursor = int(after) if after else 0
        return await self._db.run(self._select, _SQL.read_events, {"after": cursor, "limit": limit})

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        return await self._db.run(self._select, _SQL.recent_events, {"limit": limit})

    def _create(self, conn: sqlite3.Connection) -> None:
        if not self._created:
            conn.execute(_SQL.create_events)
            self._created = True

    def _append(self, conn: sqlite3.Connection, records: list[bytes], trim: bool) -> None:
        with transaction(conn):
            self._create(conn)
            conn.executemany(_SQL.append_event, [{"record": r} for r in records])
            if trim:
                conn.execute(_SQL.trim_events, {"capacity": self._capacity})

    def _select(
        self, conn: sqlite3.Connection, query: str, params: dict[str, int]
    ) -> list[tuple[str, bytes]]:
        self._create(conn)
        return [(str(row[0]), as_bytes(row[1])) for row in conn.execute(query, params)]
