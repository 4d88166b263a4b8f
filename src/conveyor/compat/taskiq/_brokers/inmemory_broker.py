"""``taskiq.brokers.inmemory_broker`` on Conveyor: ``InMemoryBroker``."""

from __future__ import annotations

from conveyor.compat.taskiq.brokers import InMemoryBroker as InMemoryBroker

__all__ = ["InMemoryBroker"]
