"""``taskiq.exceptions`` on Conveyor: taskiq's exceptions, raised where taskiq raises
them (see :mod:`conveyor.compat.taskiq.errors` for how they fit Conveyor's)."""

from __future__ import annotations

from conveyor.compat.taskiq.errors import BrokerError as BrokerError
from conveyor.compat.taskiq.errors import ListenError as ListenError
from conveyor.compat.taskiq.errors import NoResultError as NoResultError
from conveyor.compat.taskiq.errors import ResultBackendError as ResultBackendError
from conveyor.compat.taskiq.errors import ResultGetError as ResultGetError
from conveyor.compat.taskiq.errors import ResultIsReadyError as ResultIsReadyError
from conveyor.compat.taskiq.errors import ResultSetError as ResultSetError
from conveyor.compat.taskiq.errors import ScheduledTaskCancelledError as ScheduledTaskCancelledError
from conveyor.compat.taskiq.errors import SecurityError as SecurityError
from conveyor.compat.taskiq.errors import SendTaskError as SendTaskError
from conveyor.compat.taskiq.errors import SharedBrokerListenError as SharedBrokerListenError
from conveyor.compat.taskiq.errors import SharedBrokerSendTaskError as SharedBrokerSendTaskError
from conveyor.compat.taskiq.errors import TaskBrokerMismatchError as TaskBrokerMismatchError
from conveyor.compat.taskiq.errors import TaskiqError as TaskiqError
from conveyor.compat.taskiq.errors import TaskiqResultTimeoutError as TaskiqResultTimeoutError
from conveyor.compat.taskiq.errors import TaskRejectedError as TaskRejectedError
from conveyor.compat.taskiq.errors import UnknownTaskError as UnknownTaskError

__all__ = [
    "BrokerError",
    "ListenError",
    "NoResultError",
    "ResultBackendError",
    "ResultGetError",
    "ResultIsReadyError",
    "ResultSetError",
    "ScheduledTaskCancelledError",
    "SecurityError",
    "SendTaskError",
    "SharedBrokerListenError",
    "SharedBrokerSendTaskError",
    "TaskBrokerMismatchError",
    "TaskRejectedError",
    "TaskiqError",
    "TaskiqResultTimeoutError",
    "UnknownTaskError",
]
