"""Deleting a whole namespace: every queue and exchange of a prefix, and its records.

Tests make a fresh prefix per test and delete it after; an operator can retire an app's
prefix the same way.
"""

from __future__ import annotations

from conveyor.brokers.base import BrokerOptions
from conveyor.brokers.rabbitmq.topology import DELAY_LEVELS

__all__ = ["delete_namespace"]


async def delete_namespace(
    url: str, result_url: str | None = None, queues: tuple[str, ...] = ("default",)
) -> None:
    """Delete the queues, DLQs and delay cascade of the URL's ``prefix`` on RabbitMQ, and
    every Redis key under that prefix in its record store (``results=``). ``queues`` are
    deleted even when no record names them.

    >>> await delete_namespace("amqp://guest:guest@localhost/?prefix=test-1",
    ...                        "redis://localhost:6379/0")     # doctest: +SKIP
    """
    from conveyor.brokers.rabbitmq.broker import RabbitMQBroker

    broker = RabbitMQBroker(url, BrokerOptions(queues=(), result_url=result_url))
    await broker.connect()
    try:
        names = broker.names
        known = set(queues)
        records = broker.records_or_none
        if records is not None:
            known |= set(await records.queues())
        session = await broker.session()
        channel = session.publisher
        for queue in sorted(known):
            await channel.queue_delete(names.work(queue))
            await channel.queue_delete(names.work(queue, high=True))
            await channel.queue_delete(names.dlq(queue))
            await channel.exchange_delete(names.dlx(queue))
        await channel.queue_delete(names.intake)
        await channel.queue_delete(names.ledger)
        for level in range(DELAY_LEVELS):
            await channel.queue_delete(names.delay(level))
            await channel.exchange_delete(names.delay(level))
        await channel.exchange_delete(names.delay_out)
        if records is not None:
            await records.delete_all()
    finally:
        await broker.close()
