"""Scheduling: cron, intervals and one-off runs, fired exactly once per tick by any number
of scheduler processes (G7). See docs/scheduling.md.

The schedule definitions load with ``import conveyor``; the scheduler loop and the book
of dynamic schedules load when first used, so a process that only enqueues does not pay
for them.
"""

from typing import TYPE_CHECKING, Any

from conveyor.scheduler.schedule import CatchUp as CatchUp
from conveyor.scheduler.schedule import Schedule as Schedule
from conveyor.scheduler.schedule import at as at
from conveyor.scheduler.schedule import catch_up as catch_up
from conveyor.scheduler.schedule import cron as cron
from conveyor.scheduler.schedule import every as every
from conveyor.scheduler.triggers import InvalidSchedule as InvalidSchedule

if TYPE_CHECKING:
    from conveyor.scheduler.book import ScheduleBook as ScheduleBook
    from conveyor.scheduler.book import ScheduleInfo as ScheduleInfo
    from conveyor.scheduler.book import UnknownSchedule as UnknownSchedule
    from conveyor.scheduler.loop import Scheduler as Scheduler
    from conveyor.scheduler.loop import SchedulerStats as SchedulerStats
    from conveyor.scheduler.loop import Tick as Tick

_LAZY = {
    "ScheduleBook": "conveyor.scheduler.book",
    "ScheduleInfo": "conveyor.scheduler.book",
    "UnknownSchedule": "conveyor.scheduler.book",
    "Scheduler": "conveyor.scheduler.loop",
    "SchedulerStats": "conveyor.scheduler.loop",
    "Tick": "conveyor.scheduler.loop",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.scheduler' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CatchUp",
    "InvalidSchedule",
    "Schedule",
    "ScheduleBook",
    "ScheduleInfo",
    "Scheduler",
    "SchedulerStats",
    "Tick",
    "UnknownSchedule",
    "at",
    "catch_up",
    "cron",
    "every",
]
