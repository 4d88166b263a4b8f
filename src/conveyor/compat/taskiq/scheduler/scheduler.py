"""``taskiq.scheduler.scheduler`` on Conveyor: ``ScheduledTask``, ``TaskiqScheduler``."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import ScheduledTask as ScheduledTask
from conveyor.compat.taskiq.schedules import TaskiqScheduler as TaskiqScheduler

__all__ = ["ScheduledTask", "TaskiqScheduler"]
