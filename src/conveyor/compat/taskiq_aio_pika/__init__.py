"""taskiq-aio-pika's names on Conveyor: change ``taskiq_aio_pika`` to
``conveyor.compat.taskiq_aio_pika`` and keep the code.

>>> # from taskiq_aio_pika import AioPikaBroker                          (before)
>>> from conveyor.compat.taskiq_aio_pika import AioPikaBroker
>>> broker = AioPikaBroker("amqp://guest:guest@localhost:5672/")          # doctest: +SKIP

``AioPikaBroker`` is Conveyor's RabbitMQ broker (docs/rabbitmq.md); see
:mod:`conveyor.compat.taskiq.rabbitmq` for how its arguments map.
"""

from __future__ import annotations

from conveyor.compat.taskiq.rabbitmq import AioPikaBroker as AioPikaBroker
from conveyor.compat.taskiq.rabbitmq import Exchange as Exchange
from conveyor.compat.taskiq.rabbitmq import Queue as Queue
from conveyor.compat.taskiq.rabbitmq import QueueType as QueueType

__all__ = ["AioPikaBroker", "Exchange", "Queue", "QueueType"]
