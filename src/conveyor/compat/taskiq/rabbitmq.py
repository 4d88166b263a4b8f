"""taskiq-aio-pika's ``AioPikaBroker`` on Conveyor's RabbitMQ broker (``amqp://``).

>>> broker = AioPikaBroker("amqp://guest:guest@localhost:5672/").with_result_backend(
...     RedisAsyncResultBackend("redis://localhost:6379")
... )                                                                   # doctest: +SKIP

Both generations of taskiq-aio-pika's arguments are understood: ``queue_name=`` and
``max_priority=`` (before 0.5), and ``task_queues=[Queue(name=..., type=...)]`` (0.5 on;
``Queue``, ``QueueType`` and ``Exchange`` are here too, for ``from ... import``).

Task records and results live in the result backend's Redis (docs/rabbitmq.md); without
``with_result_backend()`` the broker runs fire-and-forget and ``wait_result()`` says how
to add one, where taskiq would silently return nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from conveyor.app import Conveyor, broker_options
from conveyor.brokers import broker_class_for
from conveyor.compat.taskiq._options import _note_ignored
from conveyor.compat.taskiq.brokers import AsyncBroker
from conveyor.compat.taskiq.results import AsyncResultBackend
from conveyor.errors import ConfigurationError

__all__ = ["AioPikaBroker", "Exchange", "Queue", "QueueType"]

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"


class QueueType(enum.StrEnum):
    """taskiq-aio-pika's queue types; ``stream`` is refused (a stream is not a work queue)."""

    QUORUM = "quorum"
    CLASSIC = "classic"
    STREAM = "stream"


@dataclass(frozen=True)
class Queue:
    """taskiq-aio-pika's queue description: ``name``, ``type`` and ``max_priority`` are
    used (the Conveyor queue, its RabbitMQ type); the rest is accepted and ignored."""

    name: str = "taskiq"
    type: QueueType = QueueType.QUORUM
    max_priority: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        name: str = "taskiq",
        type: QueueType | str = QueueType.QUORUM,  # taskiq-aio-pika names it so
        max_priority: int | None = None,
        **options: Any,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", QueueType(type))
        object.__setattr__(self, "max_priority", max_priority)
        object.__setattr__(self, "options", options)


@dataclass(frozen=True)
class Exchange:
    """taskiq-aio-pika's exchange description: accepted and ignored (the layout is
    Conveyor's)."""

    name: str = "taskiq"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, name: str = "taskiq", **options: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", options)


class AioPikaBroker(AsyncBroker):
    """taskiq-aio-pika's broker: ``url`` (``amqp://`` or ``amqps://``; Conveyor's own
    parameters, ``?prefix=``..., may be added), ``result_backend`` (or
    ``.with_result_backend()``), ``queue_name`` or ``task_queues`` (the Conveyor queues
    it serves, the first one the default; Conveyor's ``default`` when not given), ``qos``
    (the prefetch, so the worker's concurrency) and ``max_priority`` or a classic
    ``Queue`` (priorities need classic queues: they are declared classic, with
    ``x-max-priority``). Labels ``delay`` and ``priority`` work as in taskiq.

    The exchange and queue layout is Conveyor's (quorum queues, a DLQ per queue, delays
    without a plugin): ``exchange``/``exchange_name``, ``routing_key``, the dead-letter
    and delay queues, ``declare_*``, ``delayed_message_exchange_plugin``, the routing and
    priority label names and connection keywords are accepted and ignored.
    """

    def __init__(
        self,
        url: str | None = None,
        result_backend: AsyncResultBackend[Any] | None = None,
        *,
        qos: int = 10,
        queue_name: str | None = None,
        max_priority: int | None = None,
        task_queues: Sequence[Queue] | None = None,
        **options: Any,
    ) -> None:
        _note_ignored(type(self).__name__, options)
        queues = [queue_name] if queue_name is not None else []
        classic = max_priority is not None
        for queue in task_queues or ():
            if queue.type is QueueType.STREAM:
                raise ConfigurationError(
                    f"AioPikaBroker: queue {queue.name!r} is a stream; Conveyor consumes "
                    "work queues (quorum or classic)"
                )
            queues.append(queue.name)
            classic = classic or queue.type is QueueType.CLASSIC
            max_priority = queue.max_priority if queue.max_priority is not None else max_priority
        url = url or DEFAULT_URL
        if classic:
            parts = urlsplit(url)
            extra = "queue_type=classic" + (
                "" if max_priority is None else f"&max_priority={int(max_priority)}"
            )
            url = urlunsplit(
                parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra)
            )
        settings: dict[str, Any] = {"concurrency": qos}
        if queues:
            settings |= {"default_queue": queues[0], "queues": tuple(dict.fromkeys(queues))}
        super().__init__(result_backend, conveyor=Conveyor(url, **settings))

    def with_result_backend(self, result_backend: AsyncResultBackend[Any]) -> Self:
        """Attach ``result_backend``; a Redis one also keeps the broker's task records,
        so the broker is made again with it (before anything connects)."""
        super().with_result_backend(result_backend)
        app = self.conveyor
        url = app.settings.broker_url
        app._broker = broker_class_for(url)(url, broker_options(app.settings))
        return self
