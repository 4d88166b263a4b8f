"""What an ``amqp://`` URL says: the server for aio-pika, and Conveyor's own parameters.

=====================  ========================================================  =========
parameter              meaning                                                   default
=====================  ========================================================  =========
``prefix``             namespaces every queue and exchange (``<prefix>.<queue>``)  conveyor
                       and every record the broker keeps in Redis
``queue_type``         ``quorum`` (replicated, poison-safe) or ``classic``       quorum
``delivery_limit``     quorum ``x-delivery-limit``: deliveries before RabbitMQ    20
                       itself dead-letters a message (a backstop: Conveyor's own
                       poison check counts started attempts and acts first)
``consumer_timeout``   seconds a delivery may stay unacknowledged; set per queue  86400
                       (``x-consumer-timeout``) on servers that honour it (3.12+)
``max_priority``       classic queues' ``x-max-priority`` (1-255)                 10
``publish_timeout``    seconds to wait for a publisher confirm                    30
``results``            the URL of the Redis server that keeps task records,      none
                       percent-encoded (``results=`` of the app does the same)
``ledger``             without ``results``: keep task records in a RabbitMQ      true
                       stream (status reads and abort; ``ledger.py``), or
                       ``false`` for plain fire-and-forget
``ledger_max_age``     seconds the ledger stream keeps its entries (status reads  86400
                       and abort marks reach back this far)
=====================  ========================================================  =========

Every other parameter (``heartbeat``, ``connection_timeout``, TLS files for
``amqps://``...) goes to aio-pika as written.

>>> s = AmqpSettings.from_url("amqp://guest:pw@h:5672/vh?prefix=app&heartbeat=30")
>>> (s.server_url, s.prefix)
('amqp://guest:pw@h:5672/vh?heartbeat=30', 'app')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from conveyor.brokers import redact_url
from conveyor.errors import ConfigurationError

__all__ = ["AmqpSettings"]

_OURS = (
    "prefix",
    "queue_type",
    "delivery_limit",
    "consumer_timeout",
    "max_priority",
    "publish_timeout",
    "results",
    "ledger",
    "ledger_max_age",
)


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """An ``amqp://`` URL, parsed: see the module's table."""

    server_url: str
    prefix: str = "conveyor"
    queue_type: str = "quorum"
    delivery_limit: int = 20
    consumer_timeout: float = 86400.0
    max_priority: int = 10
    publish_timeout: float = 30.0
    result_url: str | None = None
    ledger: bool = True
    ledger_max_age: float = 86400.0

    @property
    def quorum(self) -> bool:
        return self.queue_type == "quorum"

    @classmethod
    def from_url(cls, url: str, result_url: str | None = None) -> AmqpSettings:
        """Parse ``url``; ``result_url`` (the app's ``results=``) is where task records
        go unless the URL's own ``results=`` says otherwise. Raises
        :class:`ConfigurationError` naming the URL (without its password)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("amqp", "amqps"):
            raise ConfigurationError(f"not an amqp:// URL: {redact_url(url)!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OURS}
        rest = [(k, v) for k, v in query if k not in _OURS]
        server_url = urlunsplit(parts._replace(query=urlencode(rest)))

        def bad(name: str, want: str) -> ConfigurationError:
            return ConfigurationError(
                f"{redact_url(url)}: parameter {name}={ours[name]!r} must be {want}"
            )

        def number(name: str, default: float, low: float, high: float) -> float:
            if name not in ours:
                return default
            try:
                value = float(ours[name])
            except ValueError:
                raise bad(name, f"a number from {low:g} to {high:g}") from None
            if not (math.isfinite(value) and low <= value <= high):
                raise bad(name, f"a number from {low:g} to {high:g}")
            return value

        prefix = ours.get("prefix", "conveyor")
        if not prefix or any(c.isspace() for c in prefix):
            raise bad("prefix", "a non-empty name without spaces")
        queue_type = ours.get("queue_type", "quorum").lower()
        if queue_type not in ("quorum", "classic"):
            raise bad("queue_type", "quorum or classic")
        limit = number("delivery_limit", 20, 1, 1_000_000)
        priority = number("max_priority", 10, 1, 255)
        if limit != int(limit) or priority != int(priority):
            raise bad("delivery_limit" if limit != int(limit) else "max_priority", "an integer")
        ledger = ours.get("ledger", "true").lower()
        if ledger not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise bad("ledger", "true or false")
        return cls(
            server_url=server_url,
            prefix=prefix,
            queue_type=queue_type,
            delivery_limit=int(limit),
            consumer_timeout=number("consumer_timeout", 86400.0, 1.0, 7 * 86400.0),
            max_priority=int(priority),
            publish_timeout=number("publish_timeout", 30.0, 0.1, 3600.0),
            result_url=ours.get("results") or result_url,
            ledger=ledger in ("true", "1", "yes", "on"),
            ledger_max_age=number("ledger_max_age", 86400.0, 60.0, 30 * 86400.0),
        )
