"""ctx.progress() and ctx.progress_sync(): visible in handle.status() while the task runs,
on every broker, from async and sync tasks; never stale, never fatal."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from conveyor import BrokerUnavailable, Context, Conveyor, Depends, TaskState, TaskStatus, none
from conveyor.task import TaskHandle
from tests.conftest import eventually, fast_app


async def _state_with_progress(handle: TaskHandle[Any]) -> TaskState:
    async def with_progress() -> TaskState | None:
        state = await handle.status()
        return state if state.progress is not None else None

    return await eventually(with_progress, what="a status with progress")


async def test_progress_of_async_and_sync_tasks_shows_in_status(app: Conveyor) -> None:
    gate = asyncio.Event()
    release = threading.Event()

    @app.task
    async def halfway(ctx: Context = Depends()) -> str:
        await ctx.progress(0.5, "half")
        await gate.wait()
        return "done"

    @app.task
    def threaded(ctx: Context = Depends()) -> str:
        ctx.progress_sync(0.25, "a quarter")
        release.wait(10)
        return "done"

    async with app.worker():
        first, second = await halfway.kiq(), await threaded.kiq()
        for handle, fraction, text in ((first, 0.5, "half"), (second, 0.25, "a quarter")):
            state = await _state_with_progress(handle)
            assert (state.status, state.attempts) == (TaskStatus.RUNNING, 1)
            assert (state.progress, state.progress_message) == (fraction, text)
        gate.set()
        release.set()
        assert [await first.get(timeout=5), await second.get(timeout=5)] == ["done", "done"]
        final = await first.status()
    assert (final.status, final.progress) == (TaskStatus.SUCCEEDED, None)


async def test_an_earlier_attempts_progress_is_not_shown_for_the_next(app: Conveyor) -> None:
    gate = asyncio.Event()
    second_started = asyncio.Event()

    @app.task(retries=1, backoff=none())
    async def flaky(ctx: Context = Depends()) -> int:
        if ctx.attempt == 1:
            await ctx.progress(0.9, "nearly there")
            raise RuntimeError("fails late")
        second_started.set()
        await gate.wait()
        return ctx.attempt

    async with app.worker():
        handle = await flaky.kiq()
        await asyncio.wait_for(second_started.wait(), 5)
        state = await handle.status()
        gate.set()
        assert await handle.get(timeout=5) == 2
    assert (state.status, state.attempts, state.progress) == (TaskStatus.RUNNING, 2, None)


async def test_a_failing_progress_write_does_not_fail_the_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = fast_app()

    @app.task
    async def reports(ctx: Context = Depends()) -> str:
        await ctx.progress(0.5)
        return "finished"

    async with app:

        async def broken(*args: object) -> None:
            raise BrokerUnavailable("the result store is down")

        monkeypatch.setattr(app.result_store, "set_progress", broken)
        async with app.worker():
            assert await (await reports.kiq()).get(timeout=5) == "finished"
    assert "could not record the progress" in caplog.text


async def test_progress_shows_when_results_are_not_stored() -> None:
    app = fast_app(result_ttl=0)
    gate = asyncio.Event()

    @app.task
    async def quiet(ctx: Context = Depends()) -> None:
        await ctx.progress(0.3, "working")
        await gate.wait()

    async with app, app.worker():
        handle = await quiet.kiq()
        state = await _state_with_progress(handle)
        gate.set()
    assert (state.progress, state.progress_message) == (0.3, "working")


async def test_progress_rejects_fractions_outside_0_to_1_and_blocking_the_loop() -> None:
    app = fast_app()
    seen: list[str] = []

    @app.task
    async def misuse(ctx: Context = Depends()) -> None:
        for call in (lambda: ctx.progress(1.5), lambda: asyncio.to_thread(ctx.progress_sync, -1)):
            try:
                await call()
            except ValueError as exc:
                seen.append(str(exc))
        try:
            ctx.progress_sync(0.5)
        except RuntimeError as exc:
            seen.append(str(exc))

    async with app, app.worker():
        await (await misuse.kiq()).get(timeout=5)
    assert seen == [
        "progress fraction must be within 0..1, got 1.5",
        "progress fraction must be within 0..1, got -1",
        "progress_sync() would block the event loop: await ctx.progress()",
    ]
