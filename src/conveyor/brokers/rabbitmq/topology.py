"""The queues and exchanges of one prefix, their arguments, and declaring them.

==========================  ==================  ===========================================
name                        kind                holds
==========================  ==================  ===========================================
``<p>.<queue>``             quorum queue        ready messages of one Conveyor queue
                            (or classic)        (``x-delivery-limit``; what RabbitMQ
                                                dead-letters goes to ``.dlx``, at least
                                                once)
``<p>.<queue>.high``        quorum queue        the same for messages of priority > 0
                                                (quorum queues have no priorities before
                                                RabbitMQ 4: a consumer takes this band
                                                first); classic queues have none, they
                                                use ``x-max-priority``
``<p>.<queue>.dlx``         fanout exchange     RabbitMQ's own dead letters of the queue:
                                                to its ``.dlq`` and to ``dead.intake``
``<p>.<queue>.dlq``         quorum queue        dead letters: the raw body, with the
                                                reason, attempts and time in headers
``<p>.dead.intake``         quorum queue        a copy of each of RabbitMQ's own dead
                                                letters, until a worker's reap has
                                                marked its task dead in the records
``<p>.delay.<k>``           headers exchange    level k of the delay cascade (below)
``<p>.delay.<k>``           quorum queue        messages waiting 2^k ms (``x-message-ttl``),
                                                then dead-lettered to level k-1
``<p>.delay.out``           headers exchange    the end of the cascade: routes on header
                                                ``conveyor-target`` to a work queue
==========================  ==================  ===========================================

Delays (no plugin needed). A delay of ``d`` ms is written in binary; the message carries
one header per bit (``d0``...``d35``, ``"0"``/``"1"``) and is published to the exchange of
its highest bit. Exchange ``k`` routes a message whose bit ``k`` is 1 to queue ``k``,
where it waits ``2^k`` ms and is then dead-lettered to exchange ``k-1``; a 0 bit passes
straight to exchange ``k-1``. After level 0 the message reaches ``delay.out`` and its work
queue, ``d`` ms after it was published. Every level queue holds messages of one TTL, so
the queue's head always expires first: no message waits behind a longer one. Levels are
declared when first used (36 levels cover a year; a longer delay is re-delayed when it
surfaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

__all__ = ["DELAY_LEVELS", "Names", "Topology", "delay_headers"]

DELAY_LEVELS = 36
"""Levels of the delay cascade: 2^0 ms ... 2^35 ms, about 1.09 years in all."""
MAX_DELAY_MS = 2**DELAY_LEVELS - 1
# the header the end of the cascade routes on: no "x-" prefix, which headers exchanges
# leave out of their matching (a binding on it would match every message)
TARGET = "conveyor-target"


@dataclass(frozen=True, slots=True)
class Names:
    """The AMQP names of one prefix."""

    prefix: str

    def work(self, queue: str, high: bool = False) -> str:
        """The work queue of ``queue``; ``high``: its band for priorities above 0."""
        return f"{self.prefix}.{queue}.high" if high else f"{self.prefix}.{queue}"

    def dlq(self, queue: str) -> str:
        return f"{self.prefix}.{queue}.dlq"

    def dlx(self, queue: str) -> str:
        return f"{self.prefix}.{queue}.dlx"

    @property
    def intake(self) -> str:
        return f"{self.prefix}.dead.intake"

    def delay(self, level: int) -> str:
        """Level ``level``'s exchange and queue (they share the name)."""
        return f"{self.prefix}.delay.{level}"

    @property
    def ledger(self) -> str:
        """The stream of task records kept without a Redis store (``ledger.py``)."""
        return f"{self.prefix}.ledger"

    @property
    def delay_out(self) -> str:
        return f"{self.prefix}.delay.out"


def delay_headers(delay_ms: int) -> tuple[int, dict[str, str]]:
    """(level of the highest bit, the bit headers) for a delay of ``delay_ms`` >= 1 ms,
    capped at :data:`MAX_DELAY_MS`."""
    delay_ms = min(max(delay_ms, 1), MAX_DELAY_MS)
    top = delay_ms.bit_length() - 1
    return top, {f"d{k}": "1" if delay_ms >> k & 1 else "0" for k in range(top + 1)}


@dataclass
class Topology:
    """Declares what a prefix needs, once per process: declarations are idempotent and
    the objects durable, so what this process declared stays declared."""

    names: Names
    quorum: bool
    delivery_limit: int
    max_priority: int
    consumer_timeout_ms: int | None
    declared: set[str] = field(default_factory=set)

    def work_arguments(self, queue: str) -> dict[str, Any]:
        """A work queue's arguments: what RabbitMQ dead-letters goes to its ``.dlx``;
        quorum queues dead-letter at least once (``reject-publish``: a full target
        refuses rather than drops) and stop a message after ``delivery_limit``
        deliveries."""
        args: dict[str, Any] = {"x-dead-letter-exchange": self.names.dlx(queue)}
        if self.quorum:
            args |= {
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        else:
            args["x-max-priority"] = self.max_priority
        if self.consumer_timeout_ms is not None:
            args["x-consumer-timeout"] = self.consumer_timeout_ms
        return args

    def _plain(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self.quorum else {}

    def bands(self, queue: str) -> list[str]:
        """The work queues of ``queue``, the one consumers take first first: on quorum
        queues the band of priorities above 0, then the rest; a classic queue is one."""
        names = self.names
        return (
            [names.work(queue, high=True), names.work(queue)]
            if self.quorum
            else [names.work(queue)]
        )

    def route(self, queue: str, priority: int) -> str:
        """The work queue a message of ``priority`` goes to."""
        return self.names.work(queue, high=self.quorum and priority > 0)

    async def queue(self, channel: AbstractChannel, queue: str) -> None:
        """Declare ``queue``'s work queues, its dead-letter exchange, DLQ and the intake,
        and bind the work queues to the delay cascade's end."""
        work = self.names.work(queue)
        if work in self.declared:
            return
        dlx = await channel.declare_exchange(
            self.names.dlx(queue), aio_pika.ExchangeType.FANOUT, durable=True
        )
        for name in (self.names.dlq(queue), self.names.intake):
            target = await channel.declare_queue(name, durable=True, arguments=self._plain())
            await target.bind(dlx)
        out = await channel.declare_exchange(
            self.names.delay_out, aio_pika.ExchangeType.HEADERS, durable=True
        )
        for band in self.bands(queue):
            declared = await channel.declare_queue(
                band, durable=True, arguments=self.work_arguments(queue)
            )
            await declared.bind(out, arguments={"x-match": "all", TARGET: band})
        self.declared.add(work)

    async def delay_level(self, channel: AbstractChannel, top: int) -> None:
        """Declare the cascade from level ``top`` down to ``delay.out``."""
        names = self.names
        below = await channel.declare_exchange(
            names.delay_out, aio_pika.ExchangeType.HEADERS, durable=True
        )
        for level in range(top + 1):
            name = names.delay(level)
            if name in self.declared:
                below = await channel.get_exchange(name, ensure=False)
                continue
            exchange = await channel.declare_exchange(
                name, aio_pika.ExchangeType.HEADERS, durable=True
            )
            args: dict[str, Any] = {
                "x-message-ttl": 2**level,
                "x-dead-letter-exchange": below.name,
            }
            if self.quorum:  # at-least-once: a message leaves only once the next took it
                args |= {
                    "x-queue-type": "quorum",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            waiting = await channel.declare_queue(name, durable=True, arguments=args)
            await waiting.bind(exchange, arguments={"x-match": "all", f"d{level}": "1"})
            await below.bind(exchange, arguments={"x-match": "all", f"d{level}": "0"})
            self.declared.add(name)
            below = exchange
