"""The versioned schema: named SQL files in ``migrations/`` applied in order.

Each file is ``NNNN_name.sql``; its number is its version. ``schema_version`` (in the
broker's schema) has one row per applied file. :func:`upgrade` applies the missing ones,
each in its own transaction, under an advisory lock held for the schema, so any number of
workers starting at once apply each file exactly once. A broker upgrades at
``connect()`` unless its URL says ``?migrate=false``; then ``conveyor db upgrade APP``
does it, and a broker on an older schema refuses to start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from conveyor.brokers.postgres.queries import quoted, substitute

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "MIGRATIONS",
    "Migration",
    "current_version",
    "latest_version",
    "load_migrations",
    "upgrade",
]

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One file of ``migrations/``: its version, name and SQL (with ``{schema}``)."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> tuple[Migration, ...]:
    """The numbered files of ``package``'s ``migrations/`` folder, in order (the broker's
    own, and :mod:`conveyor.outbox`'s)."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{package} migrations must be numbered 1, 2, ... in order: {versions}")
    return tuple(found)


MIGRATIONS = load_migrations("conveyor.brokers.postgres")


def latest_version() -> int:
    """The version this Conveyor's code needs."""
    return MIGRATIONS[-1].version


async def current_version(
    conn: asyncpg.Connection, schema: str, version_table: str = "schema_version"
) -> int:
    """The schema's version: 0 when the schema or its version table does not exist."""
    table = await conn.fetchval("SELECT to_regclass($1)", f"{quoted(schema)}.{version_table}")
    if table is None:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {quoted(schema)}.{version_table}")
    return int(version or 0)


async def upgrade(
    conn: asyncpg.Connection,
    schema: str,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    version_table: str = "schema_version",
) -> list[Migration]:
    """Apply the ``migrations`` ``schema`` lacks, in order; returns the ones applied.
    ``version_table`` keeps their versions (the outbox has its own, so it can share a
    schema with the broker)."""
    if await current_version(conn, schema, version_table) >= migrations[-1].version:
        return []
    applied: list[Migration] = []
    q = quoted(schema)
    async with conn.transaction():
        # one upgrader per schema at a time; the others wait, then find nothing to do
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.{version_table} ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch(f"SELECT version FROM {q}.{version_table}")}
        for migration in migrations:
            if migration.version in done:
                continue
            await conn.execute(substitute(migration.sql, schema))
            await conn.execute(
                f"INSERT INTO {q}.{version_table} (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration)
    return applied
