"""``taskiq.events`` on Conveyor: ``TaskiqEvents``."""

from __future__ import annotations

from conveyor.compat.taskiq.context import TaskiqEvents as TaskiqEvents

__all__ = ["TaskiqEvents"]
