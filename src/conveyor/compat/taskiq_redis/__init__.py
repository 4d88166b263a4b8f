"""taskiq-redis's names on Conveyor: change ``taskiq_redis`` to
``conveyor.compat.taskiq_redis`` and keep the code.

>>> # from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker        (before)
>>> from conveyor.compat.taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker
>>> broker = RedisStreamBroker("redis://localhost:6379").with_result_backend(
...     RedisAsyncResultBackend("redis://localhost:6379")
... )

``RedisStreamBroker`` and ``ListQueueBroker`` are Conveyor's Redis Streams broker,
``RedisAsyncResultBackend`` its result store, ``ListRedisScheduleSource`` and
``RedisScheduleSource`` its schedule store (docs/migrating-from-taskiq.md). The Cluster
and Sentinel classes raise :class:`~conveyor.ConfigurationError` when constructed: they
come with Conveyor's Redis Cluster and Sentinel support. ``PubSubBroker`` (broadcast) is
refused the same way.
"""

from __future__ import annotations

from conveyor.compat.taskiq.brokers import ListQueueBroker as ListQueueBroker
from conveyor.compat.taskiq.brokers import RedisStreamBroker as RedisStreamBroker
from conveyor.compat.taskiq.results import RedisAsyncResultBackend as RedisAsyncResultBackend
from conveyor.compat.taskiq.schedules import ListRedisScheduleSource as ListRedisScheduleSource
from conveyor.compat.taskiq.schedules import RedisScheduleSource as RedisScheduleSource
from conveyor.compat.taskiq_redis._unsupported import (
    ListQueueClusterBroker as ListQueueClusterBroker,
)
from conveyor.compat.taskiq_redis._unsupported import (
    ListQueueSentinelBroker as ListQueueSentinelBroker,
)
from conveyor.compat.taskiq_redis._unsupported import PubSubBroker as PubSubBroker
from conveyor.compat.taskiq_redis._unsupported import (
    PubSubSentinelBroker as PubSubSentinelBroker,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisAsyncClusterResultBackend as RedisAsyncClusterResultBackend,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisAsyncSentinelResultBackend as RedisAsyncSentinelResultBackend,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisClusterScheduleSource as RedisClusterScheduleSource,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisSentinelScheduleSource as RedisSentinelScheduleSource,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisStreamClusterBroker as RedisStreamClusterBroker,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisStreamSentinelBroker as RedisStreamSentinelBroker,
)
from conveyor.compat.taskiq_redis.exceptions import ResultIsMissingError as ResultIsMissingError

__all__ = [
    "ListQueueBroker",
    "ListQueueClusterBroker",
    "ListQueueSentinelBroker",
    "ListRedisScheduleSource",
    "PubSubBroker",
    "PubSubSentinelBroker",
    "RedisAsyncClusterResultBackend",
    "RedisAsyncResultBackend",
    "RedisAsyncSentinelResultBackend",
    "RedisClusterScheduleSource",
    "RedisScheduleSource",
    "RedisSentinelScheduleSource",
    "RedisStreamBroker",
    "RedisStreamClusterBroker",
    "RedisStreamSentinelBroker",
    "ResultIsMissingError",
]
