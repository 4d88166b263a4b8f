"""``taskiq.result`` on Conveyor: ``TaskiqResult``."""

from __future__ import annotations

from conveyor.compat.taskiq.results import TaskiqResult as TaskiqResult

__all__ = ["TaskiqResult"]
