"""conveyor.integrations.fastapi: the lifespan connects and closes, init() runs the API's
lifespan in workers, and tasks share the API's providers (a SQLAlchemy session, Request).

The API is driven as a server drives it: the ASGI lifespan protocol for startup and
shutdown, httpx's ASGITransport for requests. Workers run in this event loop on
``memory://``; the database is a real SQLite file through aiosqlite.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.requests import HTTPConnection, Request

from conveyor import ConfigurationError, Conveyor, ConveyorError, TaskStatus
from conveyor.integrations.fastapi import init, lifespan
from tests.conftest import fast_app

ROOT = Path(__file__).resolve().parents[2]


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
    summary: Mapped[str | None]


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The provider a FastAPI app writes for its routes; tasks use it unchanged."""
    events: list[str] = request.app.state.events
    events.append("open")
    try:
        async with request.app.state.sessionmaker() as session:  # rolls back if not committed
            yield session
    except Exception as exc:
        events.append(f"error: {exc}")
        raise
    finally:
        events.append("close")


@asynccontextmanager
async def running(api: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Start and stop ``api`` through the ASGI lifespan protocol, as uvicorn does; yields
    the lifespan state a server copies into each request."""
    state: dict[str, Any] = {}
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    server = asyncio.create_task(api({**scope, "state": state}, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        await server  # raises the startup error
    try:
        yield state
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        await server
        assert stopped["type"] == "lifespan.shutdown.complete", stopped


def client(api: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api")


def notes_api(conveyor_app: Conveyor, db_path: Path) -> FastAPI:
    """An API whose own lifespan builds the database and a sessionmaker in app.state."""

    @asynccontextmanager
    async def database(api: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{db_path}")
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        api.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        api.state.events.append("startup")
        try:
            yield {"greeting": "hello from the lifespan state"}
        finally:
            api.state.events.append("shutdown")
            await engine.dispose()

    api = FastAPI(lifespan=lifespan(conveyor_app, database))
    api.state.events = []

    @conveyor_app.task
    async def summarise(note_id: int, db: AsyncSession = Depends(get_db_session)) -> str:
        note = await db.get(Note, note_id)
        assert note is not None
        note.summary = note.text.upper()
        await db.commit()
        return note.summary

    @api.post("/notes")
    async def create_note(
        text: str, db: Annotated[AsyncSession, Depends(get_db_session)]
    ) -> dict[str, Any]:
        note = Note(text=text)
        db.add(note)
        await db.commit()  # before enqueueing, so the worker finds the row
        handle = await summarise.kiq(note.id)
        return {"id": note.id, "task_id": handle.task_id}

    @api.get("/notes/{note_id}")
    async def read_note(note_id: int, db: AsyncSession = Depends(get_db_session)) -> dict[str, Any]:
        note = await db.get(Note, note_id)
        assert note is not None
        return {"text": note.text, "summary": note.summary}

    return api


async def count_notes(api: FastAPI) -> int:
    async with api.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Note)) or 0)


# -- lifespan -------------------------------------------------------------------------


async def test_lifespan_connects_at_startup_and_closes_at_shutdown() -> None:
    conveyor_app = fast_app()

    @conveyor_app.task
    async def ping() -> str:
        return "pong"

    api = FastAPI(lifespan=lifespan(conveyor_app))

    @api.post("/ping")
    async def enqueue_ping() -> dict[str, str]:
        return {"task_id": (await ping.kiq()).task_id}

    assert not conveyor_app.is_connected
    async with running(api), client(api) as http:
        assert conveyor_app.is_connected
        response = await http.post("/ping")
        assert response.status_code == 200
        state = await conveyor_app.handle(response.json()["task_id"]).status()
        assert state.status is TaskStatus.QUEUED
    assert not conveyor_app.is_connected


async def test_lifespan_runs_the_api_lifespan_inside_the_connection_and_passes_its_state() -> None:
    conveyor_app = fast_app()
    seen: list[tuple[str, bool]] = []

    @conveyor_app.task
    async def warm_up() -> None: ...

    @asynccontextmanager
    async def own(api: FastAPI) -> AsyncIterator[dict[str, str]]:
        seen.append(("startup", conveyor_app.is_connected))
        await warm_up.kiq()  # the API's own startup can enqueue
        yield {"region": "eu"}
        seen.append(("shutdown", conveyor_app.is_connected))

    api = FastAPI(lifespan=lifespan(conveyor_app, own))
    async with running(api) as state:
        assert state == {"region": "eu"}
        (depth,) = await conveyor_app.broker.queue_depths()
        assert depth.ready == 1
    assert seen == [("startup", True), ("shutdown", True)]
    assert not conveyor_app.is_connected


async def test_lifespan_inside_the_apis_own_lifespan() -> None:
    conveyor_app = fast_app()

    @asynccontextmanager
    async def own(api: FastAPI) -> AsyncIterator[None]:
        async with lifespan(conveyor_app)(api):
            yield

    async with running(FastAPI(lifespan=own)):
        assert conveyor_app.is_connected
    assert not conveyor_app.is_connected


async def test_lifespan_leaves_open_a_connection_it_did_not_open() -> None:
    conveyor_app = fast_app()
    async with conveyor_app:
        async with running(FastAPI(lifespan=lifespan(conveyor_app))):
            assert conveyor_app.is_connected
        assert conveyor_app.is_connected
    assert not conveyor_app.is_connected


# -- shared providers in the API process ----------------------------------------------


async def test_the_same_get_db_session_serves_a_route_and_a_task(tmp_path: Path) -> None:
    conveyor_app = fast_app()
    api = notes_api(conveyor_app, tmp_path / "notes.db")
    init(conveyor_app, api)
    async with running(api), conveyor_app.worker(concurrency=2), client(api) as http:
        created = (await http.post("/notes", params={"text": "buy milk"})).json()
        handle = conveyor_app.handle(created["task_id"])
        assert (await handle.get(timeout=5)) == "BUY MILK"
        note = (await http.get(f"/notes/{created['id']}")).json()
        assert note == {"text": "buy milk", "summary": "BUY MILK"}
        # the embedded worker did not run the API's lifespan a second time
        assert api.state.events.count("startup") == 1
        # route, task, route: three sessions, each closed. The route's closes after its
        # response is sent, so the task's may open first: count, not order.
        sessions = [e for e in api.state.events if e in ("open", "close")]
        assert sessions.count("open") == sessions.count("close") == 3
        assert sessions[-1] == "close"
    assert api.state.events[-1] == "shutdown"


async def test_a_failing_task_closes_and_rolls_back_its_session(tmp_path: Path) -> None:
    conveyor_app = fast_app()
    api = notes_api(conveyor_app, tmp_path / "notes.db")
    init(conveyor_app, api)

    @conveyor_app.task
    async def add_then_fail(
        text: str, db: Annotated[AsyncSession, Depends(get_db_session)]
    ) -> None:
        db.add(Note(text=text))
        await db.flush()
        raise ValueError("refused")

    async with running(api), conveyor_app.worker():
        api.state.events.clear()
        result = await (await add_then_fail.kiq("draft")).wait_result(timeout=5)
        assert result.is_err
        assert result.error is not None and "refused" in result.error.message
        assert api.state.events == ["open", "error: refused", "close"]
        assert await count_notes(api) == 0


async def test_a_task_gets_a_request_whose_app_is_the_api(tmp_path: Path) -> None:
    conveyor_app = fast_app()
    api = notes_api(conveyor_app, tmp_path / "notes.db")
    api.state.greeting = "set on app.state"
    init(conveyor_app, api)

    @conveyor_app.task
    async def inspect_request(
        request: Request, connection: HTTPConnection, label: str = "x"
    ) -> dict[str, Any]:
        return {
            "app_is_api": request.app is api,
            "same_object": request is connection,
            "app_state": request.app.state.greeting,
            "request_state": request.state.greeting,
            "label": label,
        }

    async with running(api), conveyor_app.worker():
        handle = await inspect_request.kiq(label="y")
        assert await handle.get(timeout=5) == {
            "app_is_api": True,
            "same_object": True,
            "app_state": "set on app.state",
            "request_state": "hello from the lifespan state",
            "label": "y",
        }
        # a direct call in the API process gets one too
        assert (await inspect_request())["app_is_api"] is True


# -- init() in a worker process -------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A two-module project laid out as users do: ``tasks`` calls init() with the path of
    ``main``, and ``main`` imports ``tasks`` (so only a lazy import can work)."""
    suffix = uuid.uuid4().hex[:8]
    tasks, main = f"proj_tasks_{suffix}", f"proj_main_{suffix}"
    (tmp_path / f"{tasks}.py").write_text(
        textwrap.dedent(f"""
        import os

        from starlette.requests import Request

        from conveyor.integrations.fastapi import init
        from tests.conftest import fast_app

        conveyor_app = fast_app(os.environ.get("PROJECT_BROKER_URL", "memory://"))
        init(conveyor_app, "{main}:api")


        @conveyor_app.task
        async def read_state(request: Request) -> list[str]:
            return [request.app.state.pool, request.state.tenant]


        @conveyor_app.task
        async def worker_pid() -> int:
            return os.getpid()
        """)
    )
    (tmp_path / f"{main}.py").write_text(
        textwrap.dedent(f"""
        import os
        from contextlib import asynccontextmanager

        from fastapi import FastAPI

        from conveyor.integrations.fastapi import lifespan
        from {tasks} import conveyor_app

        events = []


        def record(event):
            events.append(event)
            if "PROJECT_EVENTS" in os.environ:  # from a worker process
                with open(os.environ["PROJECT_EVENTS"], "a") as file:
                    file.write(f"{{event[0]}} {{os.getpid()}}\\n")


        @asynccontextmanager
        async def own(api):
            record(("startup", conveyor_app.is_connected))
            api.state.pool = "pool built by the lifespan"
            yield {{"tenant": "acme"}}
            record(("shutdown", conveyor_app.is_connected))


        api = FastAPI(lifespan=lifespan(conveyor_app, own))
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield suffix
    finally:
        sys.modules.pop(tasks, None)
        sys.modules.pop(main, None)


async def test_init_imports_the_api_at_worker_startup_and_runs_its_lifespan_while_it_runs(
    project: str,
) -> None:
    tasks = importlib.import_module(f"proj_tasks_{project}")
    main_name = f"proj_main_{project}"
    conveyor_app: Conveyor = tasks.conveyor_app
    assert main_name not in sys.modules  # not imported by init()

    async with conveyor_app:  # the worker process's connection, opened once
        async with conveyor_app.worker():
            main = sys.modules[main_name]
            assert main.events == [("startup", True)]
            handle = await tasks.read_state.kiq()
            assert await handle.get(timeout=5) == ["pool built by the lifespan", "acme"]
        assert main.events == [("startup", True), ("shutdown", True)]
        # the lifespan in the worker neither opened nor closed the worker's connection
        assert conveyor_app.is_connected

        # two workers in one process share one run of the lifespan
        async with conveyor_app.worker(), conveyor_app.worker():
            assert await (await tasks.read_state.kiq()).get(timeout=5) == [
                "pool built by the lifespan",
                "acme",
            ]
        assert [name for name, _ in main.events] == ["startup", "shutdown"] * 2


async def test_a_worker_that_connects_itself_is_not_closed_by_the_apis_lifespan(
    project: str,
) -> None:
    tasks = importlib.import_module(f"proj_tasks_{project}")
    conveyor_app: Conveyor = tasks.conveyor_app
    worker = conveyor_app.worker()
    await worker.start()  # as `conveyor worker` does: the worker opens the connection
    try:
        assert await (await tasks.read_state.kiq()).get(timeout=5) == [
            "pool built by the lifespan",
            "acme",
        ]
    finally:
        await worker.stop()
    assert sys.modules[f"proj_main_{project}"].events == [("startup", True), ("shutdown", True)]
    assert not conveyor_app.is_connected  # closed by the worker that opened it


async def test_init_with_a_bad_path_stops_the_worker_from_starting() -> None:
    conveyor_app = fast_app()
    init(conveyor_app, "json:__name__")
    async with conveyor_app:
        with pytest.raises(ConfigurationError, match="is a str, not a FastAPI app"):
            await conveyor_app.worker().start()

    other = fast_app()
    init(other, "no_such_module_for_conveyor:api")
    async with other:
        with pytest.raises(ConfigurationError, match="cannot import 'no_such_module_for_conveyor'"):
            await other.worker().start()
    with pytest.raises(ConfigurationError, match="already bound"):
        init(other, "pkg.main:api")


# -- overrides and errors -------------------------------------------------------------


async def test_dependency_overrides_replace_a_route_provider_in_tasks(tmp_path: Path) -> None:
    conveyor_app = fast_app()
    api = notes_api(conveyor_app, tmp_path / "notes.db")
    init(conveyor_app, api)

    class FakeSession:
        async def get(self, model: type[Note], note_id: int) -> Note:
            return Note(id=note_id, text="from the fake session")

    @conveyor_app.task
    async def note_text(note_id: int, db: AsyncSession = Depends(get_db_session)) -> str:
        note = await db.get(Note, note_id)
        assert note is not None
        return note.text

    conveyor_app.dependency_overrides[get_db_session] = FakeSession
    conveyor_app.dependency_overrides[Request] = lambda: "not a request"

    @conveyor_app.task
    async def which_request(request: Request) -> str:
        return str(request)

    async with running(api), conveyor_app.worker(), client(api) as http:
        assert await (await note_text.kiq(7)).get(timeout=5) == "from the fake session"
        assert await (await which_request.kiq()).get(timeout=5) == "not a request"
        # routes keep the real provider: the Conveyor app's overrides are for tasks
        created = (await http.post("/notes", params={"text": "real"})).json()
        assert (await http.get(f"/notes/{created['id']}")).json()["text"] == "real"
    assert await note_text(1) == "from the fake session"  # direct calls too


async def test_a_request_without_a_bound_api_is_a_named_error() -> None:
    conveyor_app = fast_app()

    @conveyor_app.task
    async def needs_request(request: Request) -> str:
        return request.url.path

    with pytest.raises(RuntimeError, match=r"request: a Request is injected only .*init\(\)"):
        await needs_request()
    async with conveyor_app, conveyor_app.worker():
        result = await (await needs_request.kiq()).wait_result(timeout=5)
        assert result.error is not None and "init()" in result.error.message

    init(conveyor_app, "pkg.main:api")  # bound, but no worker has loaded the API yet
    with pytest.raises(ConveyorError, match="before its FastAPI app was loaded"):
        await needs_request()


@pytest.mark.slow
async def test_conveyor_worker_process_runs_the_apis_lifespan_and_its_tasks_read_app_state(
    project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    events = tmp_path / "events.txt"
    monkeypatch.setenv("PROJECT_BROKER_URL", url)
    tasks = importlib.import_module(f"proj_tasks_{project}")
    env = {
        **os.environ,
        "PROJECT_EVENTS": str(events),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    worker = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "conveyor.cli", "worker", f"proj_tasks_{project}:conveyor_app"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        async with tasks.conveyor_app:
            state = await (await tasks.read_state.kiq()).get(timeout=20)
            pid = await (await tasks.worker_pid.kiq()).get(timeout=5)
        assert state == ["pool built by the lifespan", "acme"]
        assert pid != os.getpid()  # a child of the `conveyor worker` supervisor
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 20) == 0
    finally:
        if worker.returncode is None:
            os.killpg(worker.pid, signal.SIGKILL)
            await worker.wait()
    assert events.read_text().split("\n") == [f"startup {pid}", f"shutdown {pid}", ""]
