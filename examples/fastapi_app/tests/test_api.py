"""The API and its tasks together, in the test's event loop: the API's lifespan (what
uvicorn runs at startup), a worker on ``memory://``, and httpx talking to the API
without a server. Each test gets a fresh database, for the routes and the tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from app.db import create_tables, get_db_session
from app.main import api
from app.models import SentEmail
from app.tasks import conveyor_app, generate_embedding, send_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from conveyor import TaskNotFound


@pytest.fixture(autouse=True)
async def database() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine("sqlite+aiosqlite://")  # in memory: a new one per test
    await create_tables(engine)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    async def test_session() -> AsyncIterator[AsyncSession]:
        async with sessionmaker() as session:
            yield session

    api.dependency_overrides[get_db_session] = test_session
    conveyor_app.dependency_overrides[get_db_session] = test_session
    yield sessionmaker
    api.dependency_overrides.clear()
    conveyor_app.dependency_overrides.clear()
    await engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        api.router.lifespan_context(api),  # connects conveyor_app via lifespan()
        conveyor_app.worker(concurrency=4),  # uses the running lifespan, not a second one
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as client,
    ):
        yield client


async def test_welcome_email(
    http: httpx.AsyncClient, database: async_sessionmaker[AsyncSession]
) -> None:
    user = (await http.post("/users", json={"email": "ada@example.com", "name": "Ada"})).json()
    task_id = (await http.post(f"/users/{user['id']}/welcome-email")).json()["task_id"]
    email_id = await conveyor_app.handle(task_id).get(timeout=5)  # raises TaskFailed on failure
    async with database() as session:
        email = await session.get(SentEmail, email_id)
    assert email is not None
    assert (email.to_address, email.subject) == ("ada@example.com", "Welcome, Ada!")
    assert email.delivered_at is not None


async def test_a_rolled_back_email_row_drops_its_task(
    http: httpx.AsyncClient, database: async_sessionmaker[AsyncSession]
) -> None:
    """The route's pattern, with the commit failing: neither the row nor the task exist.
    On memory:// (and SQLite, Redis) the task was held until a commit that never came."""
    user = (await http.post("/users", json={"email": "bo@example.com", "name": "Bo"})).json()
    async with database() as session:
        email = SentEmail(user_id=user["id"], to_address="bo@example.com", subject="Hi")
        session.add(email)
        await session.flush()
        handle = await send_email.with_options(session=session).kiq(email.id)
        await session.rollback()
    # a task enqueued after it runs: the worker was fetching all along
    assert await (await generate_embedding.kiq("after")).get(timeout=5)
    with pytest.raises(TaskNotFound):
        await handle.status()  # never published
    async with database() as session:
        assert (await session.scalars(select(SentEmail))).all() == []


async def test_a_report_shows_progress_then_its_result(http: httpx.AsyncClient) -> None:
    enqueued = (await http.post("/reports", json={"title": "Q3"})).json()
    result = await conveyor_app.handle(enqueued["task_id"]).get(timeout=10)
    assert result == {"report_id": enqueued["report_id"], "summary": "Q3: 4 sections"}
    state = (await http.get(f"/tasks/{enqueued['task_id']}")).json()
    assert (state["status"], state["result"]) == ("succeeded", result)


async def test_an_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/tasks/no-such-task")).status_code == 404


async def test_the_welcome_email_of_a_missing_user_is_404(
    http: httpx.AsyncClient, database: async_sessionmaker[AsyncSession]
) -> None:
    assert (await http.post("/users/99/welcome-email")).status_code == 404
    async with database() as session:
        assert (await session.scalars(select(SentEmail))).all() == []
