"""Workers count task outcomes in memory (a dict increment per task) and add them to the
broker's counters with their heartbeats; a failed flush keeps its counts for the next
one, and a graceful stop flushes what is left."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.brokers.base import TaskCounts
from conveyor.worker.tally import Tally
from tests.conftest import eventually, fast_app


def test_a_tally_counts_by_minute_and_starts_again_after_a_take() -> None:
    tally = Tally()
    assert not tally
    for at in (60.0, 119.9, 120.0):
        tally.add("send", "default", "succeeded", at)
    tally.add("send", "default", "failed", 61.0)
    assert tally.take() == {
        (60, "send", "default", "succeeded"): 2,
        (120, "send", "default", "succeeded"): 1,
        (60, "send", "default", "failed"): 1,
    }
    assert not tally and tally.take() == {}


def test_counts_given_back_add_to_the_new_ones() -> None:
    tally = Tally()
    tally.add("send", "default", "succeeded", 60.0)
    taken = tally.take()
    tally.add("send", "default", "succeeded", 70.0)
    tally.give_back(taken)
    assert tally.take() == {(60, "send", "default", "succeeded"): 2}


def _outcomes_app(**settings: Any) -> Conveyor:
    app = fast_app("memory://", **settings)

    @app.task(name="ok")
    async def ok() -> str:
        return "fine"

    @app.task(name="boom", retries=1, backoff=0.0)
    async def boom() -> None:
        raise ValueError("boom")

    return app


async def test_a_worker_counts_every_outcome_once() -> None:
    app = _outcomes_app()
    async with app:
        async with app.worker(concurrency=4):
            oks = [await app.tasks["ok"].kiq() for _ in range(5)]
            booms = [await app.tasks["boom"].kiq() for _ in range(2)]
            for handle in [*oks, *booms]:
                await handle.wait_result(timeout=10)
        counts = await app.broker.counts(0.0)
        assert counts.totals == {
            ("ok", "default", "succeeded"): 5,
            ("boom", "default", "retried"): 2,
            ("boom", "default", "failed"): 2,
        }
        assert sum(sum(m.values()) for m in counts.minutes.values()) == 9


async def test_counts_reach_the_broker_with_the_heartbeat_while_the_worker_runs() -> None:
    app = _outcomes_app(heartbeat_interval=60.0)  # the beat after tasks end brings them
    async with app, app.worker():
        await (await app.tasks["ok"].kiq()).wait_result(timeout=10)

        async def counted() -> TaskCounts | None:
            got = await app.broker.counts(float("inf"))
            return got if got.totals else None

        assert (await eventually(counted, timeout=5)).totals == {("ok", "default", "succeeded"): 1}


async def test_a_failed_flush_keeps_its_counts_and_a_graceful_stop_stores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _outcomes_app(heartbeat_interval=60.0)
    async with app:
        broker = app.broker
        real, tried = broker.record_counts, []

        async def down(counts: Any) -> None:
            tried.append(dict(counts))
            raise ConnectionError("the broker is away")

        monkeypatch.setattr(broker, "record_counts", down)
        async with app.worker():
            for _ in range(3):
                await (await app.tasks["ok"].kiq()).wait_result(timeout=10)
            await eventually(lambda: tried, timeout=5)
            monkeypatch.setattr(broker, "record_counts", real)  # back for the stop
        assert (await broker.counts(float("inf"))).totals == {("ok", "default", "succeeded"): 3}


async def test_task_counts_off_counts_nothing() -> None:
    app = _outcomes_app(task_counts=False)
    async with app:
        async with app.worker():
            await (await app.tasks["ok"].kiq()).wait_result(timeout=10)
        assert await app.broker.counts(0.0) == TaskCounts()
