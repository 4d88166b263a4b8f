"""``taskiq.abc`` on Conveyor: ``AsyncBroker``, ``AsyncResultBackend``."""

from __future__ import annotations

from conveyor.compat.taskiq.brokers import AsyncBroker as AsyncBroker
from conveyor.compat.taskiq.results import AsyncResultBackend as AsyncResultBackend

__all__ = ["AsyncBroker", "AsyncResultBackend"]
