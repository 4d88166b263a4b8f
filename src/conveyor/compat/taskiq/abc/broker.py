"""``taskiq.abc.broker`` on Conveyor: ``AsyncBroker``, ``AsyncTaskiqDecoratedTask``."""

from __future__ import annotations

from conveyor.compat.taskiq.brokers import AsyncBroker as AsyncBroker
from conveyor.compat.taskiq.tasks import AsyncTaskiqDecoratedTask as AsyncTaskiqDecoratedTask

__all__ = ["AsyncBroker", "AsyncTaskiqDecoratedTask"]
