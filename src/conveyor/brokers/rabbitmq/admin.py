"""What ``conveyor status``, ``conveyor dlq`` and the dashboard read and change: queue
depths, and the dead-letter queues (``<prefix>.<queue>.dlq``).

AMQP has no way to read a queue without taking its messages, so the dead letters are
*browsed*: a channel of its own takes up to :data:`BROWSE_LIMIT` of them unacknowledged,
acknowledges those it deletes or requeues, and closes, which returns the rest to the
queue in their order. Two browsers at the same moment see each other's share missing;
the dead letters themselves are never at risk.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from conveyor.brokers.base import DeadLetterEntry, QueueDepth
from conveyor.brokers.rabbitmq.broker import RabbitMQBroker
from conveyor.brokers.rabbitmq.broker import header_int as _int

__all__ = [
    "BROWSE_LIMIT",
    "bury_dead",
    "dead_letters",
    "delete_dead",
    "queue_depths",
    "rabbitmq_death",
    "requeue_dead",
]

BROWSE_LIMIT = 10_000
"""Dead letters read per queue by one browse (list, show, requeue, delete)."""


async def queue_depths(broker: RabbitMQBroker) -> list[QueueDepth]:
    """Ready and dead from RabbitMQ's queue counts; delayed and running from the records."""
    queues = await _queues(broker)
    counts: list[tuple[int, int]] = [(0, 0)] * len(queues)
    records = broker.records_or_none
    if records is not None:
        counts = await records.counts(queues, _now_ms())
    depths = []
    async with _browsing(broker) as channel:
        for queue, (delayed, running) in zip(queues, counts, strict=True):
            ready = 0
            for band in broker.bands(queue):
                ready += (await channel.queue_declare(band, passive=True)).message_count or 0
            dead = await channel.queue_declare(broker.names.dlq(queue), passive=True)
            depths.append(
                QueueDepth(
                    queue,
                    ready=ready,
                    delayed=delayed,
                    running=running,
                    dead=dead.message_count or 0,
                )
            )
    return depths


async def dead_letters(
    broker: RabbitMQBroker, queue: str | None, limit: int, offset: int
) -> list[DeadLetterEntry]:
    """The dead letters of ``queue`` (or of all), newest first."""
    entries: list[DeadLetterEntry] = []
    async with _browsing(broker) as channel:
        for name in [queue] if queue else await _queues(broker):
            entries += await _entries(broker, name, await _browse(broker, channel, name))
    entries.reverse()  # newest first, and among equal times the later in the queue
    entries.sort(key=lambda e: e.failed_at, reverse=True)
    return entries[offset : offset + limit]


async def requeue_dead(broker: RabbitMQBroker, entry_ids: Sequence[str]) -> int:
    """Publish these dead letters back to their queue (their record waits again, attempts
    reset), then take them out of the DLQ. A task id dead-lettered twice is requeued once
    and its other copy deleted."""
    wanted = set(entry_ids)
    moved: set[str] = set()
    records = broker.records_or_none
    session = await broker.session()
    async with _browsing(broker) as channel:
        for queue in await _queues(broker):
            for message in await _browse(broker, channel, queue):
                task_id = message.header.properties.message_id
                if task_id not in wanted:
                    continue
                if task_id not in moved:
                    priority = _int(_headers(message).get("x-conveyor-priority"))
                    copy = 1
                    if records is not None:
                        (copy,) = await records.requeue([(task_id, queue, priority, message.body)])
                    await broker.send(session, queue, task_id, message.body, priority, copy)
                    moved.add(task_id)
                await channel.basic_ack(_tag(message))
    return len(moved)


async def delete_dead(
    broker: RabbitMQBroker, entry_ids: Sequence[str] | None, queue: str | None
) -> int:
    """Delete these dead letters (all of ``queue``, or of every queue, when ids is None)."""
    wanted = None if entry_ids is None else set(entry_ids)
    deleted: list[str] = []
    async with _browsing(broker) as channel:
        for name in [queue] if queue else await _queues(broker):
            for message in await _browse(broker, channel, name):
                task_id = message.header.properties.message_id or ""
                if wanted is None or task_id in wanted:
                    await channel.basic_ack(_tag(message))
                    deleted.append(task_id)
    records = broker.records_or_none
    if records is not None:
        await records.forget(deleted)
    return len(deleted)


async def _queues(broker: RabbitMQBroker) -> list[str]:
    known = set(broker.declared_queues)
    records = broker.records_or_none
    if records is not None:
        known |= set(await records.queues())
    session = await broker.session()
    for queue in known:  # a queue the records know may predate this process
        await broker.declare(session, queue)
    return sorted(known)


@contextlib.asynccontextmanager
async def _browsing(broker: RabbitMQBroker) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    """A channel of its own; closing it returns every message it did not acknowledge."""
    session = await broker.session()
    channel = await session.connection.channel(publisher_confirms=False)
    try:
        yield await channel.get_underlay_channel()
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def _browse(
    broker: RabbitMQBroker, channel: aiormq.abc.AbstractChannel, queue: str
) -> list[DeliveredMessage]:
    out = []
    for _ in range(BROWSE_LIMIT):
        message = await channel.basic_get(broker.names.dlq(queue), no_ack=False)
        if isinstance(message.delivery, spec.Basic.GetEmpty):
            break
        out.append(message)
    return out


async def _entries(
    broker: RabbitMQBroker, queue: str, messages: Sequence[DeliveredMessage]
) -> list[DeadLetterEntry]:
    ids = [m.header.properties.message_id or "" for m in messages]
    known: list[int | None] = [None] * len(messages)
    records = broker.records_or_none
    if records is not None and messages:
        known = await records.attempts(ids)
    return [
        _entry(broker, queue, task_id, message, attempts)
        for task_id, message, attempts in zip(ids, messages, known, strict=True)
    ]


def _entry(
    broker: RabbitMQBroker,
    queue: str,
    task_id: str,
    message: DeliveredMessage,
    attempts: int | None,
) -> DeadLetterEntry:
    """An entry from a dead letter's headers: ours (reason, attempts, time), or, for a
    message RabbitMQ dead-lettered itself, its ``x-death`` record."""
    headers = _headers(message)
    reason = headers.get("x-conveyor-reason")
    failed_at = _int(headers.get("x-conveyor-failed-at")) / 1000.0
    if reason is None:
        reason, failed_at = rabbitmq_death(headers, broker.settings.delivery_limit)
    tries = headers.get("x-conveyor-attempts")
    return DeadLetterEntry(
        id=task_id,
        queue=queue,
        body=message.body,
        reason=reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason),
        attempts=_int(tries) if tries is not None else (attempts or 0),
        failed_at=failed_at,
    )


def rabbitmq_death(headers: dict[str, Any], delivery_limit: int) -> tuple[str, float]:
    """The reason and time of a message RabbitMQ dead-lettered itself (its newest
    ``x-death`` record)."""
    deaths = [d for d in headers.get("x-death") or [] if isinstance(d, dict)]
    why = str(deaths[0].get("reason", "unknown")) if deaths else "unknown"
    if why == "delivery_limit":
        reason = (
            f"poison: RabbitMQ's delivery limit ({delivery_limit}) reached: the workers "
            "that took it kept dying or handing it back"
        )
    else:
        reason = f"dead-lettered by RabbitMQ ({why})"
    when = deaths[0].get("time") if deaths else None
    return reason, when.timestamp() if isinstance(when, datetime.datetime) else time.time()


async def bury_dead(broker: RabbitMQBroker, limit: int = 100) -> int:
    """Take up to ``limit`` of RabbitMQ's own dead letters from the intake and mark their
    tasks dead in the records (the DLQ holds the dead letters themselves). Each worker
    does this when it reaps; returns how many intake messages it took."""
    records = broker.records_or_none
    if records is None:
        return 0
    taken: list[DeliveredMessage] = []
    async with _browsing(broker) as channel:
        for _ in range(limit):
            message = await channel.basic_get(broker.names.intake, no_ack=False)
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                break
            taken.append(message)
        dead = [
            (task_id, rabbitmq_death(_headers(m), broker.settings.delivery_limit)[0])
            for m in taken
            if (task_id := m.header.properties.message_id)
        ]
        await records.bury(dead)
        for message in taken:
            await channel.basic_ack(_tag(message))
    return len(taken)


def _headers(message: DeliveredMessage) -> dict[str, Any]:
    return dict(message.header.properties.headers or {})


def _tag(message: DeliveredMessage) -> int:
    tag = getattr(message.delivery, "delivery_tag", None)
    assert isinstance(tag, int)
    return tag


def _now_ms() -> int:
    return int(time.time() * 1000)
