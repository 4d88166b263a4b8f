"""Runs in bench/.venvs/procrastinate. Worker: `procrastinate --app ... worker`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import procrastinate
import psycopg
from benchkit import now, record
from benchkit.config import CONFIG
from benchkit.driver import PeerApp

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=CONFIG.pg_dsn))


@app.task(name="bench_task", queue="bench")
async def bench_task(task_id: int, sleep: float) -> int:
    started = now()
    if sleep:
        await asyncio.sleep(sleep)
    record(task_id, started)
    return task_id


class App(PeerApp):
    async def start(self) -> None:
        await app.open_async()

    async def stop(self) -> None:
        await app.close_async()

    async def enqueue_one(self, task_id: int, sleep: float) -> None:
        await bench_task.defer_async(task_id=task_id, sleep=sleep)

    async def enqueue_many(self, task_ids: Sequence[int], sleep: float) -> None:
        await bench_task.batch_defer_async(*({"task_id": i, "sleep": sleep} for i in task_ids))

    async def after_enqueue(self) -> None:
        """The database is created fresh for every run, so its planner has no statistics
        for a table that just received the whole backlog; autovacuum would ANALYZE it
        within a minute in a running deployment. Without this, fetching a job from a
        20,000-row backlog is ~8x slower (measured), which is not procrastinate's fault."""
        async with await psycopg.AsyncConnection.connect(CONFIG.pg_dsn, autocommit=True) as conn:
            await conn.execute("ANALYZE")

    async def prepare(self) -> dict[str, Any]:
        """Drop and re-create the benchmark database, then apply procrastinate's schema."""
        dbname = CONFIG.pg_dsn.rsplit("/", 1)[1].split("?", 1)[0]
        admin = CONFIG.pg_dsn.rsplit("/", 1)[0] + "/postgres"
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{dbname}"')
            version = (await (await conn.execute("SHOW server_version")).fetchone() or ["?"])[0]
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        return {"postgresql": version}
