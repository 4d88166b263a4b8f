"""`conveyor abort` against a real `conveyor worker` process, on SQLite and Redis: a long
task is cancelled in its worker, and the worker keeps taking work afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import BrokerUnavailable, Conveyor, TaskState, TaskStatus
from tests.brokers.conftest import REDIS_URL, _cleanup, service_unavailable
from tests.conftest import CHECKOUT_PATH, eventually, nothing_pending
from tests.integration.processes import run_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.abort_app:app"


@pytest.fixture(params=["sqlite", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'abort.db'}"
    else:
        url = f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    yield {
        **os.environ,
        "CONVEYOR_BROKER_URL": url,
        "CONVEYOR_LEASE": "2.0",
        "CONVEYOR_REAP_INTERVAL": "0.2",
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
        # marks are checked only by signal here: the periodic check is far off
        "CONVEYOR_ABORT_CHECK_INTERVAL": "60",
        "CONVEYOR_GRACE": "2",
        "PYTHONPATH": CHECKOUT_PATH,
    }
    asyncio.run(_cleanup(url))


def test_conveyor_abort_cancels_a_long_task_and_the_worker_keeps_working(
    env: dict[str, str], tmp_path: Path
) -> None:
    from tests.integration import abort_app

    client = Conveyor(env["CONVEYOR_BROKER_URL"], environ=env)
    long_task = client.register(abort_app.long_task.fn, abort_app.long_task.options)
    double = client.register(abort_app.double.fn, abort_app.double.options)
    marks = tmp_path / "marks"
    marks.mkdir()

    async def until_running(task_id: str) -> tuple[float | None, str | None]:
        async def with_progress() -> TaskState | None:
            state = await client.handle(task_id).status()
            running = state.status is TaskStatus.RUNNING and state.progress is not None
            return state if running else None

        async with client:
            state = await eventually(with_progress, timeout=15, what="the task with progress")
        return state.progress, state.progress_message

    async def enqueue_long() -> tuple[str, str]:
        async with client:
            running = await long_task.kiq(str(marks))
            delayed = await long_task.with_options(delay=120).kiq(str(marks))
            return running.task_id, delayed.task_id

    async def wait_result(task_id: str) -> TaskStatus:
        async with client:
            return (await client.handle(task_id).wait_result(timeout=10)).status

    async def retries_pending() -> bool:
        async with client:
            return not await nothing_pending(client)

    async def doubles() -> list[int]:
        async with client:
            handles = [await double.kiq(n) for n in range(10)]
            return [await h.get(timeout=20) for h in handles]

    try:
        running, delayed = asyncio.run(enqueue_long())
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "worker", APP, "--concurrency", "4"],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        # progress written in the worker process is read here, from another process
        assert asyncio.run(until_running(running)) == (0.5, "half")

        aborted = run_cli(env, "abort", APP, running)
        assert aborted.returncode == 0, aborted.stderr
        assert f"{running}: signalled" in aborted.stdout
        # within 10 s: by the signal, as the worker's periodic check is 60 s away
        assert asyncio.run(wait_result(running)) is TaskStatus.ABORTED
        assert (marks / "cancelled").exists()
        assert not (marks / "finished").exists()

        dequeued = run_cli(env, "abort", APP, delayed)
        assert f"{delayed}: dequeued" in dequeued.stdout
        assert asyncio.run(wait_result(delayed)) is TaskStatus.ABORTED

        # the worker is still up and takes new work
        assert asyncio.run(doubles()) == [n * 2 for n in range(10)]
        assert worker.poll() is None

        again = run_cli(env, "abort", APP, running)
        assert again.returncode == 0 and f"{running}: finished" in again.stdout
        unknown = run_cli(env, "abort", APP, "no-such-task")
        assert unknown.returncode == 1 and "no-such-task: unknown" in unknown.stdout
        assert not asyncio.run(retries_pending()), "a retry is waiting, delayed or running"
        assert sorted(p.name for p in marks.iterdir()) == ["cancelled", "started-1"]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            raise
    assert code == 0
