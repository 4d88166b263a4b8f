"""``taskiq.abc.result_backend`` on Conveyor: ``AsyncResultBackend``, ``TaskiqResult``."""

from __future__ import annotations

from conveyor.compat.taskiq.results import AsyncResultBackend as AsyncResultBackend
from conveyor.compat.taskiq.results import TaskiqResult as TaskiqResult

__all__ = ["AsyncResultBackend", "TaskiqResult"]
