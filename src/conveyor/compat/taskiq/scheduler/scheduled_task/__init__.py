"""``taskiq.scheduler.scheduled_task`` on Conveyor: ``ScheduledTask``."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import ScheduledTask as ScheduledTask

__all__ = ["ScheduledTask"]
