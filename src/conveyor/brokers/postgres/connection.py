"""How we talk to PostgreSQL: the asyncpg pool, the NOTIFY listener, and the retry that
makes a lost connection a pause, not an error (the URL is taken apart in ``target.py``).

A connection dropped by the network, ``pg_terminate_backend`` or a server restart raises
one of :data:`CONNECTION_ERRORS`; :meth:`Database.run` then waits (``fault_pause``
doubling up to ``fault_pause_max``) and runs the operation again on a fresh connection.
Every operation is safe to run twice: settlements are fenced by lease token, a publish
inserts a task id once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg

from conveyor.brokers import redact_secrets
from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.postgres.listener import Listener
from conveyor.brokers.postgres.migrate import current_version, latest_version, upgrade
from conveyor.brokers.postgres.queries import Queries, queries_for
from conveyor.brokers.postgres.target import CONNECTION_ERRORS, parse_url
from conveyor.errors import BrokerUnavailable, ConfigurationError

__all__ = ["Database", "as_bytes"]

log = logging.getLogger("conveyor.brokers.postgres")

P = ParamSpec("P")
T = TypeVar("T")


class Database:
    """The pool and the listener that a broker and its stores share, opened by the first
    ``open()`` and closed by the last ``close()``.

    :meth:`run` is the one way statements reach the server: it borrows a pooled
    connection and retries a lost one for ``retry_for`` seconds.
    """

    def __init__(self, url: str, options: BrokerOptions) -> None:
        self.target = parse_url(url)
        self.options = options
        self.queries: Queries = queries_for(self.target.schema)
        self.listener = Listener(self.target, options)
        self._pool: asyncpg.Pool | None = None
        self._users = 0
        self._opening = asyncio.Lock()
        self._next_purge = 0.0

    @property
    def schema(self) -> str:
        return self.target.schema

    async def open(self) -> None:
        """Connect (the first caller), upgrading or checking the schema."""
        async with self._opening:
            if self._users == 0:
                await self._open()
            self._users += 1

    async def _open(self) -> None:
        target = self.target
        conn = await target.connect()
        try:
            if target.migrate:
                for migration in await upgrade(conn, target.schema):
                    log.info(
                        "postgres schema %s: applied migration %04d_%s",
                        target.schema,
                        migration.version,
                        migration.name,
                    )
            else:
                have, need = await current_version(conn, target.schema), latest_version()
                if have < need:
                    raise ConfigurationError(
                        f"the schema {target.schema!r} of {target.shown} is at version {have}, "
                        f"this Conveyor needs {need}: run `conveyor db upgrade APP` "
                        "(or drop ?migrate=false from the URL)"
                    )
        except CONNECTION_ERRORS as exc:
            raise target.unavailable(exc) from None
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(
                target.dsn,
                min_size=target.pool_min,
                max_size=target.pool_max,
                timeout=target.connect_timeout,
                # a connection idle this long is closed: the pool shrinks after a burst
                max_inactive_connection_lifetime=60.0,
            )
        except CONNECTION_ERRORS as exc:
            raise target.unavailable(exc) from None
        await self.listener.start()

    async def close(self) -> None:
        """Release one user's hold; the last one closes the pool and the listener."""
        async with self._opening:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            pool, self._pool = self._pool, None
            await self.listener.stop()
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), 5.0)
                except CONNECTION_ERRORS:
                    pool.terminate()

    async def run(
        self,
        operation: Callable[Concatenate[asyncpg.Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``operation(connection, ...)`` on a pooled connection; a lost connection is
        retried with backoff for ``retry_for`` seconds, then BrokerUnavailable."""
        pool = self._pool
        if pool is None:
            raise BrokerUnavailable(f"the PostgreSQL broker {self.target.shown} is not connected")
        pause = self.options.fault_pause
        deadline = time.monotonic() + self.target.retry_for
        while True:
            try:
                return await self._once(pool, operation, *args, **kwargs)
            except CONNECTION_ERRORS as exc:
                if self._pool is None or time.monotonic() + pause > deadline:
                    raise self.target.unavailable(exc) from None
                log.warning(
                    "postgres %s: %s; retrying in %.2f s",
                    self.target.shown,
                    redact_secrets(f"{type(exc).__name__}: {exc}", self.target.url),
                    pause,
                )
                await asyncio.sleep(pause)  # sleep: backoff while the server comes back
                pause = min(pause * 2, self.options.fault_pause_max)

    async def _once(
        self,
        pool: asyncpg.Pool,
        operation: Callable[Concatenate[asyncpg.Connection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        conn = await pool.acquire(timeout=self.target.connect_timeout)
        try:
            return await operation(conn, *args, **kwargs)
        except CONNECTION_ERRORS:
            # never hand a connection that failed under us back for reuse: the pool
            # replaces a closed one on the next acquire
            conn.terminate()
            raise
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pool.release(conn)

    async def purge_when_due(self) -> int:
        """Delete expired results, progress, keys and heartbeats, at most once per
        ``reap_interval`` (every worker reaps; one of them purging at a time is enough)."""
        now = time.monotonic()
        if now < self._next_purge:
            return 0
        self._next_purge = now + max(self.options.reap_interval, 1.0)
        purged: int = await self.run(_fetchval, self.queries.purge, 10_000)
        return purged


async def _fetchval(conn: asyncpg.Connection, query: str, *args: object) -> int:
    return int(await conn.fetchval(query, *args) or 0)


def as_bytes(value: object) -> bytes:
    """A bytea column as bytes (asyncpg returns bytes already; this is for mypy)."""
    assert isinstance(value, bytes | bytearray | memoryview)
    return bytes(value)
