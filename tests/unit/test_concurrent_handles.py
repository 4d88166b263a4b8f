"""A thousand handle calls at once in one process queue for connections rather than fail
(issue 14: more than ~100 concurrent calls raised MaxConnectionsError on Redis, and
progress writes were dropped)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Context, Conveyor, Depends, TaskStatus


async def test_a_thousand_concurrent_status_and_wait_calls_all_answer(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="report")
    async def report(n: int, ctx: Context = Depends()) -> int:
        await ctx.progress(0.5, f"half of {n}")  # 200 tasks write progress at once
        return n

    handles = [await report.kiq(n) for n in range(1000)]
    states = await asyncio.gather(*(h.status() for h in handles))
    assert {s.status for s in states} == {TaskStatus.QUEUED}
    async with app.worker(concurrency=200):
        results = await asyncio.gather(*(h.wait_result(timeout=60) for h in handles))
    assert [r.return_value for r in results] == list(range(1000))
    states = await asyncio.gather(*(h.status() for h in handles))
    assert {s.status for s in states} == {TaskStatus.SUCCEEDED}
    assert "could not record the progress" not in caplog.text  # no write was dropped
