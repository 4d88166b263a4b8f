"""handle.abort() on every broker: queued tasks never run, running ones are cancelled in
their worker, and the task ends ``aborted`` without retries."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    AbortOutcome,
    Context,
    Conveyor,
    Depends,
    Hook,
    Message,
    Result,
    TaskFailed,
    TaskStatus,
)
from conveyor.brokers.base import Delivery
from conveyor.testing import ManualClock
from tests.conftest import (
    connected_app,
    eventually,
    eventually_blocking,
    fast_app,
    nothing_pending,
)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Conveyor]:
    """The suite's ``app`` on a :class:`ManualClock`, with the periodic check of abort marks
    far longer than any wait here: a task seen aborted in time was aborted by its signal."""
    async with connected_app(
        request.param, tmp_path, clock=clock, abort_check_interval=60.0
    ) as conveyor:
        yield conveyor


class _Results(Hook):
    def __init__(self) -> None:
        self.seen: list[Result[Any]] = []

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        self.seen.append(result)


async def test_a_queued_task_never_runs_and_ends_aborted(app: Conveyor) -> None:
    ran: list[str] = []

    @app.task(retries=3)
    async def job(name: str) -> str:
        ran.append(name)
        return name

    handle = await job.kiq("queued")
    assert (await handle.status()).status is TaskStatus.QUEUED
    assert await handle.abort() is AbortOutcome.DEQUEUED
    result = await handle.wait_result(timeout=1)  # stored by the abort itself
    assert (result.status, result.task, result.attempts) == (TaskStatus.ABORTED, job.name, 0)
    assert result.error is not None and result.error.type == "conveyor.Aborted"
    assert (await handle.status()).status is TaskStatus.ABORTED
    with pytest.raises(TaskFailed, match=r"conveyor\.Aborted"):
        await handle.get(timeout=1)
    other = await job.kiq("other")
    async with app.worker():
        assert await other.get(timeout=5) == "other"
    assert ran == ["other"]
    assert await handle.abort() is AbortOutcome.FINISHED  # a second abort changes nothing


async def test_a_delayed_task_never_runs_and_ends_aborted(
    app: Conveyor, clock: ManualClock
) -> None:
    ran: list[int] = []

    @app.task
    async def later(n: int) -> None:
        ran.append(n)

    async with app.worker():
        handle = await later.with_options(delay=0.5).kiq(1)
        # due just after it: once this one has run, the aborted one was due too
        witness = await later.with_options(delay=0.6).kiq(2)
        assert await handle.abort() is AbortOutcome.DEQUEUED
        assert (await handle.wait_result(timeout=1)).status is TaskStatus.ABORTED
        clock.advance(1.0)  # past both due times (Redis keeps them by its own clock)
        assert (await witness.wait_result(timeout=5)).status is TaskStatus.SUCCEEDED
        await eventually(lambda: nothing_pending(app), what="nothing pending")
    assert ran == [2]
    assert await app.broker.dead_letters() == []


async def test_a_running_async_task_is_cancelled_at_once_without_retries(app: Conveyor) -> None:
    recorder = _Results()
    app.add_hook(recorder)
    started = asyncio.Event()
    seen: list[str] = []

    @app.task(retries=3)
    async def crunch(ctx: Context = Depends()) -> str:
        seen.append(f"start {ctx.attempt}")
        started.set()
        try:
            await asyncio.Event().wait()  # runs until cancelled
        except asyncio.CancelledError:
            seen.append(f"cancelled, abort_requested={ctx.abort_requested}")
            raise
        seen.append("end")
        return "done"

    async with app.worker():
        handle = await crunch.kiq()
        await asyncio.wait_for(started.wait(), 5)
        assert await handle.abort() is AbortOutcome.SIGNALLED
        # in time by its signal alone: the periodic check is 60 s away
        result = await handle.wait_result(timeout=5)
        # no retry is waiting, delayed or running
        await eventually(lambda: nothing_pending(app), what="nothing pending")
    assert seen == ["start 1", "cancelled, abort_requested=True"]
    assert (result.status, result.attempts) == (TaskStatus.ABORTED, 1)
    assert result.error is not None and "while attempt 1 was running" in result.error.message
    assert [r.status for r in recorder.seen] == [TaskStatus.ABORTED]
    assert (await handle.status()).status is TaskStatus.ABORTED
    assert await app.broker.dead_letters() == []
    assert await handle.abort() is AbortOutcome.FINISHED


async def test_a_running_sync_task_sees_abort_requested_and_ends_aborted(app: Conveyor) -> None:
    started, noticed = threading.Event(), threading.Event()

    @app.task(retries=2)
    def blocking(ctx: Context = Depends()) -> str:
        started.set()
        try:  # a def task polls the flag
            eventually_blocking(lambda: ctx.abort_requested, timeout=10, every=0.01)
            noticed.set()
            return "stopped early"  # discarded: the result is already "aborted"
        finally:
            returned.set()

    returned = threading.Event()
    async with app.worker():
        handle = await blocking.kiq()
        assert await asyncio.to_thread(started.wait, 5)
        assert await handle.abort() is AbortOutcome.SIGNALLED
        # in time by its signal alone: the periodic check is 60 s away
        result = await handle.wait_result(timeout=5)
        assert await asyncio.to_thread(noticed.wait, 5), "the thread never saw the flag"
        assert await asyncio.to_thread(returned.wait, 5)  # its late return is not stored:
    assert (result.status, result.return_value, result.attempts) == (TaskStatus.ABORTED, None, 1)
    assert (await handle.result()).status is TaskStatus.ABORTED


async def test_aborting_a_finished_task_changes_nothing(app: Conveyor) -> None:
    @app.task
    async def fine() -> int:
        return 7

    @app.task
    async def broken() -> None:
        raise RuntimeError("broken on purpose")

    async with app.worker():
        ok, bad = await fine.kiq(), await broken.kiq()
        assert await ok.get(timeout=5) == 7
        await bad.wait_result(timeout=5)
    assert await ok.abort() is AbortOutcome.FINISHED
    assert await bad.abort() is AbortOutcome.FINISHED
    assert (await ok.result()).return_value == 7
    assert (await bad.status()).status is TaskStatus.FAILED
    assert [e.id for e in await app.broker.dead_letters()] == [bad.task_id]


async def test_abort_of_an_unknown_task_id(app: Conveyor) -> None:
    assert await app.abort("no-such-task") is AbortOutcome.UNKNOWN
    assert await app.handle("no-such-task").abort() is AbortOutcome.UNKNOWN


async def test_an_abort_racing_the_fetch_ends_the_task_without_running_it(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aborted just after a worker claimed it, before it started: the body never runs."""
    ran: list[int] = []

    @app.task(retries=1)
    async def job(n: int) -> None:
        ran.append(n)

    broker = app.broker
    claim = broker.fetch
    raced: list[Delivery] = []

    async def fetch_then_abort(queues: Any, count: int, wait: float) -> list[Delivery]:
        got = await claim(queues, count, wait)
        for delivery in got:
            if delivery.task_id == handle.task_id:
                raced.append(delivery)
                assert await app.abort(delivery.task_id) is AbortOutcome.SIGNALLED
                # its signal reaches the worker before the worker starts it
                await eventually(lambda: handle.task_id in worker._signalled, what="the signal")
        return got

    handle = await job.kiq(1)
    monkeypatch.setattr(broker, "fetch", fetch_then_abort)
    async with app.worker() as worker:
        result = await handle.wait_result(timeout=5)
        assert (await (await job.kiq(2)).wait_result(timeout=5)).status is TaskStatus.SUCCEEDED
    assert [d.task_id for d in raced] == [handle.task_id]
    assert (result.status, result.attempts) == (TaskStatus.ABORTED, 1)
    assert ran == [2]


async def test_a_marked_task_whose_worker_died_is_aborted_before_it_runs_again(
    app: Conveyor, clock: ManualClock
) -> None:
    """The mark outlives the worker: the next claim carries it, and the task never restarts."""
    ran: list[int] = []

    @app.task(retries=2)
    async def job(ctx: Context = Depends()) -> None:
        ran.append(ctx.attempt)

    handle = await job.kiq()
    broker = app.broker
    (dying,) = await broker.fetch(["default"], 1, 1.0)  # a worker that will never settle
    assert await handle.abort() is AbortOutcome.SIGNALLED
    async with app.worker():  # reaps the expired lease (lease 1 s), then claims it again
        # the app's clock runs while waiting: the lease, and the worker's reaper ticks
        await eventually(
            lambda: app.result_store.get(handle.task_id), timeout=10, clock=clock, what="a result"
        )
        result = await handle.result()
    assert ran == []
    assert (result.status, result.attempts) == (TaskStatus.ABORTED, 2)
    assert await dying.ack() is False


async def test_a_task_that_swallows_the_cancellation_still_ends_aborted(app: Conveyor) -> None:
    started = asyncio.Event()

    @app.task
    async def stubborn() -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # bad manners: the abort stands
            await asyncio.Event().wait()
        return "finished anyway"

    async with app.worker():
        handle = await stubborn.kiq()
        await asyncio.wait_for(started.wait(), 5)
        await handle.abort()
        result = await handle.wait_result(timeout=5)
    assert (result.status, result.return_value) == (TaskStatus.ABORTED, None)


async def test_other_tasks_keep_running_beside_an_aborted_one(app: Conveyor) -> None:
    started = asyncio.Event()

    @app.task
    async def long() -> None:
        started.set()
        await asyncio.Event().wait()  # runs until cancelled

    @app.task
    async def short(n: int) -> int:
        return n * 2

    async with app.worker(concurrency=4):
        victim = await long.kiq()
        await asyncio.wait_for(started.wait(), 5)
        assert await victim.abort() is AbortOutcome.SIGNALLED
        handles = [await short.kiq(n) for n in range(20)]
        assert [await h.get(timeout=5) for h in handles] == [n * 2 for n in range(20)]
        assert (await victim.wait_result(timeout=5)).status is TaskStatus.ABORTED


def test_abort_sync_from_plain_code() -> None:
    app = fast_app()

    @app.task
    async def job() -> None: ...

    handle = job.kiq_sync()
    assert handle.abort_sync() is AbortOutcome.DEQUEUED
    assert handle.wait_result_sync(timeout=1).status is TaskStatus.ABORTED
    assert app.abort_sync(handle.task_id) is AbortOutcome.FINISHED
    asyncio.run(app.close())


async def test_abort_with_results_kept_apart_from_the_broker(tmp_path: Path) -> None:
    app = fast_app(results=f"sqlite:///{tmp_path / 'results.db'}")
    started = asyncio.Event()

    @app.task
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()  # runs until cancelled

    async with app:
        queued = await slow.kiq()
        assert await queued.abort() is AbortOutcome.DEQUEUED
        assert (await queued.wait_result(timeout=1)).status is TaskStatus.ABORTED
        assert await app.result_store.get(queued.task_id) is not None
        async with app.worker():
            running = await slow.kiq()
            await asyncio.wait_for(started.wait(), 5)
            assert await running.abort() is AbortOutcome.SIGNALLED
            assert (await running.wait_result(timeout=5)).status is TaskStatus.ABORTED
        assert await running.abort() is AbortOutcome.FINISHED
