"""taskiq-redis classes Conveyor does not run yet: constructing one raises
:class:`~conveyor.ConfigurationError` saying why and what to use meanwhile."""

from __future__ import annotations

from typing import Any, NoReturn

from conveyor.compat.taskiq.brokers import AsyncBroker
from conveyor.compat.taskiq.results import AsyncResultBackend
from conveyor.compat.taskiq.schedules import ScheduleSource
from conveyor.errors import ConfigurationError

__all__ = [
    "ListQueueClusterBroker",
    "ListQueueSentinelBroker",
    "PubSubBroker",
    "PubSubSentinelBroker",
    "RedisAsyncClusterResultBackend",
    "RedisAsyncSentinelResultBackend",
    "RedisClusterScheduleSource",
    "RedisSentinelScheduleSource",
    "RedisStreamClusterBroker",
    "RedisStreamSentinelBroker",
]

_SCALE_OUT = (
    "{name} comes with Conveyor's Redis Cluster and Sentinel support (issue 22), which "
    "is not there yet: use RedisStreamBroker, RedisAsyncResultBackend and "
    "ListRedisScheduleSource with a single Redis URL meanwhile"
)
_BROADCAST = (
    "{name} broadcasts every task to every worker, which Conveyor does not do: each task "
    "runs once. Use RedisStreamBroker, and kiq() once per worker that must run it"
)


def _refuse(owner: object, why: str) -> NoReturn:
    raise ConfigurationError(why.format(name=type(owner).__name__))


class _ScaleOutBroker(AsyncBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(self, _SCALE_OUT)


class _ScaleOutBackend(AsyncResultBackend[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(self, _SCALE_OUT)


class _ScaleOutSource(ScheduleSource):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(self, _SCALE_OUT)


class ListQueueClusterBroker(_ScaleOutBroker):
    """taskiq-redis's list broker on Redis Cluster: not yet (issue 22)."""


class RedisStreamClusterBroker(_ScaleOutBroker):
    """taskiq-redis's stream broker on Redis Cluster: not yet (issue 22)."""


class ListQueueSentinelBroker(_ScaleOutBroker):
    """taskiq-redis's list broker behind Sentinel: not yet (issue 22)."""


class RedisStreamSentinelBroker(_ScaleOutBroker):
    """taskiq-redis's stream broker behind Sentinel: not yet (issue 22)."""


class RedisAsyncClusterResultBackend(_ScaleOutBackend):
    """taskiq-redis's result backend on Redis Cluster: not yet (issue 22)."""


class RedisAsyncSentinelResultBackend(_ScaleOutBackend):
    """taskiq-redis's result backend behind Sentinel: not yet (issue 22)."""


class RedisClusterScheduleSource(_ScaleOutSource):
    """taskiq-redis's schedule source on Redis Cluster: not yet (issue 22)."""


class RedisSentinelScheduleSource(_ScaleOutSource):
    """taskiq-redis's schedule source behind Sentinel: not yet (issue 22)."""


class PubSubBroker(AsyncBroker):
    """taskiq-redis's broadcast broker: not supported (each Conveyor task runs once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(self, _BROADCAST)


class PubSubSentinelBroker(PubSubBroker):
    """taskiq-redis's broadcast broker behind Sentinel: not supported."""
