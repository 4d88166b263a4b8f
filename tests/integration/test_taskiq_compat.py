"""conveyor.compat.taskiq: a taskiq application (tests/integration/taskiq_app.py, only its
imports changed) runs on Conveyor.

In-process on ``InMemoryBroker`` (``ENVIRONMENT=pytest``, as taskiq's testing guide
does), then on ``RedisStreamBroker`` + ``RedisAsyncResultBackend`` against a real Redis
with real ``conveyor worker module:broker`` and ``conveyor scheduler module:scheduler``
processes. Each Redis test has its own key prefix and deletes its keys.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor import Conveyor, TaskFailed
from conveyor.compat.taskiq import (
    AsyncTaskiqTask,
    InMemoryBroker,
    ResultGetError,
    TaskiqMiddleware,
    TaskiqResultTimeoutError,
)
from tests.brokers.conftest import REDIS_URL, service_unavailable
from tests.conftest import CHECKOUT_PATH, eventually
from tests.docs.programs import Program, run

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.integration.taskiq_app"
FAST = {
    "CONVEYOR_FETCH_WAIT": "0.1",
    "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
    "CONVEYOR_REAP_INTERVAL": "0.2",
    "CONVEYOR_GRACE": "2",
    "CONVEYOR_SCHEDULE_REFRESH": "0.2",
    "CONVEYOR_SCHEDULE_GRACE": "5",
}


def fresh_module() -> ModuleType:
    """Import the app module anew, so it reads the environment this test set."""
    sys.modules.pop(MODULE, None)
    return importlib.import_module(MODULE)


# -- InMemoryBroker: everything in this process ------------------------------------------


@pytest.fixture
async def memory_app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModuleType]:
    monkeypatch.setenv("ENVIRONMENT", "pytest")
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    module = fresh_module()
    assert isinstance(module.broker, InMemoryBroker)
    await module.broker.startup()
    try:
        yield module
    finally:
        await module.broker.shutdown()
        sys.modules.pop(MODULE, None)


async def test_inmemory_broker_runs_kicked_tasks_in_process(memory_app: ModuleType) -> None:
    broker = memory_app.broker
    assert isinstance(broker.conveyor, Conveyor)
    assert broker.state.greeting == "hello from WORKER_STARTUP"
    assert broker.state.client_started is True
    assert broker.is_worker_process is False  # as in taskiq: InMemoryBroker stays a client

    task = await memory_app.add.kiq(1, 2)
    assert isinstance(task, AsyncTaskiqTask)
    result = await task.wait_result(timeout=5)
    assert not result.is_err
    assert result.return_value == 3
    assert result.raise_for_error() is result
    assert result.execution_time >= 0
    assert await task.is_ready()
    assert (await task.get_result()).return_value == 3
    assert await broker.result_backend.is_result_ready(task.task_id)
    assert (await broker.result_backend.get_result(task.task_id)).return_value == 3
    assert await memory_app.add(2, 2) == 4  # a task is still a callable


async def test_retry_on_error_runs_max_retries_times_in_total(memory_app: ModuleType) -> None:
    flaky = await (await memory_app.flaky.kiq()).wait_result(timeout=5)
    assert flaky.return_value == 3, "runs 1 and 2 fail, run 3 (the max_retries-th) succeeds"
    assert flaky.attempts == 3

    failed = await (await memory_app.always_fails.kiq("no stock")).wait_result(timeout=5)
    assert failed.is_err
    assert failed.attempts == 2, "max_retries=2: two runs in total, as taskiq counts them"
    assert failed.error is not None
    assert failed.error.type == "ValueError"
    assert str(failed.error) == "ValueError: no stock"
    assert "raise ValueError(reason)" in failed.error.traceback
    with pytest.raises(TaskFailed, match="ValueError: no stock"):
        failed.raise_for_error()


async def test_timeout_label_stops_the_task(memory_app: ModuleType) -> None:
    result = await (await memory_app.too_slow.kiq()).wait_result(timeout=5)
    assert result.is_err
    assert result.error is not None
    assert result.error.type.endswith("TaskTimeout")


async def test_context_and_state_are_injected(memory_app: ModuleType) -> None:
    kicker = memory_app.describe.kicker().with_labels(tenant="acme", urgent=True)
    task = await kicker.with_task_id("order-42").kiq(7)
    seen = (await task.wait_result(timeout=5)).return_value
    assert task.task_id == "order-42"
    assert seen["task_id"] == "order-42"
    assert seen["task_name"] == memory_app.describe.task_name == f"{MODULE}:describe"
    assert seen["labels"] == {"team": "billing", "tenant": "acme", "urgent": "true"}
    assert seen["args"] == [7]
    assert seen["kwargs"] == {}
    assert seen["greeting"] == "hello from WORKER_STARTUP"
    assert seen["same_state"] and seen["same_broker"]


async def test_delay_label_delays_the_run(memory_app: ModuleType) -> None:
    started = time.monotonic()
    task = await memory_app.add.kicker().with_labels(delay=0.5).kiq(2, 3)
    assert not await task.is_ready()
    with pytest.raises(ResultGetError):
        await task.get_result()
    with pytest.raises(TaskiqResultTimeoutError):
        await task.wait_result(timeout=0.1)
    assert (await task.wait_result(timeout=5)).return_value == 5
    assert time.monotonic() - started >= 0.45


async def test_kiq_before_startup_runs_the_task_without_the_event_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """taskiq's testing guide: an InMemoryBroker runs kicked tasks without startup(), and
    runs none of its event handlers for it."""
    monkeypatch.setenv("ENVIRONMENT", "pytest")
    module = fresh_module()
    try:
        result = await (await module.add.kiq(1, 2)).wait_result(timeout=5)
        assert result.return_value == 3
        assert "greeting" not in module.broker.state, "WORKER_STARTUP ran without startup()"
        assert "client_started" not in module.broker.state
    finally:
        sys.modules.pop(MODULE, None)  # no shutdown(): the worker ends with the test's loop


def test_custom_middlewares_are_taken_and_given_the_broker() -> None:
    class Metrics(TaskiqMiddleware):
        pass

    metrics = Metrics()
    broker = InMemoryBroker().with_middlewares(metrics)
    assert broker.middlewares == [metrics]
    assert metrics.broker is broker


def test_broker_and_scheduler_are_accepted_where_an_app_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conveyor.cli import import_app

    monkeypatch.setenv("ENVIRONMENT", "pytest")
    sys.modules.pop(MODULE, None)
    try:
        broker_app = import_app(f"{MODULE}:broker")
        scheduler_app = import_app(f"{MODULE}:scheduler")
        module = sys.modules[MODULE]
        assert broker_app is scheduler_app is module.broker.conveyor
        assert f"{MODULE}:heartbeat" in broker_app.tasks
        assert [s.task for s in broker_app.schedules.in_code()] == [f"{MODULE}:heartbeat"]
    finally:
        sys.modules.pop(MODULE, None)


# -- RedisStreamBroker: real worker and scheduler processes -------------------------------

Start = Callable[..., subprocess.Popen[bytes]]


def _redis_or_skip() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"redis at {REDIS_URL} unavailable: {exc}")
    finally:
        client.close()


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The app's settings for this test: a fresh key prefix for Conveyor and the tasks'
    data; every key under it is deleted afterwards."""
    _redis_or_skip()
    prefix = f"test-taskiq-{uuid.uuid4().hex[:10]}"
    settings = {
        "REDIS_URL": f"{REDIS_URL}?prefix={prefix}",
        "DATA_REDIS_URL": REDIS_URL,
        "DATA_PREFIX": prefix,
        **FAST,
    }
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    yield {**os.environ, **settings, "PYTHONPATH": CHECKOUT_PATH}
    sys.modules.pop(MODULE, None)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{prefix}*", f"{{{prefix}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def start(redis_env: dict[str, str], tmp_path: Path) -> Iterator[Start]:
    """Start ``conveyor <args>`` in its own process group, logging to tmp_path."""
    started: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{args[0]}-{len(started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor.cli", *args],
                env=redis_env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


async def _data(module: ModuleType, key: str) -> list[str]:
    from redis.asyncio import Redis

    client = Redis.from_url(module.DATA_REDIS_URL)
    try:
        return [v.decode() for v in await client.lrange(f"{module.DATA_PREFIX}:{key}", 0, -1)]
    finally:
        await client.aclose()


async def _until(check: Callable[[], Any], timeout: float, what: str) -> None:
    await eventually(check, timeout=timeout, what=what, every=0.1)


@pytest.mark.slow
@pytest.mark.service("redis")
async def test_redis_stream_broker_runs_tasks_in_a_conveyor_worker_process(
    start: Start,
) -> None:
    module = fresh_module()
    broker = module.broker
    worker = start(
        "worker",
        f"{MODULE}:broker",
        "--workers",
        "1",
        "--max-async-tasks",
        "8",
        "--shutdown-timeout",
        "2",
    )
    await broker.startup()
    try:
        assert broker.state.client_started is True
        add = await (await module.add.kiq(20, 22)).wait_result(timeout=20)
        assert add.return_value == 42
        flaky = await (await module.flaky.kiq()).wait_result(timeout=10)
        assert flaky.return_value == 3
        failed = await (await module.always_fails.kiq("out of stock")).wait_result(timeout=10)
        assert failed.is_err and failed.attempts == 2
        assert str(failed.error) == "ValueError: out of stock"

        task = await module.describe.kicker().with_labels(tenant="acme").kiq(number=1)
        seen = (await task.wait_result(timeout=10)).return_value
        assert seen["greeting"] == "hello from WORKER_STARTUP"  # the worker's own state
        assert seen["labels"] == {"team": "billing", "tenant": "acme"}
        assert seen["kwargs"] == {"number": 1}
        assert seen["same_state"] and seen["same_broker"]
        stored = await broker.result_backend.get_result(task.task_id)
        assert stored.return_value == seen
    finally:
        await broker.shutdown()
    _stop(worker)


@pytest.mark.slow
@pytest.mark.service("redis")
async def test_schedule_labels_and_schedule_by_cron_fire_from_a_scheduler_process(
    start: Start,
) -> None:
    module = fresh_module()
    worker = start("worker", f"{MODULE}:broker", "--workers", "1")
    scheduler = start("scheduler", f"{MODULE}:scheduler")
    await module.scheduler.startup()
    try:
        # the label schedule {"cron": "* * * * * *"}: every second, seconds first
        await _until(lambda: _beats_at_least(module, 2), 15, "two label-scheduled runs")

        created = await module.record.schedule_by_cron(
            module.redis_source, "* * * * * *", "dynamic"
        )
        assert [s.schedule_id for s in await module.redis_source.get_schedules()] == [
            created.schedule_id
        ]
        await _until(lambda: _records_at_least(module, 2), 15, "two runs of schedule_by_cron")
        await created.unschedule()
        assert await module.redis_source.get_schedules() == []
        # the label schedule fires on the same seconds as the removed one did: the
        # scheduler's own beats time the check. Two beats on, it has re-read its schedules
        # (every 0.2 s) and run what was due; two more, and the removed one would have fired
        beats = (await _data(module, "beats")).count("label")
        await _until(lambda: _beats_at_least(module, beats + 2), 15, "two more beats")
        settled = len(await _data(module, "records"))
        await _until(lambda: _beats_at_least(module, beats + 4), 15, "two beats after that")
        assert len(await _data(module, "records")) == settled, "it fired after unschedule()"
    finally:
        await module.scheduler.shutdown()
    _stop(scheduler)
    _stop(worker)


async def _beats_at_least(module: ModuleType, count: int) -> bool:
    return (await _data(module, "beats")).count("label") >= count


async def _records_at_least(module: ModuleType, count: int) -> bool:
    return (await _data(module, "records")).count("dynamic") >= count


@pytest.mark.slow
def test_the_migration_example_runs_and_finishes_by_itself(tmp_path: Path) -> None:
    """From an empty directory, leaving nothing behind (tests/docs/test_examples.py)."""
    example = ROOT / "examples" / "taskiq_migration.py"
    program = Program("taskiq_migration.py", (sys.executable, str(example)))
    done = run(replace(program, env={"CONVEYOR_FETCH_WAIT": "0.1"}), tmp_path)
    assert done.returncode == 0, done.report()
    assert not done.left_behind, done.left_behind
    assert "after a retry: <2@mail> welcome (tenant acme, run 2)" in done.stdout
    assert "error: ZeroDivisionError: division by zero" in done.stdout
    assert "raise_for_error(): TaskFailed" in done.stdout
