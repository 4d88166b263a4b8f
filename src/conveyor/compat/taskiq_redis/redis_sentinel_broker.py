"""``taskiq_redis.redis_sentinel_broker``: not yet (they raise ConfigurationError)."""

from __future__ import annotations

from conveyor.compat.taskiq_redis._unsupported import (
    ListQueueSentinelBroker as ListQueueSentinelBroker,
)
from conveyor.compat.taskiq_redis._unsupported import (
    PubSubSentinelBroker as PubSubSentinelBroker,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisStreamSentinelBroker as RedisStreamSentinelBroker,
)

__all__ = ["ListQueueSentinelBroker", "PubSubSentinelBroker", "RedisStreamSentinelBroker"]
