"""``taskiq.task`` on Conveyor: ``AsyncTaskiqTask``."""

from __future__ import annotations

from conveyor.compat.taskiq.results import AsyncTaskiqTask as AsyncTaskiqTask

__all__ = ["AsyncTaskiqTask"]
