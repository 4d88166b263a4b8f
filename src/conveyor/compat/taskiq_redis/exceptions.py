"""``taskiq_redis.exceptions``: taskiq-redis's errors (see
:mod:`conveyor.compat.taskiq.errors`)."""

from __future__ import annotations

from conveyor.compat.taskiq.errors import (
    DuplicateExpireTimeSelectedError as DuplicateExpireTimeSelectedError,
)
from conveyor.compat.taskiq.errors import (
    ExpireTimeMustBeMoreThanZeroError as ExpireTimeMustBeMoreThanZeroError,
)
from conveyor.compat.taskiq.errors import ResultIsMissingError as ResultIsMissingError
from conveyor.compat.taskiq.errors import TaskIQRedisError as TaskIQRedisError

__all__ = [
    "DuplicateExpireTimeSelectedError",
    "ExpireTimeMustBeMoreThanZeroError",
    "ResultIsMissingError",
    "TaskIQRedisError",
]
