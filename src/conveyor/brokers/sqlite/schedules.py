"""The SQLite schedule store: dynamic schedule definitions in the ``schedules`` table.

Once-per-tick is not kept here: the scheduler publishes each tick with an idempotency
key, and the broker's publish admits one copy (see ``conveyor.scheduler.loop``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping

from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.sqlite.connection import DEFAULT_URL, MOUNTS_FILE, Database, as_bytes
from conveyor.brokers.sqlite.queries import QUERIES

__all__ = ["SqliteScheduleStore"]


class SqliteScheduleStore:
    """Schedule definitions in a SQLite file; ``broker.schedule_store()`` shares the
    broker's connection, a standalone one opens its own on :meth:`connect`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        options: BrokerOptions | None = None,
        *,
        database: Database | None = None,
        mounts_file: str | os.PathLike[str] = MOUNTS_FILE,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self._db = database or Database(
            url, options or BrokerOptions(), mounts_file=mounts_file, environ=environ
        )

    async def connect(self) -> None:
        """Open (or share) the database connection."""
        await self._db.open()

    async def close(self) -> None:
        """Release this store's use of the connection."""
        await self._db.close()

    async def save_schedule(self, schedule_id: str, spec: bytes) -> None:
        """Insert or replace a schedule definition."""
        await self._db.run(
            _rowcount, QUERIES.save_schedule, {"schedule_id": schedule_id, "spec": spec}
        )

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; False if it did not exist."""
        deleted = await self._db.run(
            _rowcount, QUERIES.delete_schedule, {"schedule_id": schedule_id}
        )
        return deleted == 1

    async def load_schedules(self) -> dict[str, bytes]:
        """Every stored schedule definition by id."""
        return await self._db.run(_load_schedules)


def _rowcount(conn: sqlite3.Connection, query: str, params: Mapping[str, object]) -> int:
    return conn.execute(query, params).rowcount


def _load_schedules(conn: sqlite3.Connection) -> dict[str, bytes]:
    return {row[0]: as_bytes(row[1]) for row in conn.execute(QUERIES.load_schedules)}
