"""Brokers and result stores, found by URL scheme and imported only when used.

>>> broker_class_for("redis://localhost:6379/0")  # doctest: +SKIP
<class 'conveyor.brokers.redis.broker.RedisBroker'>
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.errors import ConfigurationError

__all__ = [
    "broker_class_for",
    "redact_url",
    "register_broker",
    "result_store_class_for",
    "shown_url",
    "sqlite_path",
]

# scheme -> ("module:BrokerClass", "module:ResultStoreClass", extra to install)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "memory": (
        "conveyor.brokers.memory:MemoryBroker",
        "conveyor.brokers.memory:MemoryResultStore",
        None,
    ),
    "sqlite": (
        "conveyor.brokers.sqlite:SqliteBroker",
        "conveyor.brokers.sqlite:SqliteResultStore",
        None,
    ),
    "redis": (
        "conveyor.brokers.redis:RedisBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
    "rediss": (
        "conveyor.brokers.redis:RedisBroker",
        "conveyor.brokers.redis:RedisResultStore",
        "redis",
    ),
}


def register_broker(scheme: str, broker: str, result_store: str, extra: str | None = None) -> None:
    """Make ``scheme://`` URLs use your broker: ``register_broker("kafka",
    "mypkg.kafka:KafkaBroker", "mypkg.kafka:KafkaResultStore")``. Classes are imported
    lazily, on first use; they take ``(url, settings)``."""
    _REGISTRY[scheme.lower()] = (broker, result_store, extra)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def shown_url(url: str) -> str:
    """``url`` as logs and the CLI show it: without its password, and with a ``sqlite://``
    path made absolute, since a relative one depends on the directory of each process.

    >>> shown_url("sqlite:///conveyor.db")  # doctest: +SKIP
    'sqlite:////srv/app/conveyor.db'
    """
    path = sqlite_path(url)
    return f"sqlite:///{path}" if path is not None else redact_url(url)


def sqlite_path(url: str) -> Path | None:
    """The absolute database path of a ``sqlite://`` URL; None for any other URL, or one
    the broker will refuse with its own message."""
    if urlsplit(url).scheme.lower() != "sqlite":
        return None
    from conveyor.brokers.sqlite.connection import path_from_url

    try:
        return path_from_url(url)
    except ConfigurationError:
        return None


def _load(url: str, which: int) -> Any:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _REGISTRY:
        known = ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        raise ConfigurationError(
            f"unknown broker URL scheme in {redact_url(url)!r}; known: {known}"
        )
    target = _REGISTRY[scheme][which]
    assert target is not None
    extra = _REGISTRY[scheme][2]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'conveyor-tasks[{extra}]'" if extra else "reinstall conveyor-tasks"
        raise ConfigurationError(
            f"the {scheme}:// backend could not be imported ({exc}); {hint}"
        ) from exc
    return getattr(module, attr)


def broker_class_for(url: str) -> Any:
    """The broker class that serves ``url``'s scheme."""
    return _load(url, 0)


def result_store_class_for(url: str) -> Any:
    """The result store class that serves ``url``'s scheme."""
    return _load(url, 1)
