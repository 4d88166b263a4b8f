"""``conveyor.integrations.sqlalchemy``: on brokers that cannot write into the app's
database (SQLite on another file, Redis), ``with_options(session=...)`` holds the publish
until the session's transaction commits and drops it on rollback. The app's database is
an aiosqlite file of its own; the brokers are real."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.hooks import Hook
from conveyor.message import Message
from tests.brokers.conftest import require_module
from tests.conftest import connected_app

sqlalchemy_asyncio = require_module("sqlalchemy.ext.asyncio")
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession  # noqa: E402


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.service("redis"))])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Conveyor]:
    async with connected_app(request.param, tmp_path) as conveyor:
        yield conveyor


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The application's database: another file than the broker's."""
    engine = sqlalchemy_asyncio.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE emails (id INTEGER PRIMARY KEY)"))
    yield engine
    await engine.dispose()


def _recorder(app: Conveyor) -> tuple[Any, dict[str, float]]:
    ran: dict[str, float] = {}

    @app.task(name=f"record_{uuid.uuid4().hex[:6]}")
    async def record(tag: str) -> str:
        ran[tag] = time.monotonic()
        return tag

    return record, ran


def _spy_on_fetch(app: Conveyor) -> list[list[str]]:
    """Every fetch's task ids, as the worker polls."""
    fetched: list[list[str]] = []
    fetch = app.broker.fetch

    async def spying_fetch(queues: Any, count: int, wait: float) -> Any:
        got = await fetch(queues, count, wait)
        fetched.append([d.task_id for d in got])
        return got

    app.broker.fetch = spying_fetch  # type: ignore[method-assign]
    return fetched


async def test_a_rolled_back_session_never_publishes_its_task(
    app: Conveyor, engine: AsyncEngine
) -> None:
    record, ran = _recorder(app)
    async with app.worker(concurrency=4), AsyncSession(engine) as session:
        await session.execute(text("INSERT INTO emails VALUES (1)"))
        dropped = await record.with_options(session=session).kiq("rolled-back")
        await session.rollback()
        # a task published after it, on the same queue, runs: the worker was fetching
        assert await (await record.kiq("after")).get(timeout=10) == "after"
        assert await app.broker.locate(dropped.task_id) is None
    assert "rolled-back" not in ran


async def test_a_session_closed_without_commit_never_publishes_its_task(
    app: Conveyor, engine: AsyncEngine
) -> None:
    record, _ = _recorder(app)
    async with AsyncSession(engine) as session:
        await session.execute(text("INSERT INTO emails VALUES (1)"))
        dropped = await record.with_options(session=session).kiq("closed")
    assert await app.broker.locate(dropped.task_id) is None


async def test_a_committed_session_publishes_its_tasks_in_order(
    app: Conveyor, engine: AsyncEngine
) -> None:
    record, _ = _recorder(app)
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(text("INSERT INTO emails VALUES (1)"))
        handles = [await record.with_options(session=session).kiq(f"c{i}") for i in range(5)]
    # published before the commit returned: no wait needed to find them
    assert all([await app.broker.locate(h.task_id) is not None for h in handles])
    async with app.worker(concurrency=4):
        assert [await h.get(timeout=10) for h in handles] == [f"c{i}" for i in range(5)]


async def test_a_task_held_in_an_open_transaction_is_never_fetched_before_commit(
    app: Conveyor, engine: AsyncEngine
) -> None:
    """A worker fetching every 50 ms (fetch_wait) throughout never sees the task while the
    transaction is open; the task id is known from the start, and it runs after commit."""
    record, ran = _recorder(app)
    fetched = _spy_on_fetch(app)
    async with app.worker(concurrency=4), AsyncSession(engine) as session:
        await session.begin()
        await session.execute(text("INSERT INTO emails VALUES (1)"))
        handle = await record.with_options(session=session).kiq("open")
        assert handle.task_id  # known before the commit
        polls = len(fetched)
        await asyncio.sleep(1.0)  # sleep: the worker polls throughout the open transaction
        assert len(fetched) - polls >= 5, "the worker did not poll while the transaction was open"
        assert all(handle.task_id not in ids for ids in fetched)
        assert await app.broker.locate(handle.task_id) is None, "published before commit"
        # the publish happens inside commit(), so the task may run before it returns:
        # the time to beat is the commit's start
        committing = time.monotonic()
        await session.commit()
        assert await handle.get(timeout=10) == "open"
    assert ran["open"] > committing


async def test_a_rolled_back_savepoint_drops_only_its_own_tasks(
    app: Conveyor, engine: AsyncEngine
) -> None:
    record, _ = _recorder(app)
    async with AsyncSession(engine) as session:
        async with session.begin():
            outer = await record.with_options(session=session).kiq("outer")
            savepoint = await session.begin_nested()
            inner = await record.with_options(session=session).kiq("inner")
            await savepoint.rollback()
            async with session.begin_nested():  # released: joins the outer transaction
                released = await record.with_options(session=session).kiq("released")
            assert await app.broker.locate(released.task_id) is None, "published at release"
        assert await app.broker.locate(inner.task_id) is None
        async with app.worker(concurrency=4):
            assert await outer.get(timeout=10) == "outer"
            assert await released.get(timeout=10) == "released"


async def test_a_released_savepoint_in_a_rolled_back_transaction_publishes_nothing(
    app: Conveyor, engine: AsyncEngine
) -> None:
    record, _ = _recorder(app)
    async with AsyncSession(engine) as session:
        await session.begin()
        async with session.begin_nested():
            handle = await record.with_options(session=session).kiq("inner")
        await session.rollback()
    assert await app.broker.locate(handle.task_id) is None


async def test_one_session_holds_each_transaction_apart(app: Conveyor, engine: AsyncEngine) -> None:
    record, _ = _recorder(app)
    async with AsyncSession(engine) as session:
        async with session.begin():
            first = await record.with_options(session=session).kiq("first")
        await session.begin()
        second = await record.with_options(session=session).kiq("second")
        await session.rollback()
        async with session.begin():
            third = await record.with_options(session=session).kiq("third")
    assert await app.broker.locate(first.task_id) is not None
    assert await app.broker.locate(second.task_id) is None
    assert await app.broker.locate(third.task_id) is not None


async def test_after_enqueue_hooks_run_at_the_publish_not_at_the_kiq(
    app: Conveyor, engine: AsyncEngine
) -> None:
    record, _ = _recorder(app)
    seen: list[str] = []

    class Note(Hook):
        async def after_enqueue(self, message: Message, task_id: str) -> None:
            seen.append(task_id)

    app.add_hook(Note())

    async with AsyncSession(engine) as session, session.begin():
        handle = await record.with_options(session=session).kiq("hooked")
        assert seen == []
    assert seen == [handle.task_id]


async def test_a_failed_publish_after_commit_is_logged_with_its_task_id(
    app: Conveyor, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The window: the rows are committed, the publish fails, the task is lost and said so."""
    record, _ = _recorder(app)

    async def broken(batch: Any) -> Any:
        raise ConnectionError("broker went away")

    app.broker.publish = broken  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, "conveyor.integrations.sqlalchemy")
    async with AsyncSession(engine) as session:
        async with session.begin():
            await session.execute(text("INSERT INTO emails VALUES (7)"))
            handle = await record.with_options(session=session).kiq("lost")
        # the session is usable after the failed publish, and the row was committed
        assert (await session.execute(text("SELECT id FROM emails"))).scalars().all() == [7]
    errors = [r for r in caplog.records if r.name == "conveyor.integrations.sqlalchemy"]
    assert errors and handle.task_id in errors[0].getMessage()


async def test_an_async_connection_cannot_hold_a_task(app: Conveyor, engine: AsyncEngine) -> None:
    record, _ = _recorder(app)
    async with engine.connect() as conn:
        with pytest.raises(ConfigurationError, match="needs a SQLAlchemy AsyncSession"):
            await record.with_options(session=conn).kiq("x")


async def test_a_driver_connection_cannot_hold_a_task(app: Conveyor) -> None:
    record, _ = _recorder(app)
    with pytest.raises(ConfigurationError, match="cannot hold the task until a"):
        await record.with_options(connection=object()).kiq("x")
