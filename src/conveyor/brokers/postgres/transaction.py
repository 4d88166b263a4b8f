"""The caller's transaction, as the asyncpg connection that runs it.

``publish_in`` (``task.with_options(connection=...)`` / ``session=...``) writes through the
application's own connection, so the task commits or rolls back with the application's
rows. Accepted: an asyncpg ``Connection`` (or a pool's connection proxy), and a
SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` on the asyncpg driver
(``postgresql+asyncpg://``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from conveyor.brokers import redact_url
from conveyor.errors import ConfigurationError

__all__ = ["driver_connection"]


async def driver_connection(transaction: object, url: str) -> asyncpg.Connection:
    """The asyncpg connection behind ``transaction``; ConfigurationError for anything else."""
    if isinstance(transaction, asyncpg.Connection | PoolConnectionProxy):
        return transaction  # a pool's proxy behaves as its connection
    connection: Any = None
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    except ImportError:  # no SQLAlchemy: it cannot be a session
        pass
    else:
        if isinstance(transaction, AsyncSession):
            connection = await transaction.connection()
        elif isinstance(transaction, AsyncConnection):
            connection = transaction
    if connection is not None:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, asyncpg.Connection):
            if not driver.is_in_transaction():
                # SQLAlchemy sends BEGIN with its first statement, not at session.begin():
                # one statement through it starts the transaction we must write in
                await connection.exec_driver_sql("SELECT 1")
            return driver
        raise ConfigurationError(
            f"a transactional enqueue on {redact_url(url)} needs a SQLAlchemy session on the "
            f"asyncpg driver (postgresql+asyncpg://), not {type(driver).__name__}"
        )
    raise ConfigurationError(
        f"a transactional enqueue on {redact_url(url)} takes an asyncpg Connection or a "
        f"SQLAlchemy AsyncSession/AsyncConnection, not {type(transaction).__name__}"
    )
