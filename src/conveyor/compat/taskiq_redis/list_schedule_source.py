"""``taskiq_redis.list_schedule_source``: ``ListRedisScheduleSource``."""

from __future__ import annotations

from conveyor.compat.taskiq.schedules import ListRedisScheduleSource as ListRedisScheduleSource

__all__ = ["ListRedisScheduleSource"]
