"""``taskiq_redis.redis_broker``: the Redis brokers (see :mod:`conveyor.compat.taskiq_redis`)."""

from __future__ import annotations

from conveyor.compat.taskiq.brokers import ListQueueBroker as ListQueueBroker
from conveyor.compat.taskiq.brokers import RedisStreamBroker as RedisStreamBroker
from conveyor.compat.taskiq_redis._unsupported import PubSubBroker as PubSubBroker

__all__ = ["ListQueueBroker", "PubSubBroker", "RedisStreamBroker"]
