"""The SQLite result store: results and progress in the broker's file, push-based waiting.

A waiter subscribes to its task id in ``<db>.wake/results/`` before it looks, so a result
committed by any process on the host (``put()``, or a worker's ``ack(result)``) wakes it
within microseconds of the COMMIT; the ``fetch_wait`` poll only covers a lost datagram.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Mapping, Sequence

from conveyor.brokers.base import BrokerOptions, StoredResult
from conveyor.brokers.sqlite.connection import (
    DEFAULT_URL,
    MOUNTS_FILE,
    Database,
    as_bytes,
    transaction,
)
from conveyor.brokers.sqlite.queries import QUERIES

__all__ = ["SqliteResultStore", "store_results"]


def store_results(conn: sqlite3.Connection, batch: Sequence[StoredResult], now: float) -> None:
    """Write results (replacing their progress) inside the caller's transaction."""
    for item in batch:
        expires_at = None if item.ttl is None else now + item.ttl
        conn.execute(
            QUERIES.put_result,
            {"task_id": item.task_id, "data": item.data, "expires_at": expires_at},
        )
        conn.execute(QUERIES.delete_progress, {"task_id": item.task_id})


class SqliteResultStore:
    """Results in a SQLite file: ``Conveyor(..., results="sqlite:///conveyor.db")``.

    ``broker.result_store()`` returns one that shares the broker's connection; a
    standalone one opens its own on :meth:`connect`. Expired rows are deleted by periodic
    maintenance (at most every ``reap_interval``), so the table does not grow without bound.

    >>> store = SqliteResultStore("sqlite:///conveyor.db")
    """

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
        self._options = options or BrokerOptions()
        self._clock = self._options.clock
        self._mounts_file = mounts_file
        self._environ = environ
        self._db = database or Database(
            url, self._options, mounts_file=mounts_file, environ=environ
        )

    async def connect(self) -> None:
        """Open (or share) the database connection."""
        await self._db.open()

    async def close(self) -> None:
        """Release this store's use of the connection."""
        await self._db.close()

    def clone(self) -> SqliteResultStore:
        """An unconnected store on the same file, for another event loop."""
        return SqliteResultStore(
            self.url, self._options, mounts_file=self._mounts_file, environ=self._environ
        )

    async def put(self, batch: Sequence[StoredResult]) -> None:
        """Store results with their TTLs and wake their waiters in every process."""
        if batch:
            await self._db.run(self._put, list(batch), self._clock.now())

    def _put(self, conn: sqlite3.Connection, batch: list[StoredResult], now: float) -> None:
        with transaction(conn):
            store_results(conn, batch, now)
        self._db.result_wake.notify(item.task_id for item in batch)
        self._db.maintain(conn, now)

    async def get(self, task_id: str) -> bytes | None:
        """The stored result, or None when absent or expired."""
        return await self._db.run(self._get, QUERIES.get_result, task_id, self._clock.now())

    @staticmethod
    def _get(conn: sqlite3.Connection, query: str, task_id: str, now: float) -> bytes | None:
        row = conn.execute(query, {"task_id": task_id, "now": now}).fetchone()
        return None if row is None else as_bytes(row[0])

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        """The result as soon as it is stored (by any process), or None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._db.result_wake.subscribe([task_id]) as wake:
            while True:
                wake.clear()
                found = await self.get(task_id)
                if found is not None:
                    return found
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                await wake.wait(min(remaining, self._db.poll_interval))

    async def delete(self, task_id: str) -> None:
        """Forget a result and its progress."""
        await self._db.run(self._delete, task_id)

    @staticmethod
    def _delete(conn: sqlite3.Connection, task_id: str) -> None:
        with transaction(conn):
            conn.execute(QUERIES.delete_result, {"task_id": task_id})
            conn.execute(QUERIES.delete_progress, {"task_id": task_id})

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        """Store a progress snapshot for ``status()``, kept ``ttl`` seconds."""
        params = {"task_id": task_id, "data": progress, "expires_at": self._clock.now() + ttl}
        await self._db.run(self._execute, QUERIES.set_progress, params)

    async def get_progress(self, task_id: str) -> bytes | None:
        """The latest progress snapshot, or None."""
        return await self._db.run(self._get, QUERIES.get_progress, task_id, self._clock.now())

    @staticmethod
    def _execute(conn: sqlite3.Connection, query: str, params: Mapping[str, object]) -> None:
        conn.execute(query, params)
