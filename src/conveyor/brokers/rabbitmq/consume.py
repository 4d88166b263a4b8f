"""Consuming: RabbitMQ pushes messages to this process's consumers (manual acks), and a
fetch takes them from the :class:`Inbox`.

One channel consumes for the whole process. The consumers of each queue have a prefetch
of what the worker can take: its free slots plus the deliveries it holds, so RabbitMQ
never parks more unacknowledged messages here than the worker asked for. A fetch that
asks for more (a bigger worker) adds consumers with the difference as their prefetch:
cancelling a consumer of a quorum queue would hand its unacknowledged messages back, and
break the leases of the tasks running from them.
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
    """A message RabbitMQ delivered to a consumer of ``queue`` (a Conveyor queue; its
    AMQP queue ``source``) in one session."""

    queue: str
    source: str
    session: Session
    message: DeliveredMessage

    @property
    def delivery_tag(self) -> int:
        tag = getattr(self.message.delivery, "delivery_tag", None)
        assert isinstance(tag, int)
        return tag


class Inbox:
    """Delivered messages waiting for a fetch, per AMQP queue in arrival order."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Incoming]] = {}  # AMQP queue -> its messages
        self._arrived: asyncio.Event | None = None
        self._interrupted = False

    @property
    def _event(self) -> asyncio.Event:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived

    def put(self, item: Incoming) -> None:
        self._queues.setdefault(item.source, deque()).append(item)
        self._event.set()

    def take(self, sources: Sequence[str], count: int) -> list[Incoming]:
        """Up to ``count`` messages of the AMQP queues ``sources``, in the order given;
        messages of a session that died are discarded (RabbitMQ requeued them)."""
        self._event.clear()
        out: list[Incoming] = []
        for source in sources:
            waiting = self._queues.get(source)
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
        self._prefetch: dict[str, int] = {}  # AMQP queue -> prefetch of its consumers
        self.prefetch = 0

    async def ensure(self, session: Session, queues: dict[str, str], want: int) -> None:
        """Consume ``queues`` (AMQP queue -> its Conveyor queue) on ``session`` with a
        prefetch of at least ``want`` each."""
        if self._session is not session:
            self._session, self._prefetch = session, {}
        self.prefetch = max(self.prefetch, want)
        channel = session.consumer
        qos = None
        for source, queue in queues.items():
            extra = self.prefetch - self._prefetch.get(source, 0)
            if extra <= 0:
                continue
            if qos != extra:  # per consumer, for the consumers started after it
                await channel.basic_qos(prefetch_count=extra)
                qos = extra
            await channel.basic_consume(source, self._on_message(queue, source, session))
            self._prefetch[source] = self.prefetch

    def _on_message(
        self, queue: str, source: str, session: Session
    ) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
        inbox = self._inbox

        async def deliver(message: DeliveredMessage) -> None:
            inbox.put(Incoming(queue, source, session, message))

        return deliver
