"""``taskiq_redis.redis_backend``: the Redis result backends."""

from __future__ import annotations

from conveyor.compat.taskiq.results import RedisAsyncResultBackend as RedisAsyncResultBackend
from conveyor.compat.taskiq_redis._unsupported import (
    RedisAsyncClusterResultBackend as RedisAsyncClusterResultBackend,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisAsyncSentinelResultBackend as RedisAsyncSentinelResultBackend,
)

__all__ = [
    "RedisAsyncClusterResultBackend",
    "RedisAsyncResultBackend",
    "RedisAsyncSentinelResultBackend",
]
