"""taskiq's API on Conveyor: change the imports, keep the code.

>>> # from taskiq import InMemoryBroker, TaskiqDepends, Context          (before)
>>> from conveyor.compat.taskiq import InMemoryBroker, TaskiqDepends, Context
>>> broker = InMemoryBroker()
>>> @broker.task(retry_on_error=True, max_retries=3)
... async def add(a: int, b: int) -> int:
...     return a + b
>>> await broker.startup()                                    # doctest: +SKIP
>>> (await (await add.kiq(1, 2)).wait_result(timeout=5)).return_value   # doctest: +SKIP
3

taskiq-redis names (``RedisStreamBroker``, ``RedisAsyncResultBackend``,
``ListRedisScheduleSource``...) are here too. Every broker wraps a real
:class:`~conveyor.Conveyor` app, ``broker.conveyor``; its tasks are real
:class:`~conveyor.Task` objects, ``kiq()`` returns a :class:`~conveyor.TaskHandle`, and
``conveyor worker pkg.module:broker`` / ``conveyor scheduler pkg.module:scheduler`` run
them. What maps 1:1, what differs and what is left out: docs/migrating-from-taskiq.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from conveyor.compat.taskiq.abc.formatter import TaskiqFormatter as TaskiqFormatter
from conveyor.compat.taskiq.acks import AckableMessage as AckableMessage
from conveyor.compat.taskiq.acks import AcknowledgeType as AcknowledgeType
from conveyor.compat.taskiq.brokers import AsyncBroker as AsyncBroker
from conveyor.compat.taskiq.brokers import InMemoryBroker as InMemoryBroker
from conveyor.compat.taskiq.brokers import ListQueueBroker as ListQueueBroker
from conveyor.compat.taskiq.brokers import RedisStreamBroker as RedisStreamBroker
from conveyor.compat.taskiq.brokers import ZeroMQBroker as ZeroMQBroker
from conveyor.compat.taskiq.brokers import async_shared_broker as async_shared_broker
from conveyor.compat.taskiq.context import Context as Context
from conveyor.compat.taskiq.context import TaskiqDepends as TaskiqDepends
from conveyor.compat.taskiq.context import TaskiqEvents as TaskiqEvents
from conveyor.compat.taskiq.context import TaskiqMessage as TaskiqMessage
from conveyor.compat.taskiq.context import TaskiqState as TaskiqState
from conveyor.compat.taskiq.errors import NoResultError as NoResultError
from conveyor.compat.taskiq.errors import ResultGetError as ResultGetError
from conveyor.compat.taskiq.errors import ResultIsReadyError as ResultIsReadyError
from conveyor.compat.taskiq.errors import SecurityError as SecurityError
from conveyor.compat.taskiq.errors import SendTaskError as SendTaskError
from conveyor.compat.taskiq.errors import TaskiqError as TaskiqError
from conveyor.compat.taskiq.errors import TaskiqResultTimeoutError as TaskiqResultTimeoutError
from conveyor.compat.taskiq.funcs import gather as gather
from conveyor.compat.taskiq.message import BrokerMessage as BrokerMessage
from conveyor.compat.taskiq.middlewares import PrometheusMiddleware as PrometheusMiddleware
from conveyor.compat.taskiq.rabbitmq import AioPikaBroker as AioPikaBroker
from conveyor.compat.taskiq.results import AsyncResultBackend as AsyncResultBackend
from conveyor.compat.taskiq.results import AsyncTaskiqTask as AsyncTaskiqTask
from conveyor.compat.taskiq.results import RedisAsyncResultBackend as RedisAsyncResultBackend
from conveyor.compat.taskiq.results import TaskiqResult as TaskiqResult
from conveyor.compat.taskiq.retries import SimpleRetryMiddleware as SimpleRetryMiddleware
from conveyor.compat.taskiq.retries import SmartRetryMiddleware as SmartRetryMiddleware
from conveyor.compat.taskiq.retries import TaskiqMiddleware as TaskiqMiddleware
from conveyor.compat.taskiq.schedules import CreatedSchedule as CreatedSchedule
from conveyor.compat.taskiq.schedules import LabelScheduleSource as LabelScheduleSource
from conveyor.compat.taskiq.schedules import ListRedisScheduleSource as ListRedisScheduleSource
from conveyor.compat.taskiq.schedules import RedisScheduleSource as RedisScheduleSource
from conveyor.compat.taskiq.schedules import ScheduledTask as ScheduledTask
from conveyor.compat.taskiq.schedules import ScheduleSource as ScheduleSource
from conveyor.compat.taskiq.schedules import TaskiqScheduler as TaskiqScheduler
from conveyor.compat.taskiq.taskiq_nats import NatsBroker as NatsBroker
from conveyor.compat.taskiq.taskiq_nats import PullBasedJetStreamBroker as PullBasedJetStreamBroker
from conveyor.compat.taskiq.taskiq_nats import PushBasedJetStreamBroker as PushBasedJetStreamBroker
from conveyor.compat.taskiq.tasks import AsyncKicker as AsyncKicker
from conveyor.compat.taskiq.tasks import AsyncTaskiqDecoratedTask as AsyncTaskiqDecoratedTask

try:  # taskiq's __version__ is its own; here it is Conveyor's
    __version__ = version("conveyor-tasks")
except PackageNotFoundError:  # pragma: no cover  (a source tree not installed)
    __version__ = "0"

__all__ = [
    "AckableMessage",
    "AcknowledgeType",
    "AioPikaBroker",
    "AsyncBroker",
    "AsyncKicker",
    "AsyncResultBackend",
    "AsyncTaskiqDecoratedTask",
    "AsyncTaskiqTask",
    "BrokerMessage",
    "Context",
    "CreatedSchedule",
    "InMemoryBroker",
    "LabelScheduleSource",
    "ListQueueBroker",
    "ListRedisScheduleSource",
    "NatsBroker",
    "NoResultError",
    "PrometheusMiddleware",
    "PullBasedJetStreamBroker",
    "PushBasedJetStreamBroker",
    "RedisAsyncResultBackend",
    "RedisScheduleSource",
    "RedisStreamBroker",
    "ResultGetError",
    "ResultIsReadyError",
    "ScheduleSource",
    "ScheduledTask",
    "SecurityError",
    "SendTaskError",
    "SimpleRetryMiddleware",
    "SmartRetryMiddleware",
    "TaskiqDepends",
    "TaskiqError",
    "TaskiqEvents",
    "TaskiqFormatter",
    "TaskiqMessage",
    "TaskiqMiddleware",
    "TaskiqResult",
    "TaskiqResultTimeoutError",
    "TaskiqScheduler",
    "TaskiqState",
    "ZeroMQBroker",
    "__version__",
    "async_shared_broker",
    "gather",
]
