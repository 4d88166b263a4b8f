"""A scheduler that wakes up after missing ticks, with no tick left in its window, counts
them once and sleeps until the next tick (regression: it kept its cursor before the
missed ticks, found them again on every pass and spun with 1 ms sleeps until the next
tick, logging the same miss each time; found by tests/chaos/test_scheduler_faults.py)."""

from __future__ import annotations

import logging

import pytest

from conveyor import Conveyor
from conveyor.scheduler import Scheduler, catch_up, every
from conveyor.testing import ManualClock

T0 = 1_000_000.0  # a multiple of 10: a tick of every(seconds=10)


@pytest.mark.parametrize("policy", ["skip", "catch_up"])
async def test_missed_ticks_are_counted_once_and_the_scheduler_sleeps(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(now=T0)
    app = Conveyor("memory://", environ={}, clock=clock, schedule_grace=3.0)
    missed = "skip" if policy == "skip" else catch_up(within=3.0)

    @app.task(schedule=[every(seconds=10, id="ten", missed=missed)])
    async def job() -> None: ...

    async with app:
        scheduler = Scheduler(app, refresh=60.0)
        await scheduler.run_pass()
        # the tick at T0; a code catch_up schedule is live from its first sight, T0 itself
        first = 1 if policy == "skip" else 0
        assert scheduler.stats.enqueued == first
        clock.advance(25.0)  # asleep across T0+10 and T0+20; the next tick is T0+30
        with caplog.at_level(logging.WARNING, logger="conveyor.scheduler"):
            delays = [await scheduler.run_pass() for _ in range(3)]
        assert scheduler.stats.missed == 2
        assert [r.getMessage() for r in caplog.records if "missed" in r.getMessage()] == [
            f"schedule 'ten': 2 run(s) missed, more than 3.0s late (policy {policy})"
        ]
        assert delays == [pytest.approx(5.0)] * 3  # until T0+30, not a 1 ms spin
        clock.advance(5.0)
        await scheduler.run_pass()
        assert scheduler.stats.enqueued == first + 1
        assert scheduler.stats.missed == 2
