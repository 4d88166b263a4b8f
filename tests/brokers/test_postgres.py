"""PostgreSQL only: enqueue inside the caller's transaction, migrations, the URL, and
connections that PostgreSQL itself kills (pg_terminate_backend) under a running worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.brokers.base import Outgoing
from conveyor.brokers.postgres import PostgresBroker
from conveyor.brokers.postgres.migrate import MIGRATIONS, latest_version
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.testing.behaviour import behaviour_settings
from conveyor.testing.conformance import conformance_options
from tests.conftest import eventually

from .conftest import POSTGRES_URL, drop_postgres_schema, require_module, service_unavailable

asyncpg = require_module("asyncpg")

pytestmark = pytest.mark.service("postgres")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    # application_name reaches every connection of ours: the tests find them by it
    address = f"{POSTGRES_URL}?prefix={schema}&application_name={schema}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_unavailable(f"PostgreSQL at {POSTGRES_URL}: {exc}")
    await conn.close()
    yield address
    await drop_postgres_schema(address)


@pytest.fixture
async def app(url: str) -> AsyncIterator[Conveyor]:
    conveyor = Conveyor(url, environ={}, **behaviour_settings())
    async with conveyor:
        yield conveyor


@pytest.fixture
async def own_conn() -> AsyncIterator[Any]:
    """The application's own connection, as a route handler would hold it."""
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


def _recorder(app: Conveyor) -> tuple[Any, dict[str, float]]:
    ran: dict[str, float] = {}

    @app.task(name=f"record_{uuid.uuid4().hex[:6]}")
    async def record(tag: str) -> str:
        ran[tag] = time.monotonic()
        return tag

    return record, ran


# -- enqueue inside the caller's transaction --------------------------------------------


async def test_a_rolled_back_transaction_never_runs_its_task(app: Conveyor, own_conn: Any) -> None:
    record, ran = _recorder(app)
    async with app.worker(concurrency=4):
        transaction = own_conn.transaction()
        await transaction.start()
        handle = await record.with_options(connection=own_conn).kiq("rolled-back")
        await transaction.rollback()
        # a task enqueued after it, on the same queue, runs: the worker was fetching
        assert await (await record.kiq("after")).get(timeout=10) == "after"
        assert await app.broker.locate(handle.task_id) is None
    assert "rolled-back" not in ran


async def test_a_committed_transaction_always_runs_its_task(app: Conveyor, own_conn: Any) -> None:
    record, _ = _recorder(app)
    async with own_conn.transaction():
        await own_conn.execute("SELECT 1")
        handles = [await record.with_options(connection=own_conn).kiq(f"c{i}") for i in range(5)]
    async with app.worker(concurrency=4):
        assert [await h.get(timeout=10) for h in handles] == [f"c{i}" for i in range(5)]


async def test_a_task_in_an_open_transaction_is_never_fetched_before_commit(
    app: Conveyor, own_conn: Any
) -> None:
    """A worker fetching every 50 ms throughout (fetch_wait) does not see the task while
    the transaction is open, and runs it right after the commit."""
    record, ran = _recorder(app)
    fetched: list[list[str]] = []
    fetch = app.broker.fetch

    async def spying_fetch(queues: Any, count: int, wait: float) -> Any:
        got = await fetch(queues, count, wait)
        fetched.append([d.task_id for d in got])
        return got

    app.broker.fetch = spying_fetch  # type: ignore[method-assign]
    async with app.worker(concurrency=4):
        transaction = own_conn.transaction()
        await transaction.start()
        handle = await record.with_options(connection=own_conn).kiq("open")
        polls = len(fetched)
        await asyncio.sleep(1.0)  # sleep: the worker polls throughout the open transaction
        assert len(fetched) - polls >= 5, "the worker did not poll while the transaction was open"
        assert "open" not in ran
        assert all(handle.task_id not in ids for ids in fetched)
        assert await app.broker.locate(handle.task_id) is None, "visible before commit"
        await transaction.commit()
        committed = time.monotonic()
        assert await handle.get(timeout=10) == "open"
    assert ran["open"] > committed


async def test_a_sqlalchemy_session_commits_and_rolls_back_its_tasks(app: Conveyor) -> None:
    sqlalchemy = require_module("sqlalchemy.ext.asyncio")
    engine = sqlalchemy.create_async_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://")
    )
    record, ran = _recorder(app)
    try:
        async with sqlalchemy.AsyncSession(engine) as session:
            await session.begin()
            dropped = await record.with_options(session=session).kiq("dropped")
            await session.rollback()
            async with session.begin():
                kept = await record.with_options(session=session).kiq("kept")
        async with app.worker(concurrency=4):
            assert await kept.get(timeout=10) == "kept"
        assert await app.broker.locate(dropped.task_id) is None
        assert "dropped" not in ran
    finally:
        await engine.dispose()


async def test_a_transactional_enqueue_on_another_broker_is_refused() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    async def noop() -> None: ...

    async with app:
        with pytest.raises(ConfigurationError, match="cannot enqueue inside your transaction"):
            await noop.with_options(connection=object()).kiq()


async def test_something_else_than_a_connection_is_refused(app: Conveyor) -> None:
    record, _ = _recorder(app)
    with pytest.raises(ConfigurationError, match="takes an asyncpg Connection"):
        await record.with_options(connection="not a connection").kiq("x")


# -- schema, migrations, URL ------------------------------------------------------------


async def test_connect_applies_the_migrations_once(url: str, own_conn: Any) -> None:
    schema = url.split("prefix=")[1].split("&")[0]
    first, second = PostgresBroker(url), PostgresBroker(url)
    await asyncio.gather(first.connect(), second.connect())  # racing upgrades apply once
    try:
        rows = await own_conn.fetch(f'SELECT version, name FROM "{schema}".schema_version')
        assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
        assert latest_version() == MIGRATIONS[-1].version
        assert await first.upgrade_schema() == []
    finally:
        await first.close()
        await second.close()


async def test_migrate_false_refuses_an_old_schema_until_upgraded(url: str) -> None:
    broker = PostgresBroker(url + "&migrate=false")
    with pytest.raises(ConfigurationError, match="conveyor db upgrade"):
        await broker.connect()
    assert [m.name for m in await broker.upgrade_schema()] == [m.name for m in MIGRATIONS]
    await broker.connect()
    await broker.close()


@pytest.mark.parametrize("prefix", ["a-b", "1abc", "x;drop", "a" * 64])
def test_a_prefix_that_is_not_a_plain_identifier_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="names the schema"):
        PostgresBroker(f"postgresql://u:pw@h/db?prefix={prefix}")


async def test_an_unreachable_server_is_unavailable_without_the_password() -> None:
    broker = PostgresBroker(
        "postgresql://app:s3cr3t-pw@127.0.0.1:1/db?prefix=x&connect_timeout=1",
        conformance_options(),
    )
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    assert "s3cr3t-pw" not in str(caught.value)
    assert "app:***@127.0.0.1:1" in str(caught.value)


# -- connections PostgreSQL kills -------------------------------------------------------


async def _terminate(own_conn: Any, url: str) -> int:
    name = url.rsplit("application_name=", 1)[1]
    rows = await own_conn.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        name,
    )
    return len(rows)


async def test_terminated_connections_never_kill_the_worker(
    app: Conveyor, url: str, own_conn: Any
) -> None:
    """pg_terminate_backend of every connection of ours (pool, listener, lease keeper),
    five times while tasks run: every task completes, and the worker still serves."""
    record, ran = _recorder(app)
    async with app.worker(concurrency=8):
        handles = []
        for round_ in range(5):
            handles += [await record.kiq(f"r{round_}-{i}") for i in range(20)]
            started = 10 * (round_ + 1)
            await eventually(lambda n=started: len(ran) >= n, timeout=20, what="progress")
            assert await _terminate(own_conn, url) >= 1
        results = [await h.get(timeout=30) for h in handles]
        assert sorted(results) == sorted(f"r{r}-{i}" for r in range(5) for i in range(20))
        # the listener came back: a task enqueued now wakes an idle worker without a poll
        assert await (await record.kiq("after")).get(timeout=10) == "after"


async def test_a_waiting_fetch_survives_its_listener_being_terminated(
    url: str, own_conn: Any
) -> None:
    """The listener reconnects and wakes its waiters; a publish after that wakes a fetch
    whose fallback look is 30 s away."""
    broker = PostgresBroker(url, conformance_options(fetch_wait=30.0, fault_pause=0.01))
    await broker.connect()
    try:
        listener = broker._db.listener
        waiting = asyncio.create_task(broker.fetch(["default"], 1, 30.0))
        await asyncio.sleep(0.1)  # sleep: the fetch begins to wait (no portable signal)
        await _terminate(own_conn, url)
        await eventually(lambda: not listener.listening.is_set(), what="the loss noticed")
        await asyncio.wait_for(listener.listening.wait(), 10.0)
        await broker.publish([Outgoing(task_id="t1", queue="default", body=b"b")])
        (got,) = await asyncio.wait_for(waiting, 10.0)
        assert got.task_id == "t1"
    finally:
        await broker.close()


def test_conveyor_db_upgrade_applies_the_migrations_once(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from conveyor.cli import main

    schema = f"test_{uuid.uuid4().hex[:12]}"
    url = f"{POSTGRES_URL}?prefix={schema}&migrate=false"
    (tmp_path / "dbapp.py").write_text(
        f"from conveyor import Conveyor\napp = Conveyor({url!r}, environ={{}})\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        first = CliRunner().invoke(main, ["db", "upgrade", "dbapp:app"])
        if "cannot reach PostgreSQL" in first.output:
            service_unavailable(first.output)
        assert first.exit_code == 0, first.output
        assert "applied 0001_initial" in first.output
        again = CliRunner().invoke(main, ["db", "upgrade", "dbapp:app"])
        assert again.exit_code == 0, again.output
        assert "applied" not in again.output.replace("migrations applied", "")
        assert "(0 migrations applied)" in again.output
    finally:
        asyncio.run(drop_postgres_schema(url))
