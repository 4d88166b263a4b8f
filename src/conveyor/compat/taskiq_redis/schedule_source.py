"""``taskiq_redis.schedule_source``: the older Redis schedule sources."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import RedisScheduleSource as RedisScheduleSource
from conveyor.compat.taskiq_redis._unsupported import (
    RedisClusterScheduleSource as RedisClusterScheduleSource,
)
from conveyor.compat.taskiq_redis._unsupported import (
    RedisSentinelScheduleSource as RedisSentinelScheduleSource,
)

__all__ = ["RedisClusterScheduleSource", "RedisScheduleSource", "RedisSentinelScheduleSource"]
