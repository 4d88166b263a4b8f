"""``@app.task(runner="process")``: a sync task in the worker's process pool, with its
arguments and results through the wire codec, killed on timeout or abort (real
processes, the memory broker)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, ProcessDied, TaskStatus, TaskTimeout
from conveyor.task import Task
from conveyor.worker.runners import ProcessRunner
from tests.conftest import eventually, fast_app
from tests.integration import process_app

pytestmark = pytest.mark.slow


@pytest.fixture
async def app() -> AsyncIterator[Conveyor]:
    conveyor = fast_app(process_pool_size=2)
    async with conveyor:
        yield conveyor


def on(app: Conveyor, task: Task[Any, Any], **options: Any) -> Task[Any, Any]:
    """``task`` of process_app, registered on ``app`` (the pool processes still find it
    in process_app by its module and name)."""
    return app.register(task.fn, dataclasses.replace(task.options, **options))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


async def test_a_process_task_runs_in_a_pool_process_with_converted_arguments(
    app: Conveyor,
) -> None:
    describe = on(app, process_app.describe)
    async with app.worker(concurrency=4):
        first = await (await describe.kiq(process_app.Point(1, 2))).get(timeout=30)
        again = await (await describe.kiq(process_app.Point(3, 4))).get(timeout=30)
    assert first["pid"] != os.getpid(), "it ran in another process"
    assert first["type"] == "Point", "its annotation converted the argument there"
    assert (first["sum"], again["sum"]) == (3, 7)
    assert again["pid"] == first["pid"], "the pool keeps its processes"


async def test_process_tasks_run_at_once_in_as_many_processes_as_the_pool_has(
    app: Conveyor, tmp_path: Path
) -> None:
    rendezvous = on(app, process_app.rendezvous)
    async with app.worker(concurrency=4):
        handles = [await rendezvous.kiq(str(tmp_path), 2) for _ in range(2)]
        pids = [await handle.get(timeout=30) for handle in handles]
    assert -1 not in pids, "both ran at once: the GIL does not serialize them"
    assert len(set(pids)) == 2


async def test_a_timeout_kills_the_process_and_the_pool_starts_another(
    app: Conveyor, tmp_path: Path
) -> None:
    spin = on(app, process_app.spin, timeout=0.5)
    describe = on(app, process_app.describe)
    pid_file = tmp_path / "pid"
    async with app.worker(concurrency=2):
        result = await (await spin.kiq(str(pid_file))).wait_result(timeout=30)
        after = await (await describe.kiq(process_app.Point(0, 0))).get(timeout=30)
        assert result.status is TaskStatus.FAILED
        assert result.error is not None and result.error.type == "conveyor.TaskTimeout"
        assert "exceeded its timeout of 0.5 s" in result.error.message
        killed = int(pid_file.read_text())
        await eventually(lambda: not _alive(killed), what="the timed-out process to be killed")
    assert after["pid"] != killed
    assert TaskTimeout.__module__ == "conveyor"


async def test_an_abort_kills_a_running_process_task(app: Conveyor, tmp_path: Path) -> None:
    spin = on(app, process_app.spin)
    pid_file = tmp_path / "pid"
    async with app.worker(concurrency=2):
        handle = await spin.kiq(str(pid_file))
        await eventually(pid_file.exists, timeout=30, what="the task to start")
        await handle.abort()
        result = await handle.wait_result(timeout=30)
        assert result.status is TaskStatus.ABORTED
        pid = int(pid_file.read_text())
        await eventually(lambda: not _alive(pid), what="the aborted task's process to die")


async def test_an_exception_keeps_its_class_so_retry_on_sees_it(
    app: Conveyor, tmp_path: Path
) -> None:
    flaky = on(app, process_app.flaky)
    picky = on(app, process_app.picky)
    async with app.worker(concurrency=2):
        retried = await (await flaky.kiq(str(tmp_path / "marker"))).wait_result(timeout=30)
        rebuilt = await (await picky.kiq()).wait_result(timeout=30)
    assert retried.status is TaskStatus.SUCCEEDED
    assert (retried.return_value, retried.attempts) == ("second attempt", 2)
    # an exception that cannot be rebuilt in the worker still says what it was, and where
    assert rebuilt.error is not None
    assert rebuilt.error.type == "RuntimeError"
    assert rebuilt.error.message == "tests.integration.process_app.Picky: 1/2"
    assert 'process_app.py", line' in rebuilt.error.traceback


async def test_a_process_that_dies_fails_its_task_and_is_replaced(app: Conveyor) -> None:
    exits = on(app, process_app.exits)
    describe = on(app, process_app.describe)
    async with app.worker(concurrency=2):
        result = await (await exits.kiq()).wait_result(timeout=30)
        after = await (await describe.kiq(process_app.Point(1, 1))).get(timeout=30)
    assert result.error is not None
    assert result.error.type == "conveyor.ProcessDied"
    assert "ended while running it, with exit code 3" in result.error.message
    assert after["sum"] == 2
    assert ProcessDied.__module__ == "conveyor"


async def test_a_value_the_wire_codec_cannot_carry_is_a_clear_error(app: Conveyor) -> None:
    returns_an_object = on(app, process_app.returns_an_object)
    async with app.worker(concurrency=2):
        result = await (await returns_an_object.kiq()).wait_result(timeout=30)
    assert result.error is not None and result.error.type == "TypeError"
    assert result.error.message.startswith("result not serializable: ")
    runner = ProcessRunner(1)
    with pytest.raises(TypeError, match="its arguments cannot be sent to its process"):
        await runner(process_app.describe, [object()], {})
    await runner.aclose()


async def test_stopping_the_worker_ends_its_pool_processes(app: Conveyor) -> None:
    describe = on(app, process_app.describe)
    async with app.worker(concurrency=2):
        pid = (await (await describe.kiq(process_app.Point(1, 1))).get(timeout=30))["pid"]
        assert _alive(pid)
    await eventually(lambda: not _alive(pid), what="the pool process to end with its worker")
