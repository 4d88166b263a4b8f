"""The exception hierarchy of Conveyor.

Every error Conveyor raises on purpose derives from :class:`ConveyorError`::

    ConveyorError
    ├── ConfigurationError        bad settings, unknown URL scheme, missing extra
    ├── BrokerUnavailable         the broker or result store cannot be reached
    ├── EnqueueError              nothing was sent
    │   └── PayloadTooLarge       the encoded message exceeds max_payload_bytes
    ├── UnknownTask               a task name that is not registered
    ├── ResultTimeout             wait_result()/get() gave up (also a TimeoutError)
    ├── ResultMissing             no result is stored (not finished, expired, or result_ttl=0)
    └── TaskFailed                get() on a task that ended in error; carries .error

A non-serializable argument raises the built-in :class:`TypeError`, naming the task and
the argument, before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.result import ErrorInfo

__all__ = [
    "BrokerUnavailable",
    "ConfigurationError",
    "ConveyorError",
    "EnqueueError",
    "PayloadTooLarge",
    "ResultMissing",
    "ResultTimeout",
    "TaskFailed",
    "UnknownTask",
]


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class ConfigurationError(ConveyorError):
    """Settings or a URL that Conveyor cannot use; the message says which and why."""


class BrokerUnavailable(ConveyorError):
    """The broker or result store cannot be reached. The URL is shown without its password."""


class EnqueueError(ConveyorError):
    """An enqueue was refused before anything reached the broker."""


class PayloadTooLarge(EnqueueError):
    """The encoded message is larger than ``max_payload_bytes``."""


class UnknownTask(ConveyorError):
    """A task name that is not registered on this app or worker."""


class TaskNotFound(ConveyorError, LookupError):
    """No task has this id: it was never enqueued, or it ended and its result expired."""


class ResultTimeout(ConveyorError, TimeoutError):
    """No result arrived within the timeout given to ``wait_result``/``get``."""


class ResultMissing(ConveyorError):
    """There is no stored result for the task id."""


class TaskFailed(ConveyorError):
    """Raised by ``TaskHandle.get()`` when the task ended in error.

    ``error`` carries the remote exception's type, message and traceback text.
    """

    def __init__(self, task_id: str, error: ErrorInfo) -> None:
        super().__init__(f"task {task_id} failed: {error.type}: {error.message}")
        self.task_id = task_id
        self.error = error
