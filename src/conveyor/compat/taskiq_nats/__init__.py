"""taskiq-nats' names on Conveyor: change ``taskiq_nats`` to
``conveyor.compat.taskiq_nats`` and keep the code.

>>> # from taskiq_nats import PullBasedJetStreamBroker                   (before)
>>> from conveyor.compat.taskiq_nats import PullBasedJetStreamBroker
>>> broker = PullBasedJetStreamBroker(["nats://localhost:4222"])          # doctest: +SKIP

The brokers are Conveyor's NATS JetStream broker (docs/nats.md); see
:mod:`conveyor.compat.taskiq.taskiq_nats` for how their arguments map.
"""

from __future__ import annotations

from conveyor.compat.taskiq.taskiq_nats import NatsBroker as NatsBroker
from conveyor.compat.taskiq.taskiq_nats import PullBasedJetStreamBroker as PullBasedJetStreamBroker
from conveyor.compat.taskiq.taskiq_nats import PushBasedJetStreamBroker as PushBasedJetStreamBroker

__all__ = ["NatsBroker", "PullBasedJetStreamBroker", "PushBasedJetStreamBroker"]
