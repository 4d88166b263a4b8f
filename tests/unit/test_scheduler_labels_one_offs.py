"""Schedules with labels, and one-off (``at``) schedules that are due now or just past,
on every broker with a clock the test drives (issue 16, scheduling).

- a schedule's ``labels`` go on every tick's message (and on ``run_now``), under the
  scheduler's own ``schedule``/``scheduled_for``;
- an ``at`` time that is now or just past when the schedule is added fires, as a tick
  that late: within ``schedule_grace`` it runs, older it is missed;
- a dynamic ``at`` schedule is deleted once its tick is enqueued or missed, unless it
  was replaced meanwhile;
- and, for taskiq's per-call ``timeout`` label, a call's own timeout
  (``CallOptions.timeout``) replaces its task's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor import Context, Conveyor, Depends, Scheduler, at, cron, every
from conveyor.scheduler import UnknownSchedule
from conveyor.scheduler.schedule import schedule_from_entry
from conveyor.task import CallOptions
from conveyor.testing import ManualClock
from tests.conftest import connected_app, eventually


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now=float(math.floor(time.time())) + 0.25)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Conveyor]:
    async with connected_app(request.param, tmp_path, clock=clock, schedule_grace=2.0) as conveyor:
        yield conveyor


def _now(clock: ManualClock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


def test_labels_are_kept_as_strings_in_every_form() -> None:
    assert cron("* * * * *", labels={"team": "a"}).labels == {"team": "a"}
    assert every(5, labels={"n": "1"}).labels == {"n": "1"}
    entry = schedule_from_entry({"interval": 5, "labels": {"urgent": True, "n": 3}})
    assert entry.labels == {"urgent": "true", "n": "3"}
    assert at(datetime(2030, 1, 1)).labels == {}


async def test_a_schedules_labels_reach_its_runs(app: Conveyor, clock: ManualClock) -> None:
    seen: list[dict[str, str]] = []

    @app.task(schedule=[every(seconds=1, id="coded", labels={"source": "code"})])
    async def job(ctx: Context = Depends()) -> None:
        seen.append(dict(ctx.labels))

    await app.schedules.add("dyn", job, every=1, labels={"tenant": "acme", "schedule": "no"})
    scheduler = Scheduler(app)
    await scheduler.run_pass()
    clock.advance(1.0)
    await scheduler.run_pass()
    handle = await app.schedules.run_now("dyn")
    async with app.worker(concurrency=4):
        await handle.get(timeout=5)
        await eventually(lambda: len(seen) >= 3, what="the ticks and the run_now to run")
    by_schedule = {(s["schedule"], s["scheduled_for"] == "now"): s for s in seen}
    assert by_schedule["coded", False]["source"] == "code"
    assert by_schedule["dyn", False]["tenant"] == "acme"  # the scheduler's own label wins
    assert by_schedule["dyn", True]["tenant"] == "acme"
    assert (await app.schedules.get("dyn")).labels == {"tenant": "acme", "schedule": "no"}


async def test_a_one_off_due_now_fires_and_leaves_the_store(
    app: Conveyor, clock: ManualClock
) -> None:
    ran: list[int] = []

    @app.task
    async def remind(n: int) -> None:
        ran.append(n)

    scheduler = Scheduler(app)
    await scheduler.run_pass()
    await app.schedules.add("now", remind, at=_now(clock), args=[1])
    clock.advance(0.5)
    await app.schedules.add("just-past", remind, at=_now(clock) - timedelta(seconds=1), args=[2])
    await app.schedules.add("later", remind, at=_now(clock) + timedelta(seconds=30), args=[3])
    scheduler.wake()
    await scheduler.run_pass()
    assert sorted(t.schedule_id for t in scheduler.stats.recent) == ["just-past", "now"]
    ids = {info.schedule.id for info in await app.schedules.list()}
    assert ids == {"later"}, "a fired one-off is deleted"
    async with app.worker(concurrency=2):
        await eventually(lambda: sorted(ran) == [1, 2], what="both one-offs to run")

    clock.advance(30.0)
    await scheduler.run_pass()
    assert [t.schedule_id for t in scheduler.stats.recent][-1] == "later"
    assert await app.schedules.list() == []


async def test_a_one_off_too_far_past_is_missed_and_deleted(
    app: Conveyor, clock: ManualClock
) -> None:
    @app.task
    async def remind() -> None: ...

    await app.schedules.add("old", remind, at=_now(clock) - timedelta(minutes=5))
    scheduler = Scheduler(app)
    await scheduler.run_pass()
    assert scheduler.stats.enqueued == 0
    with pytest.raises(UnknownSchedule):
        await app.schedules.get("old")


async def test_a_one_off_replaced_before_the_delete_is_kept(
    app: Conveyor, clock: ManualClock
) -> None:
    @app.task
    async def remind(n: int) -> None: ...

    first = await app.schedules.add("r", remind, at=_now(clock), args=[1])
    clock.advance(0.1)
    second = await app.schedules.add("r", remind, at=_now(clock) + timedelta(hours=1), args=[2])
    # a scheduler that read the first one deletes nothing: the id holds another schedule
    assert await app.schedules.remove_spent([first]) == []
    assert (await app.schedules.get("r")).args == [2]
    assert await app.schedules.remove_spent([second]) == ["r"]
    with pytest.raises(UnknownSchedule):
        await app.schedules.get("r")


async def test_a_paused_one_off_is_not_deleted(app: Conveyor, clock: ManualClock) -> None:
    @app.task
    async def remind() -> None: ...

    await app.schedules.add("p", remind, at=_now(clock) + timedelta(seconds=1), paused=True)
    scheduler = Scheduler(app)
    clock.advance(5.0)
    await scheduler.run_pass()
    assert (await app.schedules.get("p")).paused


async def test_a_calls_own_timeout_replaces_the_tasks(app: Conveyor) -> None:
    """``CallOptions.timeout`` (taskiq's per-call ``timeout`` label) is the run's."""

    @app.task(timeout=60)
    async def waits() -> None:
        await asyncio.Event().wait()

    handle = await app.enqueue(waits, (), {}, CallOptions(timeout=0.1))
    async with app.worker(concurrency=1):
        result = await handle.wait_result(timeout=10)
    assert result.error is not None and result.error.type == "conveyor.TaskTimeout"
    assert "0.1 s" in result.error.message
