"""Scheduling: cron, intervals and one-off runs, fired exactly once per tick by any number
of scheduler processes (G7). See docs/scheduling.md."""

from conveyor.scheduler.book import ScheduleBook as ScheduleBook
from conveyor.scheduler.book import ScheduleInfo as ScheduleInfo
from conveyor.scheduler.book import UnknownSchedule as UnknownSchedule
from conveyor.scheduler.loop import Scheduler as Scheduler
from conveyor.scheduler.loop import SchedulerStats as SchedulerStats
from conveyor.scheduler.loop import Tick as Tick
from conveyor.scheduler.schedule import CatchUp as CatchUp
from conveyor.scheduler.schedule import Schedule as Schedule
from conveyor.scheduler.schedule import at as at
from conveyor.scheduler.schedule import catch_up as catch_up
from conveyor.scheduler.schedule import cron as cron
from conveyor.scheduler.schedule import every as every
from conveyor.scheduler.triggers import InvalidSchedule as InvalidSchedule

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
