"""``taskiq.schedule_sources`` on Conveyor: ``LabelScheduleSource``."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import LabelScheduleSource as LabelScheduleSource

__all__ = ["LabelScheduleSource"]
