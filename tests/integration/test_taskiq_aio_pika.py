"""conveyor.compat.taskiq.AioPikaBroker: the RabbitMQ half of a FastAPI backend that picks
"redis" or "rabbitmq" (taskiq-aio-pika) runs with only its imports changed, against the
real local RabbitMQ, with results and task records in Redis."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from conveyor import ConfigurationError
from conveyor.brokers.base import Capability
from conveyor.brokers.rabbitmq import delete_namespace
from conveyor.compat.taskiq import AioPikaBroker, RedisAsyncResultBackend, TaskiqDepends
from conveyor.compat.taskiq.rabbitmq import Exchange, Queue, QueueType
from conveyor.errors import BrokerUnavailable
from tests.brokers.conftest import AMQP_URL, REDIS_URL, service_unavailable

pytestmark = pytest.mark.service("rabbitmq")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with contextlib.suppress(BrokerUnavailable):
            await delete_namespace(f"{AMQP_URL}?prefix={name}", REDIS_URL, ("default", "emails"))


async def test_an_aio_pika_app_runs_with_only_its_imports_changed(prefix: str) -> None:
    # as the app wrote it for taskiq-aio-pika + taskiq-redis, plus a prefix for the test
    broker = AioPikaBroker(
        f"{AMQP_URL}?prefix={prefix}",
        queue_name="emails",
        exchange_name="taskiq_exchange",  # the layout is Conveyor's: accepted, ignored
        qos=4,
    ).with_result_backend(RedisAsyncResultBackend(f"{REDIS_URL}?prefix={prefix}"))

    @broker.task(retry_on_error=True, max_retries=2)
    async def send_email(to: str, attempt: int = TaskiqDepends(lambda: 0)) -> str:
        return f"sent to {to}"

    app = broker.conveyor
    assert app.settings.concurrency == 4 and app.settings.queues == ("emails",)
    try:
        await broker.startup()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        assert Capability.ABORT in app.broker.capabilities  # records in the backend's Redis
        async with app.worker():
            task = await send_email.kiq("a@b.c")
            result = await task.wait_result(timeout=10)
            assert (result.is_err, result.return_value) == (False, "sent to a@b.c")
            later = await send_email.kicker().with_labels(delay=0.3).kiq("d@e.f")
            assert (await later.wait_result(timeout=10)).return_value == "sent to d@e.f"
    finally:
        await broker.shutdown()  # a no-op once a worker ran here: it owns the connection
        await app.close()


async def test_without_a_result_backend_waiting_says_how_to_add_one(prefix: str) -> None:
    broker = AioPikaBroker(f"{AMQP_URL}?prefix={prefix}")

    @broker.task
    async def ping() -> str:
        return "pong"

    try:
        await broker.startup()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        # no result backend: records in the ledger stream (status, abort), no values
        assert broker.conveyor.broker.capabilities == {Capability.QUEUE, Capability.ABORT}
        task = await ping.kiq()
        with pytest.raises(ConfigurationError, match="results="):
            await task.wait_result(timeout=1)
    finally:
        await broker.shutdown()


def test_max_priority_declares_classic_queues_in_the_url() -> None:
    broker = AioPikaBroker("amqp://guest:guest@h:5672/vhost", max_priority=5)
    assert broker.conveyor.settings.broker_url == (
        "amqp://guest:guest@h:5672/vhost?queue_type=classic&max_priority=5"
    )


def test_task_queues_of_taskiq_aio_pika_05_name_the_queues_and_their_type() -> None:
    broker = AioPikaBroker(
        "amqp://h/",
        exchange=Exchange(name="tasks", type="topic"),
        task_queues=[Queue(name="emails", type=QueueType.CLASSIC, max_priority=3), Queue("pdf")],
    )
    settings = broker.conveyor.settings
    assert (settings.default_queue, settings.queues) == ("emails", ("emails", "pdf"))
    assert settings.broker_url == "amqp://h/?queue_type=classic&max_priority=3"
    with pytest.raises(ConfigurationError, match="stream"):
        AioPikaBroker("amqp://h/", task_queues=[Queue("s", type="stream")])
