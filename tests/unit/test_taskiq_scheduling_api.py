"""taskiq's scheduling on Conveyor (issue 16, item 5), on every broker with a clock the
test drives: a scheduled run's labels carry ``schedule_id``; labels given with
``kicker().with_labels(...)`` reach scheduled runs; ``schedule_by_time(source, now)``
fires; a one-off leaves ``get_schedules()`` once fired.

Scheduler passes are called directly (``run_pass``), so time only moves when a test
moves it; a worker in the test's loop runs what they enqueue.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor import Scheduler
from conveyor.compat.taskiq import (
    AsyncBroker,
    Context,
    LabelScheduleSource,
    ListRedisScheduleSource,
    ScheduledTask,
    TaskiqDepends,
    TaskiqScheduler,
)
from conveyor.testing import ManualClock
from tests.brokers.conftest import _cleanup, _url_for, service_unavailable
from tests.conftest import eventually, fast_app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now=float(math.floor(time.time())) + 0.25)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def broker(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[AsyncBroker]:
    url = _url_for(request.param, tmp_path)
    broker = AsyncBroker(conveyor=fast_app(url, clock=clock, schedule_grace=5.0))
    try:
        await broker.startup()
    except Exception as exc:  # an unreachable Redis: skipped locally, failed in CI
        service_unavailable(str(exc))
    try:
        yield broker
    finally:
        await broker.shutdown()
        if broker.conveyor.is_connected:  # a worker ran: the broker took itself for one
            await broker.conveyor.close()
        await _cleanup(url)


def _now(clock: ManualClock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


def _recorder(broker: AsyncBroker) -> tuple[Any, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    @broker.task(team="billing")
    async def record(n: int, context: Context = TaskiqDepends()) -> None:
        seen.append({"n": n, **context.message.labels})

    return record, seen


async def _run_all(broker: AsyncBroker, seen: list[Any], count: int) -> None:
    async with broker.conveyor.worker(concurrency=4):
        await eventually(lambda: len(seen) >= count, what=f"{count} scheduled run(s)")


async def test_schedule_by_time_now_fires_with_its_labels_and_schedule_id(
    broker: AsyncBroker, clock: ManualClock
) -> None:
    record, seen = _recorder(broker)
    source = ListRedisScheduleSource("redis://unused")
    scheduler = TaskiqScheduler(broker, sources=[source])
    loop = Scheduler(scheduler.conveyor)
    await loop.run_pass()

    created = await (
        record.kicker()
        .with_labels(tenant="acme", urgent=True)
        .with_schedule_id("remind-1")
        .schedule_by_time(source, _now(clock), 1)
    )
    assert created.schedule_id == "remind-1"
    [listed] = await source.get_schedules()
    assert listed.time is not None and listed.labels["tenant"] == "acme"
    clock.advance(0.5)
    loop.wake()
    await loop.run_pass()
    assert await source.get_schedules() == [], "a fired one-off leaves the source"

    await _run_all(broker, seen, 1)
    [run] = seen
    assert run["n"] == 1
    assert run["schedule_id"] == "remind-1"
    assert run["tenant"] == "acme" and run["urgent"] == "true"
    assert run["team"] == "billing"  # the task's own label


async def test_cron_and_interval_schedules_carry_labels_and_schedule_id(
    broker: AsyncBroker, clock: ManualClock
) -> None:
    record, seen = _recorder(broker)
    source = ListRedisScheduleSource("redis://unused")
    TaskiqScheduler(broker, sources=[source])
    by_cron = (
        await record.kicker().with_labels(kind="cron").schedule_by_cron(source, "* * * * * *", 1)
    )
    by_interval = (
        await record.kicker()
        .with_labels(kind="interval")
        .schedule_by_interval(source, timedelta(seconds=1), n=2)
    )
    loop = Scheduler(broker.conveyor)
    await loop.run_pass()
    clock.advance(1.0)
    await loop.run_pass()
    await _run_all(broker, seen, 2)
    runs = {run["kind"]: run for run in seen}
    assert runs["cron"]["schedule_id"] == by_cron.schedule_id
    assert runs["interval"]["schedule_id"] == by_interval.schedule_id
    assert runs["interval"]["n"] == 2
    assert {s.schedule_id for s in await source.get_schedules()} == {
        by_cron.schedule_id,
        by_interval.schedule_id,
    }, "repeating schedules stay"


async def test_label_schedules_carry_their_labels_and_schedule_id(
    broker: AsyncBroker, clock: ManualClock
) -> None:
    seen: list[dict[str, str]] = []
    later = _now(clock) + timedelta(hours=1)

    @broker.task(
        schedule=[
            {"cron": "* * * * * *", "schedule_id": "every-second", "labels": {"from": "label"}},
            {"time": later, "schedule_id": "later"},
        ]
    )
    async def beat(context: Context = TaskiqDepends()) -> None:
        seen.append(dict(context.message.labels))

    source = LabelScheduleSource(broker)
    assert {s.schedule_id for s in await source.get_schedules()} == {"every-second", "later"}
    loop = Scheduler(broker.conveyor)
    await loop.run_pass()
    clock.advance(1.0)
    await loop.run_pass()
    await _run_all(broker, seen, 1)
    assert seen[0]["schedule_id"] == "every-second"
    assert seen[0]["from"] == "label"
    clock.advance(3600.0)
    assert [s.schedule_id for s in await source.get_schedules()] == ["every-second"]


async def test_created_schedule_kiq_runs_now_with_the_kickers_labels(
    broker: AsyncBroker, clock: ManualClock
) -> None:
    record, seen = _recorder(broker)
    source = ListRedisScheduleSource("redis://unused")
    created = (
        await record.kicker()
        .with_labels(tenant="t1")
        .schedule_by_time(source, _now(clock) + timedelta(days=1), 5)
    )
    async with broker.conveyor.worker(concurrency=2):
        await (await created.kiq()).wait_result(timeout=10)
    assert seen == [{"n": 5, "team": "billing", "tenant": "t1"}]


async def test_add_schedule_takes_a_scheduled_task_with_labels(
    broker: AsyncBroker, clock: ManualClock
) -> None:
    record, seen = _recorder(broker)
    source = ListRedisScheduleSource("redis://unused")
    TaskiqScheduler(broker, sources=[source])
    await source.add_schedule(
        ScheduledTask(
            task_name=record.task_name,
            labels={"priority_label": 3},
            args=[9],
            kwargs={},
            task_id="ignored",
            schedule_id="manual",
            time=_now(clock) - timedelta(seconds=1),
        )
    )
    loop = Scheduler(broker.conveyor)
    await loop.run_pass()
    await _run_all(broker, seen, 1)
    assert seen[0]["schedule_id"] == "manual" and seen[0]["priority_label"] == "3"
    assert await source.get_schedules() == []


def test_a_custom_source_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from conveyor.compat.taskiq import InMemoryBroker, ScheduleSource

    class FromDatabase(ScheduleSource):
        async def get_schedules(self) -> list[ScheduledTask]:
            return []

    TaskiqScheduler(InMemoryBroker(), sources=[FromDatabase()])
    assert "FromDatabase: Conveyor's scheduler does not call" in caplog.text
