"""``taskiq.decor`` on Conveyor: ``AsyncTaskiqDecoratedTask``."""

from __future__ import annotations

from conveyor.compat.taskiq.tasks import AsyncTaskiqDecoratedTask as AsyncTaskiqDecoratedTask

__all__ = ["AsyncTaskiqDecoratedTask"]
