"""taskiq's exceptions (``taskiq.exceptions`` and ``taskiq_redis.exceptions``), raised
where taskiq raises them, and part of Conveyor's hierarchy:

- ``TaskiqError`` is :class:`conveyor.ConveyorError`, the base of every Conveyor error,
  so ``except TaskiqError`` catches them all, as in taskiq.
- ``TaskiqResultTimeoutError`` (``wait_result()`` and ``gather()`` ran out of time) is a
  :class:`conveyor.ResultTimeout`, hence also a ``TimeoutError``; it has ``.timeout``.
- ``ResultGetError`` (no result to get) is a :class:`conveyor.ResultMissing`;
  taskiq-redis's ``ResultIsMissingError`` is a ``ResultGetError``.
- ``SendTaskError`` (``kiq()`` could not reach the broker) is a
  :class:`conveyor.EnqueueError`; the broker's error is its ``__cause__``.

Like taskiq's, each takes its fields as keywords (``TaskiqResultTimeoutError(timeout=5)``,
``SecurityError(description="...")``) and formats its message from ``__template__``; a
message may also be given positionally. The ones Conveyor never raises are here so that
code catching or raising them runs: ``NoResultError`` raised by a task fails it
(taskiq stores no result), ``TaskRejectedError`` and the shared-broker errors are never
raised by Conveyor.
"""

from __future__ import annotations

import string
from typing import Any

from conveyor.errors import ConveyorError, EnqueueError, ResultMissing, ResultTimeout

__all__ = [
    "BrokerError",
    "DuplicateExpireTimeSelectedError",
    "ExpireTimeMustBeMoreThanZeroError",
    "ListenError",
    "NoResultError",
    "ResultBackendError",
    "ResultGetError",
    "ResultIsMissingError",
    "ResultIsReadyError",
    "ResultSetError",
    "ScheduledTaskCancelledError",
    "SecurityError",
    "SendTaskError",
    "SharedBrokerListenError",
    "SharedBrokerSendTaskError",
    "TaskBrokerMismatchError",
    "TaskIQRedisError",
    "TaskRejectedError",
    "TaskiqError",
    "TaskiqResultTimeoutError",
    "UnknownTaskError",
]

TaskiqError = ConveyorError


class _Templated(ConveyorError):
    """taskiq's templated exception: keyword fields, a message from ``__template__``."""

    __template__ = "Exception occurred"

    def __init__(self, message: str | None = None, /, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        if message is None:
            wanted = {f for _, f, _, _ in string.Formatter().parse(self.__template__) if f}
            values = {name: getattr(self, name, None) for name in wanted}
            message = self.__template__.format(**values)
        super().__init__(message)


class TaskiqResultTimeoutError(_Templated, ResultTimeout):
    """Waiting for a task's result timed out (``wait_result()``, ``gather()``)."""

    __template__ = "Waiting for task results has timed out, timeout={timeout}"
    timeout: float | None = None


class BrokerError(_Templated):
    """Base class of the broker errors."""

    __template__ = "Base exception for all broker errors"


class ListenError(BrokerError):
    """The broker cannot listen to its queue (never raised by Conveyor)."""


class SharedBrokerListenError(ListenError):
    """A shared broker cannot listen (never raised by Conveyor)."""

    __template__ = "Shared broker cannot listen"


class SendTaskError(BrokerError, EnqueueError):
    """``kiq()`` could not send the task; the broker's error is the ``__cause__``."""

    __template__ = "Cannot send task to the queue"


class SharedBrokerSendTaskError(SendTaskError):
    """A shared task was sent without a default broker."""

    __template__ = "You cannot use kiq directly on shared task without setting the default_broker."


class UnknownTaskError(SendTaskError):
    """A task name no broker knows (never raised by Conveyor, which raises UnknownTask)."""

    __template__ = "Cannot send unknown task to the queue, task name - {task_name}"
    task_name: str = ""


class ResultBackendError(_Templated):
    """Base class of the result backend errors."""

    __template__ = "Base exception for all result backend errors"


class ResultGetError(ResultBackendError, ResultMissing):
    """There is no result to get (not finished yet, or expired)."""

    __template__ = "Cannot get result for the task"


class ResultSetError(ResultBackendError):
    """A result could not be stored."""

    __template__ = "Cannot set result for the task"


class ResultIsReadyError(ResultBackendError):
    """Whether the task is ready could not be found out."""

    __template__ = "Cannot find out if the task is ready"


class SecurityError(_Templated):
    """Security related error (never raised by Conveyor: nothing is unpickled)."""

    __template__ = "Security exception occurred: {description}"
    description: str = ""


class NoResultError(_Templated):
    """Raised by a task that wants no result stored. On Conveyor the task fails with it
    (its result says ``NoResultError``) instead of storing nothing."""

    __template__ = "User doesn't want to set result"


class TaskRejectedError(_Templated):
    """Task was rejected (never raised by Conveyor: ``Context.reject()`` is not supported)."""

    __template__ = "Task was rejected"


class ScheduledTaskCancelledError(_Templated):
    """A scheduled task was cancelled before it was sent."""

    __template__ = "Cannot send scheduled task to the queue."


class TaskBrokerMismatchError(TaskRejectedError):
    """A task is registered on a different broker."""

    __template__ = "Task already has a different broker ({broker})"
    broker: Any = None


# -- taskiq_redis.exceptions ----------------------------------------------------------


class TaskIQRedisError(_Templated):
    """Base error of taskiq-redis."""


class DuplicateExpireTimeSelectedError(ResultBackendError, TaskIQRedisError):
    """``result_ex_time`` and ``result_px_time`` were both given."""

    __template__ = "Choose either result_ex_time or result_px_time."


class ExpireTimeMustBeMoreThanZeroError(ResultBackendError, TaskIQRedisError):
    """An expiry time that is zero or less."""

    __template__ = "You must select one expire time param and it must be more than zero."


class ResultIsMissingError(TaskIQRedisError, ResultGetError):
    """``RedisAsyncResultBackend.get_result()`` found no result."""

    __template__ = "Cannot get result for the task"
