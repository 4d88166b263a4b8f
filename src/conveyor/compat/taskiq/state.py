"""``taskiq.state`` on Conveyor: ``TaskiqState``."""

from __future__ import annotations

from conveyor.compat.taskiq.context import TaskiqState as TaskiqState

__all__ = ["TaskiqState"]
