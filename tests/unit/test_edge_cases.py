"""Edge cases found in review: each used to lose, loop or mislead."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from conveyor import Context, Conveyor, Depends, Hook, Message, Result, TaskStatus, fixed
from conveyor.testing import ManualClock
from tests.conftest import eventually, fast_app, nothing_pending


async def test_a_raising_hook_does_not_change_the_outcome_or_loop(app: Conveyor) -> None:
    runs: list[int] = []

    class Broken(Hook):
        async def before_execute(self, message: Message, context: Context) -> None:
            raise RuntimeError("hook bug")

        async def after_execute(self, message: Message, result: Result[Any]) -> None:
            raise RuntimeError("hook bug")

    app.add_hook(Broken())

    @app.task
    async def counted() -> int:
        runs.append(1)
        return 7

    async with app.worker():
        assert await (await counted.kiq()).get(timeout=5) == 7
        # nothing to run again: no retry waiting, delayed or running
        await eventually(lambda: nothing_pending(app), what="nothing pending")
    assert runs == [1]


async def test_timedelta_durations_are_accepted(app: Conveyor) -> None:
    @app.task(timeout=timedelta(milliseconds=100), result_ttl=timedelta(minutes=5))
    async def slow() -> None:
        await asyncio.Event().wait()  # runs until its timeout cancels it

    async with app.worker():
        result = await (await slow.kiq()).wait_result(timeout=5)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert "timeout of 0.1 s" in result.error.message


async def test_sync_tasks_get_as_many_threads_as_the_worker_has_slots() -> None:
    app = fast_app(concurrency=2)
    inside = 0
    peak = 0
    lock = threading.Lock()
    all_in = threading.Barrier(8)  # passed only when 8 bodies run at once

    @app.task
    def blocking() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        all_in.wait(timeout=5)
        with lock:
            inside -= 1

    async with app, app.worker(concurrency=8):
        handles = [await blocking.kiq() for _ in range(8)]
        for handle in handles:
            await handle.get(timeout=5)
    assert peak == 8


async def test_a_task_raising_cancelled_error_is_settled_as_failed(app: Conveyor) -> None:
    @app.task(retries=3, backoff=fixed(0))
    async def cancels_itself() -> None:
        raise asyncio.CancelledError()

    async with app.worker():
        result = await (await cancels_itself.kiq()).wait_result(timeout=5)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert result.error.type == "asyncio.exceptions.CancelledError"
    assert result.attempts == 1  # CancelledError is not an Exception: not retried by default


async def test_unserializable_return_value_fails_without_retrying(app: Conveyor) -> None:
    runs: list[int] = []

    @app.task(retries=3, backoff=fixed(0))
    async def returns_a_lock() -> object:
        runs.append(1)
        return threading.Lock()

    async with app.worker():
        result = await (await returns_a_lock.kiq()).wait_result(timeout=5)
    assert runs == [1]
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert "result not serializable" in result.error.message


async def test_reusing_a_finished_task_id_runs_again_with_a_fresh_result(app: Conveyor) -> None:
    counter = iter(range(100))

    @app.task
    async def tick() -> int:
        return next(counter)

    async with app.worker():
        first = await tick.with_options(task_id="same-id").kiq()
        assert await first.get(timeout=5) == 0
        second = await tick.with_options(task_id="same-id").kiq()
        assert await second.get(timeout=5) == 1


async def test_zombie_result_is_not_written_to_a_separate_result_store() -> None:
    clock = ManualClock()
    app = fast_app("memory://", results="memory://", lease=0.5, clock=clock)
    release = threading.Event()

    @app.task(retries=3)
    def stuck() -> str:
        release.wait(5)
        return "late"

    async with app:
        assert app.result_store is not app.broker.result_store()
        handle = await stuck.kiq()
        worker = app.worker(concurrency=1)
        await worker.start()
        assert worker._renewer is not None
        worker._renewer.stop()  # as if the process were paused: no renewals
        await eventually(lambda: worker.claimed == 1, what="the task to be claimed")
        clock.advance(0.6)  # past the lease
        await app.broker.reap()
        (stolen,) = await app.broker.fetch(["default"], 1, 1.0)
        assert await stolen.extend_lease(30)
        release.set()
        await eventually(lambda: worker.processed == 1, what="the zombie's completion")
        assert await app.result_store.get(handle.task_id) is None
        assert await stolen.ack()
        await worker.stop()


def test_get_sync_on_the_apps_own_loop_refuses_instead_of_deadlocking() -> None:
    app = fast_app()

    @app.task
    async def noop() -> None: ...

    async def main() -> None:
        async with app:
            handle = await noop.kiq()
            with pytest.raises(RuntimeError, match="would block this app's own event loop"):
                handle.get_sync(timeout=1)

    asyncio.run(main())


async def test_unknown_task_bounces_do_not_make_it_poison_for_a_newer_worker() -> None:
    clock = ManualClock()
    old = fast_app(unknown_task_retries=1, unknown_task_delay=0.5, clock=clock)
    broker = old._broker

    async with old:
        from conveyor.brokers.base import Outgoing
        from conveyor.message import SCHEMA_VERSION, encode_message

        body = encode_message(Message(SCHEMA_VERSION, "t-1", "new:task", "default", max_attempts=1))
        await old.broker.publish([Outgoing("t-1", "default", body)])
        async with old.worker() as worker:  # does not know "new:task": bounces it once
            await eventually(lambda: worker.processed == 1, what="the bounce")
        clock.advance(0.5)  # the bounce's delay
        new = Conveyor(settings=old.settings)
        new._broker = broker
        new._result_store = broker.result_store()

        @new.task(name="new:task")
        async def new_task() -> str:
            return "ran"

        async with new, new.worker():
            assert await new.handle("t-1").get(timeout=5) == "ran"


def test_register_broker_makes_a_scheme_usable() -> None:
    from conveyor.brokers import register_broker

    register_broker(
        "mem2", "conveyor.brokers.memory:MemoryBroker", "conveyor.brokers.memory:MemoryResultStore"
    )
    app = Conveyor("mem2://", environ={})
    assert type(app._broker).__name__ == "MemoryBroker"


async def test_dependency_generators_are_cleaned_up_even_when_the_task_fails(app: Conveyor) -> None:
    events: list[str] = []

    async def session() -> Any:
        events.append("open")
        try:
            yield "session"
        finally:
            events.append("close")

    @app.task
    async def uses(s: str = Depends(session)) -> None:
        events.append(f"use:{s}")
        raise ValueError("boom")

    async with app.worker():
        await (await uses.kiq()).wait_result(timeout=5)
    assert events == ["open", "use:session", "close"]


async def test_reusing_a_dead_lettered_task_id_runs_again(app: Conveyor) -> None:
    calls: list[str] = []

    @app.task
    async def sometimes(kind: str) -> str:
        calls.append(kind)
        if kind == "fail":
            raise ValueError("first run fails")
        return kind

    async with app.worker():
        first = await sometimes.with_options(task_id="reused").kiq("fail")
        assert (await first.wait_result(timeout=5)).status is TaskStatus.FAILED
        second = await sometimes.with_options(task_id="reused").kiq("ok")
        assert await second.get(timeout=5) == "ok"
    assert calls == ["fail", "ok"]


async def test_a_stopped_worker_leaves_the_worker_list_at_once(app: Conveyor) -> None:
    async with app.worker():
        assert len(await app.broker.workers()) == 1
    assert await app.broker.workers() == []
