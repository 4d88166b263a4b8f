"""The lease keeper: renews leases from the worker's lease thread on a connection of its
own, so a blocked event loop cannot starve renewals (reliability.md §4.6.4).

asyncpg is asynchronous only, so the keeper runs a private event loop in whichever OS
thread calls :meth:`PostgresLeaseKeeper.renew` (one call at a time, under a lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import asyncpg

from conveyor.brokers.base import Delivery
from conveyor.brokers.postgres.queries import Queries
from conveyor.brokers.postgres.target import CONNECTION_ERRORS, PostgresTarget
from conveyor.errors import BrokerUnavailable

__all__ = ["PostgresLeaseKeeper", "extend_leases"]


async def extend_leases(
    conn: asyncpg.Connection, queries: Queries, deliveries: Sequence[Delivery], seconds: float
) -> list[bool]:
    """One statement: push the leases we still own; False where the token is stale."""
    rows = await conn.fetch(
        queries.extend_lease,
        [d.task_id for d in deliveries],
        [d.token for d in deliveries],
        float(seconds),
    )
    owned = {row[0] for row in rows}
    return [d.task_id in owned for d in deliveries]


class PostgresLeaseKeeper:
    """Renews leases on its own connection, from any OS thread.

    The connection lives on a private event loop in a thread of the keeper's own, started
    by the first :meth:`renew`; callers block on it (one renewal at a time)."""

    def __init__(self, target: PostgresTarget, queries: Queries) -> None:
        self._target = target
        self._queries = queries
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncpg.Connection | None = None
        self._closed = False

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Extend each lease to ``seconds`` from now (server time); False where it is no
        longer ours. BrokerUnavailable when the server cannot be reached."""
        if not deliveries:
            return []
        with self._lock:
            if self._closed:
                raise BrokerUnavailable(f"the lease keeper of {self._target.shown} is closed")
            loop = self._start()
            future = asyncio.run_coroutine_threadsafe(self._renew(deliveries, seconds), loop)
            try:
                return future.result()
            except CONNECTION_ERRORS as exc:
                raise self._target.unavailable(exc) from None

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="conveyor-pg-lease-keeper", daemon=True
            )
            self._thread.start()
            self._loop = loop
        return self._loop

    async def _renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._target.connect()
            async with asyncio.timeout(max(self._target.connect_timeout, 1.0)):
                return await extend_leases(self._conn, self._queries, deliveries, seconds)
        except CONNECTION_ERRORS:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()
            raise

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except CONNECTION_ERRORS:
                conn.terminate()

    def close(self) -> None:
        """Close the keeper's connection, loop and thread; later renewals raise."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
            if loop is None or thread is None:
                return
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(5.0)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
            loop.close()
