"""``taskiq.scheduler.created_schedule`` on Conveyor: ``CreatedSchedule``."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import CreatedSchedule as CreatedSchedule

__all__ = ["CreatedSchedule"]
