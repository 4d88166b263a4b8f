"""Flow control on SQLite (``Capability.FLOW``): token buckets, leased semaphores and
marks, each step one ``BEGIN IMMEDIATE`` transaction on the file, so every process that
opens it shares one limit. Times are the embedding process's clock, as for leases."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from conveyor.brokers.sqlite.connection import transaction
from conveyor.brokers.sqlite.queries import QUERIES
from conveyor.flow import take_bucket

__all__ = [
    "acquire_permit",
    "get_marks",
    "put_marks",
    "release_permits",
    "renew_permits",
    "take_token",
]


def take_token(conn: sqlite3.Connection, key: str, rate: float, burst: int, now: float) -> float:
    """:meth:`~conveyor.brokers.base.FlowControl.take_token`, in one transaction."""
    with transaction(conn):
        row = conn.execute(QUERIES.get_bucket, {"key": key}).fetchone()
        tokens, updated = (float(burst), now) if row is None else (row[0], row[1])
        tokens, wait, at = take_bucket(tokens, updated, now, rate, burst)
        conn.execute(QUERIES.put_bucket, {"key": key, "tokens": tokens, "now": at})
    return wait


def acquire_permit(
    conn: sqlite3.Connection, key: str, limit: int, holder: str, lease: float, now: float
) -> bool:
    """:meth:`~conveyor.brokers.base.FlowControl.acquire_permit`, in one transaction."""
    with transaction(conn):
        conn.execute(QUERIES.drop_expired_permits, {"key": key, "now": now})
        held, mine = conn.execute(QUERIES.count_permits, {"key": key, "holder": holder}).fetchone()
        if not mine and held >= limit:
            return False
        params = {"key": key, "holder": holder, "expires_at": now + lease}
        conn.execute(QUERIES.hold_permit, params)
    return True


def renew_permits(
    conn: sqlite3.Connection, permits: Sequence[tuple[str, str]], lease: float, now: float
) -> None:
    with transaction(conn):
        conn.executemany(
            QUERIES.renew_permit,
            [{"key": k, "holder": h, "expires_at": now + lease} for k, h in permits],
        )


def release_permits(conn: sqlite3.Connection, permits: Sequence[tuple[str, str]]) -> None:
    with transaction(conn):
        conn.executemany(QUERIES.release_permit, [{"key": k, "holder": h} for k, h in permits])


def put_marks(conn: sqlite3.Connection, marks: Mapping[str, str], ttl: float, now: float) -> None:
    with transaction(conn):
        conn.executemany(
            QUERIES.put_mark,
            [{"name": n, "value": v, "expires_at": now + ttl} for n, v in marks.items()],
        )


def get_marks(conn: sqlite3.Connection, names: Sequence[str], now: float) -> list[str | None]:
    out: list[str | None] = []
    for name in names:
        row = conn.execute(QUERIES.get_mark, {"name": name, "now": now}).fetchone()
        out.append(None if row is None else row[0])
    return out
