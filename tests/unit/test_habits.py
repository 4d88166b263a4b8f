"""What users of Celery, Dramatiq and taskiq reach for first does what they expect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, Depends, SyncTask, Task, TaskStatus
from tests.conftest import fast_app


def _app() -> Conveyor:
    return fast_app()


@pytest.mark.parametrize("name", ["delay", "apply_async", "send", "send_with_options"])
def test_another_queues_enqueue_method_names_kiq(name: str) -> None:
    app = _app()

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(AttributeError, match=r"has no \w+\(\) .*task\.kiq\(\.\.\.\).*kiq_sync"):
        getattr(add, name)(1, 2)


def test_an_unknown_attribute_is_still_a_plain_attribute_error() -> None:
    app = _app()

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        add.nonsense  # noqa: B018
    assert not hasattr(add, "nonsense")


def test_a_sync_task_called_directly_from_sync_code_just_runs() -> None:
    app = _app()

    @app.task
    def resize(path: str, width: int = 100) -> str:
        return f"{path}@{width}"

    assert isinstance(resize, SyncTask)
    assert resize("a.png", width=10) == "a.png@10"


def test_a_sync_task_with_dependencies_resolves_them_when_called_directly() -> None:
    app = _app()
    closed: list[str] = []

    async def connection() -> object:
        return "conn"

    def session(conn: object = Depends(connection)) -> Iterator[str]:
        yield f"session on {conn}"
        closed.append("session")

    @app.task
    def report(n: int, db: str = Depends(session)) -> str:
        return f"{n} via {db}"

    assert report(3) == "3 via session on conn"
    assert closed == ["session"]


async def test_a_sync_task_called_directly_from_async_code_runs_too() -> None:
    app = _app()

    async def name() -> str:
        return "from a dependency"

    @app.task
    def plain(x: int) -> int:
        return x * 2

    @app.task
    def injected(who: str = Depends(name)) -> str:
        assert threading.current_thread() is not threading.main_thread()
        return who

    assert plain(21) == 42
    assert injected() == "from a dependency"


async def test_an_async_task_called_directly_is_awaited() -> None:
    app = _app()

    @app.task
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)  # sleep(0): not a wait; the body really suspends once
        return a + b

    assert isinstance(add, Task)
    assert not isinstance(add, SyncTask)
    assert await add(1, 2) == 3


async def test_status_and_result_can_be_read_from_sync_code(app: Conveyor) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    handle = add.kiq_sync(1, 2)
    state = await asyncio.to_thread(handle.status_sync)
    assert state.status is TaskStatus.QUEUED
    async with app.worker():
        await handle.get(timeout=5)
    state = await asyncio.to_thread(handle.status_sync)
    assert state.status is TaskStatus.SUCCEEDED
    assert (await asyncio.to_thread(handle.result_sync)).return_value == 3


SCRIPT = """
from conveyor import Conveyor
app = Conveyor("memory://")

@app.task
async def resize(path: str) -> str:
    return path

print(resize.name)
"""


def test_a_task_declared_in_a_script_is_named_after_the_module_a_worker_imports(
    tmp_path: Path,
) -> None:
    """`python tasks.py` runs it as __main__; a worker imports it as `tasks`, so the
    task must be `tasks:resize` (or a worker dead-letters it as unknown)."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "__init__.py").write_text("")
    (tmp_path / "tasks.py").write_text(SCRIPT)
    (tmp_path / "jobs" / "media.py").write_text(SCRIPT)

    def name(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert name("tasks.py") == "tasks:resize"
    assert name("-m", "jobs.media") == "jobs.media:resize"
    assert name("jobs/media.py") == "jobs.media:resize"
