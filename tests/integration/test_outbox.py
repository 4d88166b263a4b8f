"""``conveyor.outbox``: tasks written to a table in the app's PostgreSQL in the caller's
transaction, published to a Redis broker by a relay. Ledgers of what ran prove each
committed task runs once, rolled-back ones never, with several relays and with a relay
SIGKILLed between its publish and its DELETE. Real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from conveyor import Conveyor
from conveyor.brokers.base import Outgoing
from conveyor.outbox import Outbox, OutboxRelay
from tests.brokers.conftest import POSTGRES_URL, require_module, service_unavailable
from tests.conftest import connected_app
from tests.integration.processes import ROOT

pytestmark = [pytest.mark.service("postgres"), pytest.mark.service("redis")]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Conveyor]:
    async with connected_app("redis", tmp_path) as conveyor:
        yield conveyor


@pytest.fixture
async def outbox() -> AsyncIterator[Outbox]:
    """An outbox in a schema of this test's own, created here and dropped after."""
    box = Outbox(schema=f"outbox_{uuid.uuid4().hex[:12]}")
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_unavailable(f"PostgreSQL at {POSTGRES_URL}: {exc}")
    try:
        await box.upgrade(conn)
        await conn.execute("CREATE TABLE IF NOT EXISTS outbox_test_rows (id bigserial)")
        yield box
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{box.schema}" CASCADE')
        await conn.close()


@pytest.fixture
async def db() -> AsyncIterator[asyncpg.Connection]:
    """The application's own connection."""
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


def _recorder(app: Conveyor) -> tuple[Any, collections.Counter[str]]:
    """A task that counts its runs by tag: the ledger."""
    ran: collections.Counter[str] = collections.Counter()

    @app.task(name=f"record_{uuid.uuid4().hex[:6]}")
    async def record(tag: str) -> str:
        ran[tag] += 1
        return tag

    return record, ran


@contextlib.asynccontextmanager
async def _relaying(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.serve())
    try:
        yield relay
    finally:
        relay.stop()
        await task


async def _rows(db: asyncpg.Connection, outbox: Outbox) -> int:
    return int(await db.fetchval(f'SELECT count(*) FROM "{outbox.schema}".outbox'))


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        await asyncio.sleep(0.02)  # sleep: polling for the relay and the worker


async def _drain(app: Conveyor, record: Any) -> None:
    """Return once everything queued before now has run: a sentinel published last ran,
    and the worker stopped only after its tasks in flight ended."""
    sentinel = await record.kiq("sentinel")
    assert await sentinel.get(timeout=15) == "sentinel"


def _spy_on_publish(app: Conveyor) -> list[str]:
    """Every task id the broker is asked to publish, in order."""
    asked: list[str] = []
    publish = app.broker.publish

    async def spying(batch: Sequence[Outgoing]) -> list[str]:
        asked.extend(o.task_id for o in batch)
        return await publish(batch)

    app.broker.publish = spying  # type: ignore[method-assign]
    return asked


async def test_committed_tasks_run_once_each_and_rolled_back_ones_never(
    app: Conveyor, outbox: Outbox, db: asyncpg.Connection
) -> None:
    record, ran = _recorder(app)
    committed, rolled_back = [], []
    for i in range(20):
        async with db.transaction():
            await db.execute("INSERT INTO outbox_test_rows DEFAULT VALUES")
            committed.append(await record.with_options(outbox=outbox, connection=db).kiq(f"c{i}"))
    for i in range(5):
        with contextlib.suppress(ZeroDivisionError):
            async with db.transaction():
                h = await record.with_options(outbox=outbox, connection=db).kiq(f"r{i}")
                rolled_back.append(h)
                raise ZeroDivisionError
    assert await _rows(db, outbox) == 20
    relay = OutboxRelay(app, POSTGRES_URL, outbox, batch_size=7, poll_interval=0.05)
    async with _relaying(relay), app.worker(concurrency=4):
        assert [await h.get(timeout=15) for h in committed] == [f"c{i}" for i in range(20)]
        await _drain(app, record)
    assert relay.published == 20
    assert await _rows(db, outbox) == 0
    assert ran == collections.Counter({f"c{i}": 1 for i in range(20)} | {"sentinel": 1})
    for h in rolled_back:
        assert await app.broker.locate(h.task_id) is None


async def test_a_session_enqueue_commits_with_the_session(app: Conveyor, outbox: Outbox) -> None:
    sqlalchemy_asyncio = require_module("sqlalchemy.ext.asyncio")
    from sqlalchemy import text

    engine = sqlalchemy_asyncio.create_async_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://")
    )
    record, ran = _recorder(app)
    try:
        async with sqlalchemy_asyncio.AsyncSession(engine) as session:
            async with session.begin():
                await session.execute(text("INSERT INTO outbox_test_rows DEFAULT VALUES"))
                kept = await record.with_options(outbox=outbox, session=session).kiq("kept")
            await session.begin()
            await record.with_options(outbox=outbox, session=session).kiq("dropped")
            await session.rollback()
    finally:
        await engine.dispose()
    relay = OutboxRelay(app, POSTGRES_URL, outbox, poll_interval=0.05)
    async with _relaying(relay), app.worker(concurrency=2):
        assert await kept.get(timeout=15) == "kept"
        await _drain(app, record)
    assert ran == collections.Counter({"kept": 1, "sentinel": 1})


async def test_a_task_in_an_open_transaction_is_not_published_before_commit(
    app: Conveyor, outbox: Outbox, db: asyncpg.Connection
) -> None:
    record, _ = _recorder(app)
    asked = _spy_on_publish(app)
    relay = OutboxRelay(app, POSTGRES_URL, outbox, poll_interval=0.05)
    async with _relaying(relay), app.worker(concurrency=2):
        transaction = db.transaction()
        await transaction.start()
        handle = await record.with_options(outbox=outbox, connection=db).kiq("open")
        await asyncio.sleep(0.5)  # sleep: the relay polls every 50 ms throughout
        assert handle.task_id not in asked
        assert await app.broker.locate(handle.task_id) is None
        await transaction.commit()
        assert await handle.get(timeout=15) == "open"
    assert asked == [handle.task_id]


async def test_two_relays_at_once_publish_each_row_once(
    app: Conveyor, outbox: Outbox, db: asyncpg.Connection
) -> None:
    record, ran = _recorder(app)
    async with db.transaction():
        handles = [
            await record.with_options(outbox=outbox, connection=db).kiq(f"t{i}") for i in range(200)
        ]
    asked = _spy_on_publish(app)
    first = OutboxRelay(app, POSTGRES_URL, outbox, batch_size=10, poll_interval=0.05)
    second = OutboxRelay(app, POSTGRES_URL, outbox, batch_size=10, poll_interval=0.05)
    async with _relaying(first), _relaying(second):
        await _until(lambda: _zero(db, outbox))
    assert first.published + second.published == 200
    assert sorted(asked) == sorted(h.task_id for h in handles)  # each asked once
    async with app.worker(concurrency=4):
        await _drain(app, record)
    assert ran == collections.Counter({f"t{i}": 1 for i in range(200)} | {"sentinel": 1})


async def _zero(db: asyncpg.Connection, outbox: Outbox) -> bool:
    return await _rows(db, outbox) == 0


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _relay_process(
    app: Conveyor, outbox: Outbox, kill_after: int
) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "BROKER_URL": app.settings.broker_url,
        "OUTBOX_DSN": POSTGRES_URL,
        "OUTBOX_SCHEMA": outbox.schema,
        "KILL_AFTER": str(kill_after),
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/integration/outbox_relay_app.py")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


async def test_a_relay_killed_between_publish_and_delete_loses_and_duplicates_nothing(
    app: Conveyor, outbox: Outbox, db: asyncpg.Connection
) -> None:
    """The relay process SIGKILLs itself after publishing its 3rd batch of 10, before the
    batch's DELETE commits. Those 10 tasks run (the worker drains them), then a second
    relay publishes the same 10 rows again: their keys make the broker return the first
    tasks, so nothing runs twice, and the other 20 rows are published once."""
    record, ran = _recorder(app)
    async with db.transaction():
        handles = [
            await record.with_options(outbox=outbox, connection=db).kiq(f"k{i}") for i in range(50)
        ]
    with _relay_process(app, outbox, kill_after=3) as process:
        code = await asyncio.to_thread(process.wait, 60)
        assert process.stdout is not None
        printed = process.stdout.read().split("\n")
    assert code == -signal.SIGKILL
    batches = [line.split()[1:] for line in printed if line.startswith("published")]
    assert batches == [[h.task_id for h in handles[i : i + 10]] for i in (0, 10, 20)]
    assert await _rows(db, outbox) == 30  # the 3rd batch published, but still in the outbox
    async with app.worker(concurrency=4):
        await _until(lambda: _ran(ran, 30))  # the first 30 ran, so the 3rd batch's ended
        asked = _spy_on_publish(app)
        again = OutboxRelay(app, POSTGRES_URL, outbox, batch_size=10, poll_interval=0.05)
        async with _relaying(again):
            await _until(lambda: _zero(db, outbox))
        assert asked[:10] == batches[2]  # published twice: the duplicate to explain
        await _drain(app, record)
    assert ran == collections.Counter({f"k{i}": 1 for i in range(50)} | {"sentinel": 1})


async def _ran(ran: collections.Counter[str], count: int) -> bool:
    return sum(ran.values()) >= count


async def test_the_relay_command_relays_and_stops_at_sigterm(
    app: Conveyor, outbox: Outbox, db: asyncpg.Connection
) -> None:
    record, _ = _recorder(app)
    async with db.transaction():
        for i in range(5):
            await record.with_options(outbox=outbox, connection=db).kiq(f"cli{i}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "BROKER_URL": app.settings.broker_url,
    }
    command = [sys.executable, "-m", "conveyor.cli", "outbox", "relay"]
    command += ["tests.integration.outbox_relay_app:app", "--dsn", POSTGRES_URL]
    command += ["--schema", outbox.schema, "--poll-interval", "0.05"]
    process = _start(command, env)
    try:
        await _until(lambda: _zero(db, outbox), timeout=30)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stderr is not None
        stderr = process.stderr.read()
        process.stderr.close()
    assert code == 0, stderr
