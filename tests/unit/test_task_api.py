"""Defining, calling, enqueueing and awaiting tasks on the memory broker."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from datetime import UTC, datetime

import msgspec
import pydantic
import pytest

from conveyor import (
    Context,
    Conveyor,
    Depends,
    ErrorInfo,
    PayloadTooLarge,
    ResultTimeout,
    TaskFailed,
    TaskNotFound,
    TaskState,
    TaskStatus,
    fixed,
)
from conveyor.testing import ManualClock
from tests.conftest import eventually


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Order(msgspec.Struct):
    id: uuid.UUID
    placed: datetime


class User(pydantic.BaseModel):
    name: str
    age: int


async def queued(app: Conveyor) -> int:
    """Messages waiting in any queue."""
    return sum(d.ready + d.delayed for d in await app.broker.queue_depths())


async def test_async_task_runs_on_worker_and_returns_value(app: Conveyor) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app.worker(concurrency=2):
        handle = await add.kiq(2, 3)
        assert await handle.get(timeout=5) == 5
        result = await handle.wait_result(timeout=5)
    assert result.status is TaskStatus.SUCCEEDED
    assert not result.is_err
    assert result.return_value == 5
    assert result.attempts == 1
    assert result.execution_time >= 0
    assert result.error is None


async def test_sync_task_runs_in_a_worker_thread(app: Conveyor) -> None:
    @app.task
    def where() -> str:
        return threading.current_thread().name

    async with app.worker():
        name = await (await where.kiq()).get(timeout=5)
    assert name.startswith("conveyor-task")


async def test_task_stays_directly_callable_with_dependencies(app: Conveyor) -> None:
    def get_factor() -> int:
        return 10

    @app.task
    async def scale(x: int, factor: int = Depends(get_factor)) -> int:
        return x * factor

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert await scale(4) == 40
    assert double(4) == 8  # a plain def task just runs


async def test_failed_task_result_carries_error_info(app: Conveyor) -> None:
    @app.task
    async def explode(msg: str) -> None:
        raise RuntimeError(msg)

    async with app.worker():
        handle = await explode.kiq("kaboom")
        result = await handle.wait_result(timeout=5)
        assert result.is_err
        assert result.status is TaskStatus.FAILED
        assert isinstance(result.error, ErrorInfo)
        assert result.error.type == "RuntimeError"
        assert result.error.message == "kaboom"
        assert "explode" in result.error.traceback
        with pytest.raises(TaskFailed) as caught:
            await handle.get(timeout=5)
        assert caught.value.error.message == "kaboom"


async def test_wait_result_times_out_with_named_error(app: Conveyor) -> None:
    @app.task
    async def never() -> None: ...

    handle = await never.kiq()  # no worker running
    with pytest.raises(ResultTimeout, match=handle.task_id):
        await handle.wait_result(timeout=0.1)


async def test_retries_then_dead_letter_with_reason(app: Conveyor) -> None:
    calls: list[int] = []

    @app.task(retries=2, backoff=fixed(0.01))
    async def flaky(ctx: Context = Depends()) -> None:
        calls.append(ctx.attempt)
        raise ValueError(f"attempt {ctx.attempt}")

    async with app.worker():
        result = await (await flaky.kiq()).wait_result(timeout=5)
    assert calls == [1, 2, 3]
    assert result.attempts == 3
    assert result.status is TaskStatus.FAILED
    (entry,) = await app.broker.dead_letters()
    assert "failed after 3 attempt(s): ValueError: attempt 3" in entry.reason
    assert entry.attempts == 3


async def test_retry_on_filters_exceptions(app: Conveyor) -> None:
    calls: list[int] = []

    @app.task(retries=5, retry_on=(ConnectionError,), backoff=fixed(0.0))
    async def picky(kind: str) -> None:
        calls.append(1)
        raise ConnectionError() if kind == "net" and len(calls) < 3 else KeyError(kind)

    async with app.worker():
        first = await (await picky.kiq("bad")).wait_result(timeout=5)
        assert first.attempts == 1  # KeyError is not retried
        calls.clear()
        second = await (await picky.kiq("net")).wait_result(timeout=5)
        assert second.attempts == 3  # two ConnectionErrors retried, then KeyError


async def test_retry_eventually_succeeds(app: Conveyor) -> None:
    @app.task(retries=3, backoff=fixed(0.0))
    async def second_time(ctx: Context = Depends()) -> int:
        if ctx.attempt < 2:
            raise OSError("transient")
        return ctx.attempt

    async with app.worker():
        result = await (await second_time.kiq()).wait_result(timeout=5)
    assert result.return_value == 2
    assert result.attempts == 2
    assert await app.broker.dead_letters() == []


async def test_async_timeout_cancels_the_task(app: Conveyor) -> None:
    @app.task(timeout=0.1)
    async def slow() -> None:
        await asyncio.Event().wait()  # ends only when its timeout cancels it

    async with app.worker():
        result = await (await slow.kiq()).wait_result(timeout=5)
    assert result.error is not None
    assert result.error.type == "conveyor.TaskTimeout"  # the public name
    assert "timeout of 0.1 s" in result.error.message


async def test_delay_and_eta_hold_the_task_back(clocked_app: Conveyor, clock: ManualClock) -> None:
    app = clocked_app

    @app.task
    async def stamp() -> list[float]:
        return [clock.now(), time.time()]

    async with app.worker():
        sent = clock.now()  # the real time when the clock was made
        delayed = await stamp.with_options(delay=0.3).kiq()
        eta = datetime.fromtimestamp(sent + 0.2, UTC)
        at_eta = await stamp.with_options(eta=eta).kiq()
        assert (await delayed.status()).status is TaskStatus.QUEUED
        # the worker is serving: a task due now runs, and the held-back ones stay queued
        assert (await (await stamp.kiq()).get(timeout=5))[0] == sent
        assert (await delayed.status()).status is TaskStatus.QUEUED
        assert (await at_eta.status()).status is TaskStatus.QUEUED
        clock.advance(0.3)
        (delayed_at, delayed_real), (eta_at, eta_real) = [
            await handle.get(timeout=5) for handle in (delayed, at_eta)
        ]
        assert delayed_at == eta_at == sent + 0.3  # run only once the clock passed it
        if app.settings.broker_url.startswith("redis"):  # due by the server's own clock
            assert delayed_real >= sent + 0.3
            assert eta_real >= sent + 0.2


async def test_priority_orders_queued_tasks(app: Conveyor) -> None:
    order: list[int] = []

    @app.task
    async def record(n: int) -> None:
        order.append(n)

    await record.with_options(priority=1).kiq(1)
    await record.with_options(priority=9).kiq(9)
    await record.with_options(priority=5).kiq(5)
    async with app.worker(concurrency=1):
        await eventually(lambda: len(order) == 3, what="three tasks to run")
    assert order == [9, 5, 1]


async def test_idempotency_key_and_explicit_task_id(app: Conveyor) -> None:
    runs: list[int] = []

    @app.task
    async def report(n: int) -> int:
        runs.append(n)
        return n

    first = await report.with_options(key="report-42").kiq(42)
    again = await report.with_options(key="report-42").kiq(42)
    assert again.task_id == first.task_id
    chosen = await report.with_options(task_id="my-id").kiq(1)
    assert chosen.task_id == "my-id"
    async with app.worker():
        assert await first.get(timeout=5) == 42
        assert await chosen.get(timeout=5) == 1
        late = await report.with_options(key="report-42").kiq(42)
        assert late.task_id == first.task_id  # finished within its TTL: not run again
    assert sorted(runs) == [1, 42]


async def test_custom_queue_is_served_only_when_asked(app: Conveyor) -> None:
    @app.task(queue="reports")
    async def build() -> str:
        return "built"

    @app.task
    async def witness() -> str:
        return "ran"

    handle = await build.kiq()
    async with app.worker(queues=["default"]):
        # the worker has fetched from its queues since build was sent
        assert await (await witness.kiq()).get(timeout=5) == "ran"
        assert (await handle.status()).status is TaskStatus.QUEUED
    async with app.worker(queues=["reports"]):
        assert await handle.get(timeout=5) == "built"


async def test_arguments_and_results_convert_to_annotated_types(app: Conveyor) -> None:
    @app.task
    async def describe(
        p: Point, order: Order, user: User, when: datetime, ident: uuid.UUID
    ) -> Point:
        assert isinstance(p, Point)
        assert isinstance(order, Order)
        assert isinstance(order.id, uuid.UUID)
        assert isinstance(user, User)
        assert isinstance(when, datetime)
        assert isinstance(ident, uuid.UUID)
        return Point(p.x + user.age, p.y)

    oid = uuid.uuid4()
    now = datetime.now(UTC)
    async with app.worker():
        value = await (
            await describe.kiq(Point(1, 2), Order(oid, now), User(name="a", age=3), now, oid)
        ).get(timeout=5)
    assert value == Point(4, 2)


async def test_non_serializable_argument_raises_before_sending(app: Conveyor) -> None:
    @app.task
    async def takes(handle: object) -> None: ...

    with pytest.raises(TypeError, match=r"task '.*takes'.*argument 'handle' of type lock"):
        await takes.kiq(threading.Lock())
    assert await queued(app) == 0


async def test_wrong_argument_type_or_arity_is_rejected_at_enqueue(app: Conveyor) -> None:
    @app.task
    async def typed(n: int, name: str) -> None: ...

    with pytest.raises(TypeError, match="argument 'n' must be int, got str"):
        await typed.kiq("1", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="missing a required argument: 'name'"):
        await typed.kiq(1)  # type: ignore[call-arg]
    assert await queued(app) == 0


async def test_payload_limit_is_enforced_at_enqueue() -> None:
    from tests.conftest import fast_app

    small = fast_app(max_payload_bytes=1000)

    @small.task
    async def big(blob: str) -> None: ...

    async with small:
        await big.kiq("x" * 500)
        with pytest.raises(PayloadTooLarge, match="over the limit of 1000"):
            await big.kiq("x" * 2000)
        (depth,) = await small.broker.queue_depths()
        assert depth.ready == 1


async def test_status_reports_progress_while_running(app: Conveyor) -> None:
    gate = asyncio.Event()

    @app.task
    async def long_job(ctx: Context = Depends()) -> str:
        await ctx.progress(0.5, "halfway")
        await gate.wait()
        return "done"

    async with app.worker():
        handle = await long_job.kiq()

        async def with_progress() -> TaskState | None:
            state = await handle.status()
            return state if state.progress is not None else None

        state = await eventually(with_progress, what="a status with progress")
        assert state.status is TaskStatus.RUNNING
        assert state.progress == 0.5
        assert state.progress_message == "halfway"
        gate.set()
        await handle.get(timeout=5)
        final = await handle.status()
    assert final.status is TaskStatus.SUCCEEDED
    assert final.result is not None
    assert final.result.return_value == "done"


async def test_status_of_a_task_that_finishes_between_its_two_reads_is_its_result(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status() reads the result store, then the broker. A task that completes in between
    is gone from the broker by the second read; it must be reported done, not unknown."""

    @app.task
    async def quick() -> int:
        return 7

    async with app.worker():
        handle = await quick.kiq()
        await handle.get(timeout=5)
    store = app.result_store
    real_get = store.get
    reads = 0

    async def get_as_if_before_the_result(task_id: str) -> bytes | None:
        nonlocal reads
        reads += 1
        return None if reads == 1 else await real_get(task_id)

    monkeypatch.setattr(store, "get", get_as_if_before_the_result)
    state = await handle.status()
    assert reads == 2  # the second read, after the broker forgot the task
    assert state.status is TaskStatus.SUCCEEDED
    assert state.result is not None and state.result.return_value == 7
    with pytest.raises(TaskNotFound, match="unknown task id 'nope'"):
        await app.handle("nope").status()


async def test_object_annotations_pass_values_through(app: Conveyor) -> None:
    @app.task
    async def describe(extra: dict[str, object]) -> dict[str, object]:
        return {"got": extra, "n": 1}

    async with app.worker(concurrency=2):
        handle = await describe.kiq({"a": [1, "x"]})
        assert await handle.get(timeout=5) == {"got": {"a": [1, "x"]}, "n": 1}
