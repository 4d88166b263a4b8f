"""The PostgreSQL result store: results and progress in the broker's schema, with
waits woken by NOTIFY (``<prefix>:result``) and a ``fetch_wait`` fallback look.

Expired rows are invisible at once (every read checks ``expires_at``) and deleted by the
workers' periodic purge (``Database.purge_when_due``, after each reap).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from conveyor.brokers.base import BrokerOptions, StoredResult
from conveyor.brokers.postgres.connection import Database, as_bytes
from conveyor.brokers.postgres.queries import Queries

__all__ = ["PostgresResultStore", "result_columns"]


def result_columns(
    batch: Sequence[StoredResult],
) -> tuple[list[str], list[bytes], list[float | None]]:
    """The batch as the three arrays the statements take (the last result of an id wins)."""
    last = {item.task_id: item for item in batch}
    return (
        list(last),
        [item.data for item in last.values()],
        [None if item.ttl is None else float(item.ttl) for item in last.values()],
    )


class PostgresResultStore:
    """Results in PostgreSQL: ``Conveyor(..., results="postgresql://host/db")``.

    ``broker.result_store()`` returns one that shares the broker's pool and listener; a
    standalone one opens its own on :meth:`connect`.

    >>> store = PostgresResultStore("postgresql://localhost/app?prefix=conveyor")
    """

    def __init__(
        self, url: str, options: BrokerOptions | None = None, *, database: Database | None = None
    ) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._db = database or Database(url, self._options)
        self._q: Queries = self._db.queries

    async def connect(self) -> None:
        """Open (or share) the pool and the listener."""
        await self._db.open()

    async def close(self) -> None:
        """Release this store's hold on the pool."""
        await self._db.close()

    def clone(self) -> PostgresResultStore:
        """An unconnected store on the same schema, for another event loop."""
        return PostgresResultStore(self.url, self._options)

    async def put(self, batch: Sequence[StoredResult]) -> None:
        """Store results with their TTLs and wake their waiters in every process."""
        if batch:
            await self._db.run(_execute, self._q.put_results, *result_columns(batch))

    async def get(self, task_id: str) -> bytes | None:
        """The stored result, or None when absent or expired."""
        return await self._db.run(_fetch_bytes, self._q.get_result, task_id)

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        """The result as soon as it is stored (by any process), or None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._db.listener.watch_result(task_id) as stored:
            while True:
                stored.clear()
                found = await self.get(task_id)
                if found is not None:
                    return found
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                # the fallback look covers a notification lost while the listener was down
                pause = min(remaining, max(self._options.fetch_wait, 0.05))
                try:
                    async with asyncio.timeout(pause):
                        await stored.wait()
                except TimeoutError:
                    pass

    async def delete(self, task_id: str) -> None:
        """Forget a result and its progress."""
        await self._db.run(_execute, self._q.delete_result, task_id)

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        """Store a progress snapshot for ``status()``, kept ``ttl`` seconds."""
        await self._db.run(_execute, self._q.set_progress, task_id, progress, float(ttl))

    async def get_progress(self, task_id: str) -> bytes | None:
        """The latest progress snapshot, or None."""
        return await self._db.run(_fetch_bytes, self._q.get_progress, task_id)


async def _execute(conn: asyncpg.Connection, query: str, *args: object) -> None:
    await conn.execute(query, *args)


async def _fetch_bytes(conn: asyncpg.Connection, query: str, *args: object) -> bytes | None:
    value = await conn.fetchval(query, *args)
    return None if value is None else as_bytes(value)
