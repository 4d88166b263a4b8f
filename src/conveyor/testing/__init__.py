"""Testing tools shipped as product: a clock tests drive (:class:`ManualClock`), the broker
conformance suite (``conveyor.testing.conformance``), the worker-level behaviour suite
(``conveyor.testing.behaviour``) and a pytest plugin that runs both on a broker of yours
(``pytest -p conveyor.testing.plugin``; docs/write-a-broker.md)."""

from conveyor.testing.clock import ManualClock as ManualClock

__all__ = ["ManualClock"]
