"""``taskiq.abc.middleware`` on Conveyor: ``TaskiqMiddleware``."""

from __future__ import annotations

from conveyor.compat.taskiq.retries import TaskiqMiddleware as TaskiqMiddleware

__all__ = ["TaskiqMiddleware"]
