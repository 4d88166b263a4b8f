"""Testing tools shipped as product: a clock tests drive (:class:`ManualClock`) and the
broker conformance suite (``conveyor.testing.conformance``)."""

from conveyor.testing.clock import ManualClock as ManualClock

__all__ = ["ManualClock"]
