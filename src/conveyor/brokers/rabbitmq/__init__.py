"""``amqp://`` and ``amqps://``: the RabbitMQ broker, on aio-pika (docs/rabbitmq.md).

Messages live in RabbitMQ: quorum queues by default (``?queue_type=classic`` for classic
ones), persistent, published with publisher confirms and ``mandatory`` (an enqueue returns
once RabbitMQ took responsibility; an unroutable or refused one raises), consumed with
manual acks. Delays go through a cascade of TTL queues (``topology.py``), dead letters
to a DLQ per queue.

What RabbitMQ cannot tell (where a task is, its attempts, its idempotency key, its abort
mark) is kept as task records in Redis, beside the results (``records.py``); so are
heartbeats, task counts, schedules and the event log. Give the app a Redis result store::

    Conveyor("amqp://guest:guest@localhost:5672/", results="redis://localhost:6379/0")

Without one, tasks run fire-and-forget.

URL: ``amqp://user:password@host:5672/vhost?prefix=conveyor`` (the parameters are in
``settings.py``).
"""

from conveyor.brokers.rabbitmq.broker import RabbitMQBroker as RabbitMQBroker
from conveyor.brokers.rabbitmq.broker import RabbitMQResultStore as RabbitMQResultStore
from conveyor.brokers.rabbitmq.cleanup import delete_namespace as delete_namespace

__all__ = ["RabbitMQBroker", "RabbitMQResultStore", "delete_namespace"]
