"""taskiq-deduplication's README Quick Start, the module part (its ``await`` lines are
what probe_client.py does)."""

from taskiq_deduplication import DuplicateTaskError, RedisDeduplicationMiddleware  # noqa: F401
from taskiq_redis import ListQueueBroker

broker = ListQueueBroker("redis://localhost:6379").with_middlewares(
    RedisDeduplicationMiddleware(redis_url="redis://localhost:6379"),
)


@broker.task
async def send_report(user_id: int) -> None: ...
