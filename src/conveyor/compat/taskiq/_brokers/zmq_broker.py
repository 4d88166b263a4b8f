"""``taskiq.brokers.zmq_broker`` on Conveyor: ``ZeroMQBroker`` (on the embedded broker)."""

from __future__ import annotations

from conveyor.compat.taskiq.brokers import ZeroMQBroker as ZeroMQBroker

__all__ = ["ZeroMQBroker"]
