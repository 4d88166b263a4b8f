"""examples/fastapi_app end to end, as its README runs it: ``python -m app`` (uvicorn, and
a real ``conveyor worker --with-scheduler``), driven over HTTP with httpx, on the embedded
SQLite broker and on Redis.

The test process also imports the example's ``app.tasks`` on the same broker, to read
the schedules, see the scheduler's heartbeat and fire the hourly cleanup now.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import os
import signal
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest

from tests.brokers.conftest import REDIS_URL, _cleanup, service_unavailable
from tests.conftest import eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_app"
TERMINAL = {"succeeded", "failed", "dead", "aborted"}
T = TypeVar("T")


@dataclass
class Example:
    http: httpx.AsyncClient
    process: asyncio.subprocess.Process
    tasks: ModuleType  # the example's app.tasks, imported in this process
    database: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _broker_url(scheme: str, tmp_path: Path) -> str:
    if scheme == "sqlite":
        return f"sqlite:///{tmp_path / 'conveyor.db'}"
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"redis at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"


def _forget_example_modules() -> None:
    for name in [n for n in sys.modules if n == "app" or n.startswith("app.")]:
        del sys.modules[name]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.service("redis"))])
async def example(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Example]:
    url = _broker_url(request.param, tmp_path)
    database = tmp_path / "app.db"
    for name, value in {
        "CONVEYOR_BROKER_URL": url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CONVEYOR_GRACE": "2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
    }.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    log = tmp_path / "example.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "app", "--port", str(port)],
            cwd=EXAMPLE,
            env=dict(os.environ),
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: the API, the worker, the scheduler
        )
    _forget_example_modules()
    monkeypatch.syspath_prepend(str(EXAMPLE))
    try:
        tasks = importlib.import_module("app.tasks")
        async with (
            tasks.conveyor_app,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http,
        ):
            found = Example(http, process, tasks, database, log)
            await _wait_until_serving(found)
            await _wait_for_worker_and_scheduler(found)
            yield found
    finally:
        _forget_example_modules()
        with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        await _cleanup(url)


async def _wait_until_serving(example: Example) -> None:
    async def serving() -> bool:
        assert example.process.returncode is None, "python -m app exited"
        try:
            return (await example.http.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    await _eventually(example, serving, timeout=10, what="the API to serve")


async def _wait_for_worker_and_scheduler(example: Example) -> None:
    """Until the worker and the scheduler (`--with-scheduler`) heartbeat on the broker."""

    async def both_beat() -> bool:
        assert example.process.returncode is None, "python -m app exited"
        roles = {w.role for w in await example.tasks.conveyor_app.broker.workers()}
        return roles == {"worker", "scheduler"}

    await _eventually(example, both_beat, timeout=10, what="a worker and a scheduler")


async def _poll(example: Example, task_id: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """GET /tasks/{task_id} every 50 ms until the task ends; every answer goes to ``seen``."""

    async def ended() -> dict[str, Any] | None:
        response = await example.http.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        seen.append(response.json())
        return seen[-1] if seen[-1]["status"] in TERMINAL else None

    return await _eventually(example, ended, timeout=15, what=f"task {task_id} to end")


async def _eventually(
    example: Example, check: Callable[[], Awaitable[T | None]], timeout: float, what: str
) -> T:
    """:func:`eventually`, polling every 50 ms; a failure shows the example's output."""
    try:
        return await eventually(check, timeout=timeout, what=what, every=0.05)  # type: ignore[return-value]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{example.output()}") from None


def _rows(database: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(query, params).fetchall()


def _sqlite_time(moment: datetime) -> str:
    """How SQLAlchemy stores a DateTime in SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


async def test_the_example_app_runs_its_tasks_in_a_worker_and_reports_them_over_http(
    example: Example,
) -> None:
    http = example.http
    created = await http.post("/users", json={"email": "ada@example.com", "name": "Ada"})
    assert created.status_code == 201, created.text
    user = created.json()
    assert (
        await http.post("/users", json={"email": "ada@example.com", "name": "A"})
    ).status_code == 409
    assert (await http.post("/users/999/welcome-email")).status_code == 404

    text = "the quick brown fox jumps over the lazy dog"
    email = await http.post(f"/users/{user['id']}/welcome-email")
    embedding = await http.post("/embeddings", json={"text": text})
    report = await http.post("/reports", json={"title": "Q3 sales"})
    for response in (email, embedding, report):
        assert response.status_code == 202, response.text

    seen: dict[str, list[dict[str, Any]]] = {"email": [], "embedding": [], "report": []}
    email_done, embedding_done, report_done = await asyncio.gather(
        _poll(example, email.json()["task_id"], seen["email"]),
        _poll(example, embedding.json()["task_id"], seen["embedding"]),
        _poll(example, report.json()["task_id"], seen["report"]),
    )

    # send_email: the user loaded and the email recorded through the DB session dependency
    assert email_done["status"] == "succeeded", email_done
    sent = _rows(example.database, "SELECT id, user_id, to_address, subject FROM sent_emails")
    assert sent == [(email_done["result"], user["id"], "ada@example.com", "Welcome, Ada!")]

    # generate_embedding: the worker's vector is the function's, a unit vector
    assert embedding_done["status"] == "succeeded", embedding_done
    vector = embedding_done["result"]
    assert vector == example.tasks.generate_embedding.fn(text)
    assert len(vector) == example.tasks.EMBEDDING_DIMENSIONS
    assert math.isclose(math.fsum(v * v for v in vector), 1.0)

    # process_report: progress was visible while it ran, step by step, then the result
    assert report_done["status"] == "succeeded", report_done
    report_id = report.json()["report_id"]
    assert report_done["result"] == {"report_id": report_id, "summary": "Q3 sales: 4 sections"}
    progress = [
        (s["status"], s["progress"], s["progress_message"])
        for s in seen["report"]
        if s["progress"] is not None
    ]
    steps = dict(zip(example.tasks.REPORT_STEPS, (0.0, 0.25, 0.5, 0.75), strict=True))
    assert all(
        status == "running" and steps.get(message) == fraction
        for status, fraction, message in progress
    ), progress
    assert len({message for _, _, message in progress}) >= 2, seen["report"]  # 0.5 s a step
    assert [f for _, f, _ in progress] == sorted(f for _, f, _ in progress)
    ((summary, finished),) = _rows(
        example.database, "SELECT summary, finished_at FROM reports WHERE id = ?", report_id
    )
    assert summary == "Q3 sales: 4 sections" and finished is not None

    missing = await http.get(f"/tasks/{uuid.uuid4().hex}")
    assert missing.status_code == 404, missing.text


async def test_the_hourly_cleanup_is_scheduled_and_deletes_expired_rows(example: Example) -> None:
    conveyor_app = example.tasks.conveyor_app
    (info,) = [i for i in await conveyor_app.schedules.list() if i.schedule.id == "cleanup-expired"]
    assert info.schedule.task == "app.tasks:cleanup_expired"
    assert info.schedule.describe().startswith("cron 0 * * * *")
    now = datetime.now(UTC)
    assert info.next_run is not None
    assert (info.next_run.minute, info.next_run.second, info.next_run.microsecond) == (0, 0, 0)
    assert now < info.next_run <= now + timedelta(hours=1)

    # rows on both sides of the 30-day retention; then the tick the cron fires each hour
    created = await example.http.post("/users", json={"email": "bo@example.com", "name": "Bo"})
    user_id = created.json()["id"]
    old, recent = _sqlite_time(now - timedelta(days=31)), _sqlite_time(now - timedelta(days=29))
    with sqlite3.connect(example.database) as connection:
        connection.executemany(
            "INSERT INTO sent_emails (user_id, to_address, subject, sent_at) VALUES (?, ?, ?, ?)",
            [(user_id, "bo@example.com", "old", old), (user_id, "bo@example.com", "new", recent)],
        )
        connection.executemany(
            "INSERT INTO reports (title, created_at, finished_at) VALUES (?, ?, ?)",
            [("old", old, old), ("new", recent, recent), ("unfinished", old, None)],
        )
    handle = await conveyor_app.schedules.run_now("cleanup-expired")
    done = await _poll(example, handle.task_id, [])
    assert done["status"] == "succeeded", done
    assert done["result"] == 2
    assert _rows(example.database, "SELECT subject FROM sent_emails") == [("new",)]
    assert _rows(example.database, "SELECT title FROM reports ORDER BY id") == [
        ("new",),
        ("unfinished",),
    ]


async def test_sigterm_stops_the_api_and_the_worker_and_leaves_no_process(
    example: Example,
) -> None:
    example.process.send_signal(signal.SIGTERM)  # to `python -m app` alone, as systemd would
    assert await asyncio.wait_for(example.process.wait(), 15) == 0, example.output()
    with pytest.raises(ProcessLookupError):
        os.killpg(example.process.pid, 0)  # the worker and the scheduler are gone too
    assert "stopped after" in example.output()  # the worker's own graceful stop
