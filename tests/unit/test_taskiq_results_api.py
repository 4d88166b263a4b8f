"""taskiq's result API on Conveyor (issue 16, item 4): ``TaskiqResult`` as taskiq code
builds and reads it, subscripted backends, ``result_backend.set_result()`` as progress
reporting, taskiq's exceptions where taskiq raises them, and ``wait_result``'s taskiq
signature.

Each behaviour runs on the memory, SQLite and Redis result stores through a compat
broker wrapping a fast app, with a worker in the test's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest

from conveyor import ResultMissing, TaskFailed, TaskStatus
from conveyor.compat.taskiq import (
    AsyncBroker,
    AsyncResultBackend,
    AsyncTaskiqTask,
    Context,
    InMemoryBroker,
    NoResultError,
    RedisAsyncResultBackend,
    ResultGetError,
    SendTaskError,
    TaskiqDepends,
    TaskiqError,
    TaskiqResult,
    TaskiqResultTimeoutError,
)
from conveyor.compat.taskiq.exceptions import (
    BrokerError,
    ResultBackendError,
    ResultIsReadyError,
    ResultSetError,
    SecurityError,
    TaskRejectedError,
    UnknownTaskError,
)
from conveyor.compat.taskiq_redis import ResultIsMissingError
from conveyor.errors import EnqueueError, PayloadTooLarge
from conveyor.result import ErrorInfo
from tests.brokers.conftest import REDIS_URL, _cleanup, _url_for, service_unavailable
from tests.conftest import eventually, fast_app

_R = TypeVar("_R")


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncBroker]:
    """A compat broker on a fast app, started as a client, with its worker running."""
    url = _url_for(request.param, tmp_path)
    broker = AsyncBroker(conveyor=fast_app(url))
    try:
        await broker.startup()
    except Exception as exc:  # an unreachable Redis: skipped locally, failed in CI
        service_unavailable(str(exc))
    worker = broker.conveyor.worker(concurrency=4)
    await worker.start()
    try:
        yield broker
    finally:
        await worker.stop()
        await broker.conveyor.close()  # the worker made it a worker process: shutdown() skips
        await _cleanup(url)


# -- TaskiqResult as taskiq code builds and reads it -----------------------------------


def test_a_result_is_built_and_dumped_as_taskiq_does() -> None:
    result = TaskiqResult(
        is_err=False, return_value={"n": 1}, execution_time=0.5, labels={"a": 1}, log="x"
    )
    expected = {
        "is_err": False,
        "log": "x",
        "return_value": {"n": 1},
        "execution_time": 0.5,
        "labels": {"a": 1},
        "error": None,
    }
    assert dict(result) == expected
    assert result.model_dump() == expected
    assert list(dict(result)) == [
        "is_err",
        "log",
        "return_value",
        "execution_time",
        "labels",
        "error",
    ]
    assert result.log == "x"
    assert result.status is TaskStatus.SUCCEEDED
    assert result.raise_for_error() is result
    assert result == TaskiqResult.model_validate(expected)
    assert "return_value={'n': 1}" in repr(result)


def test_a_subscripted_result_and_a_json_dump() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = TaskiqResult[bytes](is_err=False, return_value=b"abc", execution_time=1)
    assert result.model_dump(mode="json")["return_value"] == "abc"
    dated = TaskiqResult(is_err=False, return_value=[when, Path("/tmp/x")], execution_time=0)
    assert dated.model_dump(mode="json")["return_value"] == ["2026-01-02T03:04:05Z", "/tmp/x"]


def test_a_failed_result_raises_its_exception_or_task_failed() -> None:
    boom = ValueError("boom")
    built = TaskiqResult(is_err=True, return_value=None, execution_time=0.1, error=boom)
    assert built.status is TaskStatus.FAILED
    with pytest.raises(ValueError, match="boom") as raised:
        built.raise_for_error()
    assert raised.value is boom
    assert built.model_dump()["error"] == {
        "exc_type": "ValueError",
        "exc_message": ("boom",),
        "exc_module": "builtins",
        "exc_cause": None,
        "exc_context": None,
        "exc_suppress_context": False,
    }
    info = ErrorInfo("pkg.errors.Broken", "no", "Traceback...")
    read = TaskiqResult(is_err=True, return_value=None, execution_time=0, error=info, task_id="t")
    assert read.model_dump(mode="json")["error"]["exc_module"] == "pkg.errors"
    assert read.model_dump(mode="json")["error"]["exc_message"] == ["no"]
    with pytest.raises(TaskFailed, match=r"pkg\.errors\.Broken: no"):
        read.raise_for_error()


def test_backends_are_subscriptable_and_subclassable() -> None:
    backend = RedisAsyncResultBackend[UUID | None](REDIS_URL, result_ex_time=60)
    assert isinstance(backend, RedisAsyncResultBackend)
    assert backend.result_ttl == 60
    assert isinstance(AsyncResultBackend[Any](), AsyncResultBackend)

    class MyBackend(AsyncResultBackend[_R]):
        pass

    assert isinstance(MyBackend[int](), AsyncResultBackend)


def test_taskiq_redis_rejects_expiry_settings_as_it_does() -> None:
    from conveyor.compat.taskiq_redis.exceptions import (
        DuplicateExpireTimeSelectedError,
        ExpireTimeMustBeMoreThanZeroError,
    )

    with pytest.raises(DuplicateExpireTimeSelectedError):
        RedisAsyncResultBackend(REDIS_URL, result_ex_time=1, result_px_time=1000)
    with pytest.raises(ExpireTimeMustBeMoreThanZeroError):
        RedisAsyncResultBackend(REDIS_URL, result_ex_time=0)


# -- exceptions ------------------------------------------------------------------------


def test_taskiq_exceptions_take_keywords_and_sit_in_conveyors_hierarchy() -> None:
    timeout = TaskiqResultTimeoutError(timeout=2.5)
    assert timeout.timeout == 2.5
    assert str(timeout) == "Waiting for task results has timed out, timeout=2.5"
    assert isinstance(timeout, TimeoutError)
    assert isinstance(timeout, TaskiqError)
    assert str(SecurityError(description="bad")) == "Security exception occurred: bad"
    assert str(UnknownTaskError(task_name="x")).endswith("task name - x")
    assert str(NoResultError()) == "User doesn't want to set result"
    assert issubclass(SendTaskError, BrokerError) and issubclass(SendTaskError, EnqueueError)
    assert issubclass(ResultGetError, ResultBackendError)
    assert issubclass(ResultGetError, ResultMissing)
    assert issubclass(ResultIsMissingError, ResultGetError)
    for kind in (ResultSetError, ResultIsReadyError, TaskRejectedError):
        assert issubclass(kind, TaskiqError)
    assert str(ResultGetError("custom message")) == "custom message"


# -- wait_result: taskiq's signature, error and conversions ----------------------------


async def test_wait_result_takes_check_interval_then_timeout(broker: AsyncBroker) -> None:
    @broker.task
    async def add(a: int, b: int) -> int:
        return a + b

    @broker.task
    async def never(done: str) -> None:
        await asyncio.Event().wait()

    result = await (await add.kiq(1, 2)).wait_result(0.2, 10)
    assert isinstance(result, TaskiqResult)
    assert result.return_value == 3
    assert result.attempts == 1 and result.task == add.task_name

    stuck = await never.kiq("x")
    async with asyncio.timeout(5):  # a timeout of 30 s here would be the old order
        with pytest.raises(TaskiqResultTimeoutError) as raised:
            await stuck.wait_result(30, 0.05)
    assert raised.value.timeout == 0.05
    with pytest.raises(TimeoutError):
        await stuck.wait_result(timeout=0.05)
    assert await stuck.abort()


async def test_a_returned_value_is_converted_as_taskiq_reads_it(
    broker: AsyncBroker, caplog: pytest.LogCaptureFixture
) -> None:
    @broker.task
    async def text(raw: bytes) -> str | None:
        return raw  # type: ignore[return-value]  # taskiq code does this

    @broker.task
    async def plain(raw: bytes) -> str:
        return raw  # type: ignore[return-value]

    @broker.task
    async def not_a_number() -> int:
        return "many"  # type: ignore[return-value]

    assert (await (await text.kiq(b"caf\xc3\xa9")).wait_result(timeout=5)).return_value == "café"
    assert (await (await plain.kiq(b"abc")).wait_result(timeout=5)).return_value == "abc"
    with caplog.at_level(logging.WARNING, "conveyor.compat.taskiq"):
        kept = await (await not_a_number.kiq()).wait_result(timeout=5)
    assert kept.return_value == "many"
    assert "Cannot parse return type into" in caplog.text


async def test_a_per_call_timeout_label_is_the_calls_timeout(broker: AsyncBroker) -> None:
    @broker.task
    async def waits() -> None:
        await asyncio.Event().wait()

    result = await (await waits.kicker().with_labels(timeout=0.1).kiq()).wait_result(timeout=10)
    assert result.is_err
    assert result.error is not None
    assert isinstance(result.error, ErrorInfo)
    assert result.error.type.endswith("TaskTimeout")
    assert "0.1 s" in result.error.message


# -- set_result() reports -------------------------------------------------------------


async def test_set_result_reports_to_taskiq_readers_until_the_task_ends(
    broker: AsyncBroker,
) -> None:
    go_on = asyncio.Event()

    @broker.task
    async def long_job(ctx: Context = TaskiqDepends()) -> str:
        for phase in ("download", "parse"):
            await ctx.broker.result_backend.set_result(
                ctx.message.task_id,
                TaskiqResult(is_err=False, return_value={"phase": phase}, execution_time=0.1),
            )
        await go_on.wait()
        return "done"

    task = await long_job.kiq()
    # a waiter gets the report, as taskiq's polling wait_result does
    reported = await task.wait_result(timeout=10)
    assert reported.return_value in ({"phase": "download"}, {"phase": "parse"})
    assert await eventually(
        lambda: _returned(task.get_result(), {"phase": "parse"}), what="the last report"
    )
    assert await task.is_ready()
    assert await broker.result_backend.is_result_ready(task.task_id)
    backend_view = await broker.result_backend.get_result(task.task_id)
    assert backend_view.return_value == {"phase": "parse"}
    # Conveyor's own readers still see a running task with no result
    with pytest.raises(ResultMissing):
        await task.result()
    assert (await task.status()).status is TaskStatus.RUNNING

    go_on.set()
    assert await task.get(timeout=10) == "done"  # Conveyor's get(): the real outcome
    final = await task.wait_result(timeout=10)
    assert final.return_value == "done" and final.status is TaskStatus.SUCCEEDED
    assert (await task.get_result()).return_value == "done"
    assert (await broker.result_backend.get_result(task.task_id)).return_value == "done"


async def _returned(read: Any, value: object) -> bool:
    return bool((await read).return_value == value)


async def test_set_result_for_any_id_reads_back_through_the_backend(broker: AsyncBroker) -> None:
    backend = broker.result_backend
    assert not await backend.is_result_ready("outside-1")
    with pytest.raises(ResultGetError):
        await backend.get_result("outside-1")
    error = RuntimeError("went wrong")
    await backend.set_result(
        "outside-1",
        TaskiqResult(is_err=True, return_value=None, execution_time=2.0, log="l", error=error),
    )
    stored = await backend.get_result("outside-1", with_logs=True)
    assert stored.is_err and stored.execution_time == 2.0 and stored.log == "l"
    assert isinstance(stored.error, ErrorInfo)
    assert str(stored.error) == "RuntimeError: went wrong"
    assert (await backend.get_result("outside-1")).log is None  # taskiq drops logs by default
    handle = broker.conveyor.handle("outside-1")
    with pytest.raises(ResultMissing):
        await handle.result()  # not a Conveyor result: no task ran


async def test_a_reused_task_id_forgets_the_earlier_report(broker: AsyncBroker) -> None:
    go_on = asyncio.Event()

    @broker.task
    async def job(n: int) -> int:
        await go_on.wait()
        return n

    await broker.result_backend.set_result(
        "job-7", TaskiqResult(is_err=False, return_value=-1, execution_time=0)
    )
    task = await job.kicker().with_task_id("job-7").kiq(7)
    assert not await task.is_ready()
    go_on.set()
    assert (await task.wait_result(timeout=10)).return_value == 7


# -- sending ---------------------------------------------------------------------------


async def test_a_send_that_fails_raises_send_task_error(tmp_path: Path) -> None:
    app = fast_app("memory://", max_payload_bytes=1024)
    broker = AsyncBroker(conveyor=app)

    @broker.task
    async def upload(blob: str) -> None: ...

    await broker.startup()
    try:
        with pytest.raises(SendTaskError) as raised:
            await upload.kiq("x" * 4096)
        assert isinstance(raised.value.__cause__, PayloadTooLarge)
    finally:
        await broker.shutdown()


# -- RedisAsyncResultBackend -----------------------------------------------------------


async def test_redis_backend_get_result_raises_result_is_missing(tmp_path: Path) -> None:
    url = _url_for("redis", tmp_path)
    from conveyor.compat.taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(url).with_result_backend(RedisAsyncResultBackend(url))
    try:
        await broker.startup()
    except Exception as exc:
        service_unavailable(str(exc))
    try:
        with pytest.raises(ResultIsMissingError):
            await broker.result_backend.get_result("nothing-here")
        with pytest.raises(ResultGetError):  # what taskiq code catches
            await broker.result_backend.get_result("nothing-here")
    finally:
        await broker.shutdown()
        await _cleanup(url)


async def test_an_applications_own_backend_stores_and_serves_the_results() -> None:
    # taskiq's "extending taskiq" result backend, filled in as its docstrings say
    saved: dict[str, TaskiqResult[Any]] = {}
    served: list[str] = []
    lifecycle: list[str] = []

    class DictBackend(AsyncResultBackend[Any]):
        async def startup(self) -> None:
            lifecycle.append("startup")

        async def shutdown(self) -> None:
            lifecycle.append("shutdown")

        async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
            saved[task_id] = result

        async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
            served.append(task_id)
            return saved[task_id]

        async def is_result_ready(self, task_id: str) -> bool:
            return task_id in saved

    broker = InMemoryBroker().with_result_backend(DictBackend())

    @broker.task
    async def add_one(value: int) -> int:
        return value + 1

    await broker.startup()
    try:
        handle = await add_one.kiq(1)
        result = await handle.wait_result(check_interval=0.01, timeout=10)
        assert result.return_value == 2 and not result.is_err
        assert saved[handle.task_id].return_value == 2
        assert served == [handle.task_id]
        assert await handle.is_ready()
        with pytest.raises(TaskiqResultTimeoutError):
            await AsyncTaskiqTask(broker.conveyor, "never-sent", int).wait_result(
                check_interval=0.01, timeout=0.05
            )
    finally:
        await broker.shutdown()
    assert lifecycle == ["startup", "shutdown"]
