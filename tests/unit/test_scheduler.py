"""app.schedules and the Scheduler's passes, on every broker, with a clock the test drives.

Passes are called directly (``run_pass``), so time only moves when a test moves it; the
brokers' own dedupe is real.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from conveyor import (
    Context,
    Conveyor,
    Depends,
    Scheduler,
    UnknownTask,
    catch_up,
    every,
)
from conveyor.brokers.base import Outgoing
from conveyor.scheduler import InvalidSchedule, UnknownSchedule
from conveyor.scheduler.schedule import encode_schedule
from conveyor.scheduler.triggers import Every
from conveyor.testing import ManualClock
from tests.conftest import connected_app, eventually


@pytest.fixture
def clock() -> ManualClock:
    # wall time that moves only when told; starts a quarter second after a whole second
    return ManualClock(now=float(math.floor(time.time())) + 0.25)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Conveyor]:
    async with connected_app(request.param, tmp_path, clock=clock, schedule_grace=2.0) as conveyor:
        yield conveyor


def ticked(app: Conveyor) -> dict[str, Any]:
    @app.task(name="ping", schedule=[every(seconds=1, id="ping-1s")])
    async def ping(n: int = 0) -> int:
        return n

    @app.task(name="catchup", schedule=[every(seconds=1, id="cu-1s", missed=catch_up(30))])
    async def catchup() -> None: ...

    return {"ping": ping, "catchup": catchup}


def fired(schedulers: Sequence[Scheduler], schedule_id: str) -> list[float]:
    return sorted(
        t.fire_time
        for s in schedulers
        for t in s.stats.recent
        if t.schedule_id == schedule_id and t.fresh
    )


async def test_many_schedulers_enqueue_each_tick_once(app: Conveyor, clock: ManualClock) -> None:
    ticked(app)
    schedulers = [Scheduler(app) for _ in range(3)]
    for _ in range(5):
        for scheduler in schedulers:
            await scheduler.run_pass()
        clock.advance(1.0)
    fresh = fired(schedulers, "ping-1s")
    assert fresh == sorted(set(fresh)), "a tick was enqueued twice"
    assert len(fresh) == 5
    assert sum(s.stats.duplicates for s in schedulers) == 2 * sum(
        s.stats.enqueued for s in schedulers
    )
    depths = {d.queue: d.ready for d in await app.broker.queue_depths()}
    assert depths.get("default") == sum(s.stats.enqueued for s in schedulers)


async def test_a_tick_enqueued_by_a_dead_scheduler_is_not_repeated_by_a_new_one(
    app: Conveyor, clock: ManualClock
) -> None:
    ticked(app)
    first = Scheduler(app)
    await first.run_pass()
    clock.advance(0.5)
    second = Scheduler(app)  # sees the same tick within grace
    await second.run_pass()
    assert second.stats.enqueued == 0
    assert second.stats.duplicates == first.stats.enqueued == 1


async def test_skip_fires_late_ticks_only_within_grace(app: Conveyor, clock: ManualClock) -> None:
    ticked(app)
    scheduler = Scheduler(app)
    await scheduler.run_pass()
    before = scheduler.stats.enqueued
    clock.advance(10.0)  # the scheduler was stopped for 10 ticks
    await scheduler.run_pass()
    skip = [t.fire_time for t in scheduler.stats.recent if t.schedule_id == "ping-1s"]
    late = [t for t in skip if t > clock.now() - 10]
    assert all(clock.now() - t <= 2.0 for t in late)  # grace 2 s
    assert len(late) == 2
    catchup = [t.fire_time for t in scheduler.stats.recent if t.schedule_id == "cu-1s"]
    assert len([t for t in catchup if t > clock.now() - 10]) == 10
    assert scheduler.stats.missed == 8
    assert scheduler.stats.enqueued == before + 12


async def test_first_look_fires_at_most_one_late_run_for_skip(
    app: Conveyor, clock: ManualClock
) -> None:
    ticked(app)
    scheduler = Scheduler(app, grace=5.0)
    await scheduler.run_pass()
    ping = [t for t in scheduler.stats.recent if t.schedule_id == "ping-1s"]
    assert [t.fire_time for t in ping] == [math.floor(clock.now())]
    catchup = [t for t in scheduler.stats.recent if t.schedule_id == "cu-1s"]
    assert catchup == []  # a code catch_up schedule seen for the first time: live from now


async def test_skip_first_run_fires_nothing_from_before_start(
    app: Conveyor, clock: ManualClock
) -> None:
    ticked(app)
    scheduler = Scheduler(app, skip_first_run=True)
    await scheduler.run_pass()
    assert scheduler.stats.enqueued == 0
    clock.advance(1.0)
    await scheduler.run_pass()
    assert scheduler.stats.enqueued == 2


async def test_paused_schedules_skip_their_ticks_and_resume_at_the_next(
    app: Conveyor, clock: ManualClock
) -> None:
    ticked(app)
    scheduler = Scheduler(app)
    await app.schedules.pause("ping-1s")
    info = {i.schedule.id: i for i in await app.schedules.list()}
    assert info["ping-1s"].schedule.paused and info["ping-1s"].next_run is None
    for _ in range(3):
        await scheduler.run_pass()
        clock.advance(1.0)
    assert fired([scheduler], "ping-1s") == []
    await app.schedules.resume("ping-1s")
    scheduler.wake()
    await scheduler.run_pass()
    clock.advance(1.0)
    await scheduler.run_pass()
    assert fired([scheduler], "ping-1s") == [math.floor(clock.now())]


async def test_a_failed_or_hung_publish_is_retried_and_never_doubled(
    app: Conveyor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    ticked(app)
    broker = app.broker
    real_publish = broker.publish
    mode = {"now": "fail"}
    unhang = asyncio.Event()

    async def flaky(batch: Sequence[Outgoing]) -> list[str]:
        if mode["now"] == "fail":
            raise ConnectionError("broker went away")
        if mode["now"] == "hang":
            await unhang.wait()  # past the send timeout
        return await real_publish(batch)

    broker.publish = flaky  # type: ignore[method-assign]
    scheduler = Scheduler(app, send_timeout=0.05)
    with caplog.at_level(logging.ERROR, "conveyor.scheduler"):
        assert await scheduler.run_pass() == 1.0
        mode["now"] = "hang"
        clock.advance(0.5)
        assert await scheduler.run_pass() == 1.0
    assert scheduler.stats.errors == 2
    assert "ConnectionError: broker went away" in caplog.text
    assert "TimeoutError" in caplog.text
    mode["now"] = "ok"
    clock.advance(0.5)
    await scheduler.run_pass()
    assert fired([scheduler], "ping-1s") == [math.floor(clock.now()) - 1, math.floor(clock.now())]
    fresh = fired([scheduler], "ping-1s")
    assert len(fresh) == len(set(fresh))
    unhang.set()  # a publish still waiting ends with the test


async def test_ticks_run_with_their_schedule_labels(app: Conveyor, clock: ManualClock) -> None:
    seen: list[tuple[str, str]] = []

    @app.task(schedule=[every(seconds=1, id="labelled")])
    async def labelled(ctx: Context = Depends()) -> None:
        seen.append((ctx.labels["schedule"], ctx.labels["scheduled_for"]))

    await Scheduler(app).run_pass()
    async with app.worker(concurrency=2):
        await eventually(lambda: seen, what="the tick to run")
    assert seen and seen[0][0] == "labelled"
    assert seen[0][1].endswith("+00:00")


# -- app.schedules --------------------------------------------------------------------


async def test_dynamic_schedules_add_list_next_runs_remove(
    app: Conveyor, clock: ManualClock
) -> None:
    tasks = ticked(app)
    added = await app.schedules.add(
        "report", tasks["ping"], cron="0 7 * * *", tz="Europe/Berlin", args=[3]
    )
    assert added.origin == "dynamic" and added.task == "ping"
    ids = {i.schedule.id for i in await app.schedules.list()}
    assert ids == {"ping-1s", "cu-1s", "report"}
    runs = await app.schedules.next_runs("report", 3)
    assert len(runs) == 3 and all(r.astimezone().hour is not None for r in runs)
    assert [(r - runs[0]).days for r in runs] == [0, 1, 2]

    scheduler = Scheduler(app)
    await app.schedules.add("fast", "ping", every=0.5, kwargs={"n": 7})
    await scheduler.run_pass()
    clock.advance(0.5)
    await scheduler.run_pass()
    assert len(fired([scheduler], "fast")) == 1  # created now: nothing from before it

    assert await app.schedules.remove("fast") is True
    assert await app.schedules.remove("fast") is False
    scheduler.wake()
    clock.advance(2.0)
    await scheduler.run_pass()
    assert len(fired([scheduler], "fast")) == 1


async def test_run_now_enqueues_outside_the_ticks(app: Conveyor) -> None:
    ticked(app)
    await app.schedules.add("now", "ping", every=3600, kwargs={"n": 4})
    handle = await app.schedules.run_now("now")
    async with app.worker(concurrency=2):
        assert await handle.get(timeout=5) == 4


async def test_bad_dynamic_schedules_are_refused_with_the_reason(app: Conveyor) -> None:
    tasks = ticked(app)
    with pytest.raises(UnknownTask, match="'nope' is not registered"):
        await app.schedules.add("x", "nope", cron="* * * * *")
    with pytest.raises(TypeError, match="ping"):
        await app.schedules.add("x", tasks["ping"], every=5, args=[1, 2, 3])
    with pytest.raises(InvalidSchedule, match="field 2 \\(hour\\)"):
        await app.schedules.add("x", tasks["ping"], cron="0 24 * * *")
    with pytest.raises(InvalidSchedule, match="exactly one of"):
        await app.schedules.add("x", tasks["ping"], cron="* * * * *", every=5)
    with pytest.raises(InvalidSchedule, match="declared in code"):
        await app.schedules.add("ping-1s", tasks["ping"], every=5)
    with pytest.raises(InvalidSchedule, match="declared in code"):
        await app.schedules.remove("ping-1s")
    with pytest.raises(UnknownSchedule, match="no schedule with id 'ghost'"):
        await app.schedules.pause("ghost")
    assert {i.schedule.id for i in await app.schedules.list()} == {"ping-1s", "cu-1s"}


async def test_an_unreadable_stored_schedule_is_logged_and_skipped(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    ticked(app)
    store = app.broker.schedule_store()
    await store.save_schedule("garbled", b"{not json")
    good = msgspec.structs.replace(every(seconds=5).bind("ping", "good"), origin="dynamic")
    await store.save_schedule("good", encode_schedule(good))
    with caplog.at_level(logging.ERROR, "conveyor.scheduler"):
        ids = {s.id for s in await app.schedules.load()}
    assert "good" in ids and "garbled" not in ids
    assert "schedule 'garbled' skipped" in caplog.text


async def test_a_new_code_catch_up_schedule_does_not_replay_its_window(
    app: Conveyor, clock: ManualClock
) -> None:
    @app.task(schedule=[every(seconds=1, id="nightly", missed=catch_up(600))])
    async def nightly() -> None: ...

    first = Scheduler(app)
    await first.run_pass()
    assert first.stats.enqueued == 0  # deployed now: nothing from the last 600 s
    clock.advance(3.0)
    restarted = Scheduler(app)  # a later scheduler catches up from the deploy, not before
    await restarted.run_pass()
    assert restarted.stats.enqueued == 3
    stored = {s.id: s for s in await app.schedules.load()}
    assert stored["nightly"].active_from == clock.now() - 3.0


async def test_a_stopped_scheduler_leaves_status_at_once(app: Conveyor) -> None:
    ticked(app)

    async def listed() -> bool:
        return any(w.role == "scheduler" for w in await app.broker.workers())

    async with Scheduler(app, refresh=0.05):
        await eventually(listed, what="the scheduler in the worker list")
    assert not any(w.role == "scheduler" for w in await app.broker.workers())


async def test_each_fired_tick_is_logged_once_across_schedulers(
    app: Conveyor, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    ticked(app)
    schedulers = [Scheduler(app) for _ in range(2)]
    with caplog.at_level(logging.INFO, "conveyor.scheduler"):
        for _ in range(3):
            for scheduler in schedulers:
                await scheduler.run_pass()
            clock.advance(1.0)
    fired_lines = [
        r.getMessage() for r in caplog.records if "'ping-1s' fired for" in r.getMessage()
    ]
    assert len(fired_lines) == 3
    assert all(line.endswith("enqueued") and "ping[" in line for line in fired_lines)


async def test_an_interval_started_now_fires_at_once_then_every_interval_from_there(
    app: Conveyor, clock: ManualClock
) -> None:
    # taskiq's interval schedules: the first run when a scheduler first sees it
    @app.task(schedule=[every(hours=8, id="sync", start="now")])
    async def sync() -> None: ...

    deployed = clock.now()
    first = Scheduler(app)
    await first.run_pass()
    assert fired([first], "sync") == [deployed]
    clock.advance(3600.0)
    restarted = Scheduler(app)  # a restart keeps the stored anchor: no second run now
    await restarted.run_pass()
    assert restarted.stats.enqueued == 0
    clock.advance(7 * 3600.0)
    await restarted.run_pass()
    assert fired([restarted], "sync") == [deployed + 8 * 3600.0]


def test_a_taskiq_interval_entry_may_start_now_and_nothing_else() -> None:
    from conveyor.scheduler.schedule import schedule_from_entry

    started = schedule_from_entry({"interval": 60, "start": "now"})
    aligned = schedule_from_entry({"interval": 60})
    assert isinstance(started.trigger, Every) and started.trigger.from_activation
    assert isinstance(aligned.trigger, Every) and not aligned.trigger.from_activation
    with pytest.raises(InvalidSchedule, match="start"):
        every(seconds=60, start="soon")  # type: ignore[arg-type]
