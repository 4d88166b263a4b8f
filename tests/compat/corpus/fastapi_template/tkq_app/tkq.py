from typing import Any
import taskiq_fastapi
from taskiq import InMemoryBroker, ZeroMQBroker, AsyncBroker, AsyncResultBackend
from tkq_app.settings import settings
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend
result_backend: AsyncResultBackend[Any] = RedisAsyncResultBackend(
    redis_url=str(settings.redis_url.with_path("/1")),
)
broker: AsyncBroker = ListQueueBroker(
    str(settings.redis_url.with_path("/1")),
).with_result_backend(result_backend)

if settings.environment.lower() == "pytest":
    broker = InMemoryBroker()

taskiq_fastapi.init(
    broker,
    "tkq_app.web.application:get_app",
)
