"""``taskiq.abc.schedule_source`` on Conveyor: ``ScheduleSource``."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import ScheduleSource as ScheduleSource

__all__ = ["ScheduleSource"]
