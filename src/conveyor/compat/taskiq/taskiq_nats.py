"""taskiq-nats' brokers on Conveyor's NATS JetStream broker (``nats://``, docs/nats.md).

>>> # from taskiq_nats import PullBasedJetStreamBroker                  (before)
>>> from conveyor.compat.taskiq import PullBasedJetStreamBroker
>>> broker = PullBasedJetStreamBroker(["nats://localhost:4222"], queue="tasks")  # doctest: +SKIP

Both classes send to, and run from, JetStream: taskiq-nats' plain ``NatsBroker`` publishes
on core NATS (a task sent while no worker listens is lost); here it gets the same
acknowledged, leased delivery as the JetStream one. ``conveyor worker pkg.tasks:broker``
runs either. Stream and consumer configs, batch sizes and connection keywords are
accepted and ignored (logged): Conveyor lays out its streams itself.
"""

from __future__ import annotations

from typing import Any

from conveyor.app import Conveyor
from conveyor.compat.taskiq._options import _note_ignored
from conveyor.compat.taskiq.brokers import AsyncBroker
from conveyor.compat.taskiq.results import AsyncResultBackend

__all__ = ["NatsBroker", "PullBasedJetStreamBroker", "PushBasedJetStreamBroker"]


def _app(servers: str | list[str], queue: str, prefix: str | None) -> Conveyor:
    urls = [servers] if isinstance(servers, str) else list(servers)
    url = ",".join(u if "://" in u else f"nats://{u}" for u in urls)
    if prefix:
        url += f"?prefix={prefix}"
    return Conveyor(url, default_queue=queue, queues=(queue,))


class NatsBroker(AsyncBroker):
    """taskiq-nats' ``NatsBroker(servers, subject="taskiq_tasks", queue=None)``: ``subject``
    becomes the Conveyor queue; ``queue`` (a NATS queue group) is not needed, since every
    worker of a queue shares one durable consumer."""

    def __init__(
        self,
        servers: str | list[str],
        subject: str = "taskiq_tasks",
        queue: str | None = None,
        result_backend: AsyncResultBackend[Any] | None = None,
        **connection_kwargs: Any,
    ) -> None:
        _note_ignored(type(self).__name__, connection_kwargs)
        super().__init__(result_backend, conveyor=_app(servers, subject, None))


class PullBasedJetStreamBroker(AsyncBroker):
    """taskiq-nats' ``PullBasedJetStreamBroker(servers, subject="taskiq_jetstream",
    stream_name="taskiq_jetstream", durable="taskiq_durable", ...)``: ``stream_name`` is
    the Conveyor prefix (it names the streams and buckets), ``subject`` the queue."""

    def __init__(
        self,
        servers: str | list[str],
        subject: str = "taskiq_jetstream",
        stream_name: str = "taskiq_jetstream",
        durable: str = "taskiq_durable",
        result_backend: AsyncResultBackend[Any] | None = None,
        **options: Any,
    ) -> None:
        # stream_config, consumer_config, pull_consume_batch, pull_consume_timeout...
        _note_ignored(type(self).__name__, options)
        super().__init__(result_backend, conveyor=_app(servers, subject, stream_name))


class PushBasedJetStreamBroker(PullBasedJetStreamBroker):
    """taskiq-nats' ``PushBasedJetStreamBroker``: the same pull-based broker (workers pull
    as many tasks as they have free slots; a push consumer would not bound them)."""
