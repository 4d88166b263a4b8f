"""The database: opened by the API's lifespan, which runs in the API process and, through
``init()`` in ``tasks.py``, in every worker process; and ``get_db_session``, the one
provider that routes and tasks both ``Depends`` on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.schema import CreateTable

from app.models import Base
from app.settings import settings


@asynccontextmanager
async def database(api: FastAPI) -> AsyncIterator[None]:
    """The API's own lifespan: an engine and a sessionmaker in ``api.state``."""
    engine = create_async_engine(settings.database_url)
    await create_tables(engine)
    api.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def create_tables(engine: AsyncEngine) -> None:
    """Create missing tables (a real project runs its migrations instead). IF NOT EXISTS,
    not ``metadata.create_all``: the API and the worker start at the same moment, and
    create_all's check-then-create would let both try to create the same table."""
    async with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            await connection.execute(CreateTable(table, if_not_exists=True))


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request, or per task run. If the route or task raises, the session
    rolls back what it did not commit, then closes."""
    async with request.app.state.sessionmaker() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db_session)]
