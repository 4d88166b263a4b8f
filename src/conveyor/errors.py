"""The exception hierarchy of Conveyor.

Every error Conveyor raises on purpose derives from :class:`ConveyorError`::

    ConveyorError
    ├── ConfigurationError        bad settings, unknown URL scheme, missing extra
    ├── BrokerUnavailable         the broker or result store cannot be reached
    ├── EnqueueError              nothing was sent
    │   └── PayloadTooLarge       the encoded message exceeds max_payload_bytes
    ├── SettlementRefused         the broker refused to settle a delivery (a result too big)
    ├── UnknownTask               a task name that is not registered
    ├── ResultTimeout             wait_result()/get() gave up (also a TimeoutError)
    ├── ResultMissing             no result is stored (not finished, expired, or result_ttl=0)
    ├── TaskNotFound              no task has this id (also a LookupError)
    ├── TaskTimeout               raised inside a worker when a task exceeds its timeout
    │                             (also a TimeoutError)
    ├── ProcessDied               a runner="process" task's process ended while running it
    └── TaskFailed                get() on a task that ended in error; carries .error, and
                                  the remote traceback as its __cause__ (RemoteTraceback)

A non-serializable argument raises the built-in :class:`TypeError`, naming the task and
the argument, before anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from conveyor.result import ErrorInfo

__all__ = [
    "BrokerUnavailable",
    "ConfigurationError",
    "ConveyorError",
    "EnqueueError",
    "PartialPublish",
    "PayloadTooLarge",
    "ProcessDied",
    "RemoteTraceback",
    "ResultMissing",
    "ResultTimeout",
    "TaskFailed",
    "TaskNotFound",
    "TaskTimeout",
    "UnknownTask",
]


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class ConfigurationError(ConveyorError):
    """Settings or a URL that Conveyor cannot use; the message says which and why."""


class BrokerUnavailable(ConveyorError):
    """The broker or result store cannot be reached. The URL is shown without its password."""


class PartialPublish(BrokerUnavailable):
    """Part of a batch was published and part was not (a connection lost halfway).

    ``outcomes`` holds, per message in the batch's order, the task id that stands for it
    (published, or an existing task took its place) or the error that stopped it. A
    caller of ``kiq()`` whose message was published gets its handle; only the callers whose
    message failed get an error, so none retries an enqueue that in fact landed."""

    def __init__(self, message: str, outcomes: Sequence[str | BaseException]) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)


class EnqueueError(ConveyorError):
    """An enqueue was refused before anything reached the broker."""


class PayloadTooLarge(EnqueueError):
    """The encoded message is larger than ``max_payload_bytes``."""


class SettlementRefused(ConveyorError):
    """The broker refused a settlement itself, not through a connection fault (Redis'
    ``proto-max-bulk-len``, a value too big for SQLite): trying it again cannot help."""


class UnknownTask(ConveyorError):
    """A task name that is not registered on this app or worker."""


class TaskNotFound(ConveyorError, LookupError):
    """No task has this id: it was never enqueued, or it ended and its result expired."""


class ResultTimeout(ConveyorError, TimeoutError):
    """No result arrived within the timeout given to ``wait_result``/``get``."""


class ResultMissing(ConveyorError):
    """There is no stored result for the task id."""


class TaskTimeout(ConveyorError, TimeoutError):
    """A task ran longer than its ``timeout`` (raised inside the worker; the task's
    result carries it as ``error.type == "conveyor.TaskTimeout"``)."""


class ProcessDied(ConveyorError):
    """The process running a ``runner="process"`` task ended before it replied: the task
    crashed the interpreter (a segfault, ``os._exit``), or a signal or the kernel's OOM
    killer ended it. The task fails, and is retried like any other failure."""


class RemoteTraceback(Exception):
    """The traceback of a task's exception in its worker, as text: the ``__cause__`` of
    :class:`TaskFailed`, so that printing one shows where the task failed."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback.rstrip()}\n"""'


class TaskFailed(ConveyorError):
    """Raised by ``TaskHandle.get()`` when the task ended in error.

    ``error`` carries the remote exception's type, message and traceback text; the
    traceback is also chained as ``__cause__`` (a :class:`RemoteTraceback`), so an
    uncaught ``TaskFailed`` prints where the task failed in its worker, then where
    ``get()`` was called.
    """

    def __init__(self, task_id: str, error: ErrorInfo) -> None:
        super().__init__(f"task {task_id} failed: {error.type}: {error.message}")
        self.task_id = task_id
        self.error = error
        if error.traceback:
            self.__cause__ = RemoteTraceback(error.traceback)


# Errors print as what users import (conveyor.TaskTimeout, not conveyor.errors.TaskTimeout):
# in tracebacks, in reprs, and as the error type a task's result stores.
for _name in __all__:
    globals()[_name].__module__ = "conveyor"
del _name
