"""Peer adapters. Every module here (other than ``*_app`` modules, which run inside the
peers' virtualenvs) defines ``ADAPTER``, an instance of :class:`harness.adapter.Adapter`.
"""

from __future__ import annotations

import importlib
import pkgutil

from harness.adapter import Adapter


def discover() -> dict[str, Adapter]:
    """All adapters, by name, in a stable order (the ceiling first)."""
    found: dict[str, Adapter] = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.endswith("_app") or mod.name.startswith("_"):
            continue
        adapter = importlib.import_module(f"{__name__}.{mod.name}").ADAPTER
        found[adapter.name] = adapter
    order = sorted(found.values(), key=lambda a: (not a.is_ceiling, ORDER.get(a.name, 99)))
    return {a.name: a for a in order}


# Report order: the raw ceiling, the Redis peers (fastest first, as last measured), the
# RabbitMQ and NATS peers, then the embedded and PostgreSQL peers. Unknown adapters go last, alphabetically.
ORDER = {
    name: i for i, name in enumerate(
        ["conveyor", "conveyor-events", "ardiq", "taskiq", "streaq", "saq", "arq",
         "dramatiq", "celery", "conveyor-amqp", "taskiq-aio-pika", "dramatiq-rabbitmq",
         "celery-rabbitmq", "conveyor-nats", "taskiq-nats", "conveyor-sqlite", "huey", "conveyor-postgres", "procrastinate"]
    )
}
