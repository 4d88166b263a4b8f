"""taskiq-aio-pika's ``AioPikaBroker`` on Conveyor's RabbitMQ broker (``amqp://``).

>>> broker = AioPikaBroker("amqp://guest:guest@localhost:5672/").with_result_backend(
...     RedisAsyncResultBackend("redis://localhost:6379")
... )                                                                   # doctest: +SKIP

Task records and results live in the result backend's Redis (docs/rabbitmq.md); without
``with_result_backend()`` the broker runs fire-and-forget and ``wait_result()`` says how
to add one, where taskiq would silently return nothing.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from conveyor.app import Conveyor, broker_options
from conveyor.brokers import broker_class_for
from conveyor.compat.taskiq._options import _note_ignored
from conveyor.compat.taskiq.brokers import AsyncBroker
from conveyor.compat.taskiq.results import AsyncResultBackend

__all__ = ["AioPikaBroker"]

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"


class AioPikaBroker(AsyncBroker):
    """taskiq-aio-pika's broker: ``url`` (``amqp://`` or ``amqps://``; Conveyor's own
    parameters, ``?prefix=``..., may be added), ``result_backend`` (or
    ``.with_result_backend()``), ``queue_name`` (the Conveyor queue it sends to and its
    workers serve; Conveyor's ``default`` when not given), ``qos`` (the prefetch, so the
    worker's concurrency) and ``max_priority`` (priorities need classic queues: the queue
    is declared classic with ``x-max-priority``). Labels ``delay`` and ``priority`` work as
    in taskiq.

    The exchange and queue layout is Conveyor's (quorum queues, a DLQ per queue, delays
    without a plugin): ``exchange_name``, ``exchange_type``, ``routing_key``,
    ``dead_letter_queue_name``, ``delay_queue_name``, ``declare_*``,
    ``delayed_message_exchange_plugin`` and connection keywords are accepted and ignored.
    """

    def __init__(
        self,
        url: str | None = None,
        result_backend: AsyncResultBackend | None = None,
        *,
        qos: int = 10,
        queue_name: str | None = None,
        max_priority: int | None = None,
        **options: Any,
    ) -> None:
        _note_ignored(type(self).__name__, options)
        url = url or DEFAULT_URL
        if max_priority is not None:
            parts = urlsplit(url)
            classic = f"queue_type=classic&max_priority={int(max_priority)}"
            query = f"{parts.query}&{classic}" if parts.query else classic
            url = urlunsplit(parts._replace(query=query))
        settings: dict[str, Any] = {"concurrency": qos}
        if queue_name is not None:
            settings |= {"default_queue": queue_name, "queues": (queue_name,)}
        super().__init__(Conveyor(url, **settings), result_backend)

    def with_result_backend(self, result_backend: AsyncResultBackend) -> Self:
        """Attach ``result_backend``; a Redis one also keeps the broker's task records,
        so the broker is made again with it (before anything connects)."""
        super().with_result_backend(result_backend)
        app = self.conveyor
        url = app.settings.broker_url
        app._broker = broker_class_for(url)(url, broker_options(app.settings))
        return self
