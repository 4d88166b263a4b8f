"""``taskiq_redis.redis_cluster_broker``: not yet (they raise ConfigurationError)."""

from __future__ import annotations

from conveyor.compat.taskiq_redis._unsupported import (
    ListQueueClusterBroker as ListQueueClusterBroker,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisStreamClusterBroker as RedisStreamClusterBroker,
)

__all__ = ["ListQueueClusterBroker", "RedisStreamClusterBroker"]
