"""Consuming: RabbitMQ pushes messages to this process's consumers (manual acks), and a
fetch takes them from the :class:`Inbox`.

One channel consumes for the whole process (one consumer per queue on it). Each
consumer's prefetch is what the worker can take: its free slots plus the deliveries it
holds, so RabbitMQ never parks more unacknowledged messages here than the worker asked
for. A fetch that asks for more than that (a bigger worker) restarts the consumers with
the larger prefetch; messages already delivered stay valid to acknowledge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiormq.abc import DeliveredMessage

from conveyor.brokers.rabbitmq.connection import Session

__all__ = ["Consumers", "Inbox", "Incoming"]


@dataclass(eq=False, slots=True)
class Incoming:
    """A message RabbitMQ delivered to a consumer of ``queue`` in one session."""

    queue: str
    session: Session
    message: DeliveredMessage

    @property
    def delivery_tag(self) -> int:
        tag = getattr(self.message.delivery, "delivery_tag", None)
        assert isinstance(tag, int)
        return tag


class Inbox:
    """Delivered messages waiting for a fetch, per queue in arrival order."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Incoming]] = {}
        self._arrived: asyncio.Event | None = None
        self._interrupted = False

    @property
    def _event(self) -> asyncio.Event:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived

    def put(self, item: Incoming) -> None:
        self._queues.setdefault(item.queue, deque()).append(item)
        self._event.set()

    def take(self, queues: Sequence[str], count: int) -> list[Incoming]:
        """Up to ``count`` messages of ``queues``, in the order the queues are given;
        messages of a session that died are discarded (RabbitMQ requeued them)."""
        self._event.clear()
        out: list[Incoming] = []
        for queue in queues:
            waiting = self._queues.get(queue)
            while waiting and len(out) < count:
                item = waiting.popleft()
                if item.session.alive:
                    out.append(item)
        return out

    def take_interrupt(self) -> bool:
        interrupted, self._interrupted = self._interrupted, False
        return interrupted

    def interrupt(self) -> None:
        self._interrupted = True
        self._event.set()

    def wake(self) -> None:
        """Wake a waiting fetch without an item (its session died)."""
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a message, an interrupt or a wake-up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(timeout, 0.0))

    def drain(self) -> list[Incoming]:
        """Every message still waiting (at close)."""
        out = [item for waiting in self._queues.values() for item in waiting]
        self._queues.clear()
        return out


class Consumers:
    """The consumers of one session, one per queue, with a prefetch that grows with the
    worker's demand."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._session: Session | None = None
        self._tags: dict[str, str] = {}
        self.prefetch = 0

    async def ensure(self, session: Session, queues: dict[str, str], want: int) -> None:
        """Consume ``queues`` (Conveyor queue -> AMQP queue) on ``session`` with a
        prefetch of at least ``want``."""
        if self._session is not session:
            self._session, self._tags, self.prefetch = session, {}, 0
        channel = session.consumer
        if want > self.prefetch:
            for tag in list(self._tags.values()):
                await channel.basic_cancel(tag)
            self._tags.clear()
            self.prefetch = want
            await channel.basic_qos(prefetch_count=want)
        for queue, amqp_queue in queues.items():
            if queue not in self._tags:
                ok = await channel.basic_consume(amqp_queue, self._on_message(queue, session))
                assert ok.consumer_tag is not None
                self._tags[queue] = ok.consumer_tag

    def _on_message(
        self, queue: str, session: Session
    ) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
        inbox = self._inbox

        async def deliver(message: DeliveredMessage) -> None:
            inbox.put(Incoming(queue, session, message))

        return deliver
