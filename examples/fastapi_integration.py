"""FastAPI integration: the API's lifespan connects the broker, one get_db_session serves
a route and a task, a task reads request.app.state, and init() runs the API's lifespan in
the worker.

Run: python examples/fastapi_integration.py        (docs/fastapi.md)
Needs: conveyor-tasks[fastapi], httpx, sqlalchemy[asyncio], aiosqlite.

In production the API runs under uvicorn and the worker is a separate process
(`conveyor worker pkg.tasks:conveyor_app`). Here the API, then a worker, then the API
again run one after the other in this process, on an SQLite broker and an SQLite
database in a temporary directory, so you can watch each side.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conveyor import Conveyor
from conveyor.integrations.fastapi import init, lifespan

workdir = Path(tempfile.mkdtemp(prefix="conveyor-fastapi-"))
conveyor_app = Conveyor(f"sqlite:///{workdir / 'queue.db'}", fetch_wait=0.1)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
    summary: Mapped[str | None]


# -- the API ------------------------------------------------------------------------------


@asynccontextmanager
async def database(api: FastAPI) -> AsyncIterator[None]:
    """The API's own lifespan: it builds app.state, in the API and in the worker."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{workdir / 'app.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    api.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    api.state.site_name = "notes.example"
    print("  lifespan: database opened")
    yield
    await engine.dispose()
    print("  lifespan: database closed")


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Written for routes; tasks use it unchanged (closed after the task, even on error)."""
    async with request.app.state.sessionmaker() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db_session)]

api = FastAPI(lifespan=lifespan(conveyor_app, database))  # connects the broker too
init(conveyor_app, api)  # in a package: init(conveyor_app, "pkg.main:api"), imported lazily


@conveyor_app.task
async def summarise(note_id: int, db: DbSession, request: Request) -> str:
    note = await db.get(Note, note_id)
    assert note is not None
    note.summary = f"{note.text.upper()} (summarised for {request.app.state.site_name})"
    await db.commit()
    return note.summary


@api.post("/notes")
async def create_note(text: str, db: DbSession) -> dict[str, Any]:
    note = Note(text=text)
    db.add(note)
    await db.commit()  # commit first, so the worker finds the row
    handle = await summarise.kiq(note.id)
    return {"id": note.id, "task_id": handle.task_id}


@api.get("/notes/{note_id}")
async def read_note(note_id: int, db: DbSession) -> dict[str, Any]:
    note = await db.get(Note, note_id)
    assert note is not None
    return {"text": note.text, "summary": note.summary}


@api.get("/tasks/{task_id}")
async def task_status(task_id: str) -> dict[str, Any]:
    state = await conveyor_app.handle(task_id).status()
    return {"status": state.status.value, "attempts": state.attempts}


# -- running both sides -------------------------------------------------------------------


@asynccontextmanager
async def serving() -> AsyncIterator[httpx.AsyncClient]:
    """The API as uvicorn runs it: its lifespan around the requests."""
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


async def main() -> None:
    print("API process: the lifespan connects the broker; routes enqueue")
    async with serving() as http:
        created = [
            (await http.post("/notes", params={"text": text})).json() for text in ("milk", "eggs")
        ]
        print("  queued:", (await http.get(f"/tasks/{created[0]['task_id']}")).json())

    print("worker: runs the API's lifespan (init) while it runs the tasks")
    async with conveyor_app.worker():
        for note in created:
            await conveyor_app.handle(note["task_id"]).get(timeout=10)

    print("API process again: the tasks' writes, through the same get_db_session")
    async with serving() as http:
        for note in created:
            print("  note:", (await http.get(f"/notes/{note['id']}")).json())
        print("  task:", (await http.get(f"/tasks/{created[0]['task_id']}")).json())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
