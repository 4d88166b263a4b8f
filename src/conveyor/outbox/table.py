"""The outbox table: where ``with_options(outbox=..., session=...)`` writes a task, in
the caller's transaction, for a relay to publish after the commit."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from importlib import resources
from typing import TYPE_CHECKING, final

from conveyor.brokers.postgres.migrate import Migration, load_migrations, upgrade
from conveyor.brokers.postgres.queries import SCHEMA_NAME, substitute
from conveyor.brokers.postgres.transaction import driver_connection
from conveyor.brokers.sqlite.queries import parse_queries
from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    import asyncpg

    from conveyor.brokers.base import Outgoing

__all__ = ["MIGRATIONS", "VERSION_TABLE", "Outbox", "OutboxQueries", "queries_for"]

MIGRATIONS = load_migrations("conveyor.outbox")

VERSION_TABLE = "outbox_schema_version"
"""The outbox's own version table, so it can share a schema with the broker's."""


@dataclass(frozen=True, slots=True)
class OutboxQueries:
    """Every named statement of ``queries.sql``, bound to one schema."""

    write: str
    claim: str
    delete: str


@functools.lru_cache(maxsize=64)
def queries_for(schema: str) -> OutboxQueries:
    """The outbox's statements, bound to ``schema``."""
    text = resources.files("conveyor.outbox").joinpath("queries.sql").read_text("utf-8")
    parsed = parse_queries(text)
    if set(parsed) != {f.name for f in fields(OutboxQueries)}:
        raise RuntimeError(f"outbox queries.sql does not match OutboxQueries: {sorted(parsed)}")
    return OutboxQueries(**{name: substitute(sql, schema) for name, (_, sql) in parsed.items()})


@final
@dataclass(frozen=True, slots=True)
class Outbox:
    """An outbox table in the application's PostgreSQL, in ``schema``.

    >>> outbox = Outbox(schema="app_outbox")
    >>> async with session.begin():                                     # doctest: +SKIP
    ...     session.add(email)
    ...     await session.flush()
    ...     await send_email.with_options(outbox=outbox, session=session).kiq(email.id)

    ``dedupe_ttl`` is the least time (seconds) the task's idempotency key keeps
    deduplicating after the task ends: a relay killed between its publish and its DELETE
    publishes the row again when it restarts, and the broker returns the first task
    instead, as long as the restart comes within the task's run plus this (or its
    ``result_ttl``, when longer).
    """

    schema: str = "conveyor_outbox"
    dedupe_ttl: float = 3600.0

    def __post_init__(self) -> None:
        if not SCHEMA_NAME.fullmatch(self.schema):
            raise ConfigurationError(
                f"Outbox(schema={self.schema!r}): a letter or '_' then letters, digits or "
                "'_' (at most 63): it names a PostgreSQL schema"
            )
        if not (math.isfinite(self.dedupe_ttl) and self.dedupe_ttl >= 0):
            raise ConfigurationError(f"Outbox(dedupe_ttl={self.dedupe_ttl!r}): seconds >= 0")

    @property
    def queries(self) -> OutboxQueries:
        return queries_for(self.schema)

    async def write(self, transaction: object, batch: Sequence[Outgoing]) -> None:
        """Insert ``batch`` through ``transaction`` (an asyncpg connection, or a SQLAlchemy
        ``AsyncSession``/``AsyncConnection`` on asyncpg); ``send()`` calls it."""
        conn = await driver_connection(transaction, f"the outbox {self.schema!r}")
        await conn.execute(
            self.queries.write,
            [o.task_id for o in batch],
            [o.queue for o in batch],
            [o.body for o in batch],
            [o.priority for o in batch],
            [o.not_before for o in batch],
            [o.key for o in batch],
            [o.key_ttl for o in batch],
            [o.reused_id for o in batch],
        )

    async def upgrade(self, conn: asyncpg.Connection) -> list[Migration]:
        """Create the schema and the table, or apply the migrations they lack (several
        processes at once are safe: an advisory lock serialises them)."""
        return await upgrade(conn, self.schema, MIGRATIONS, VERSION_TABLE)
