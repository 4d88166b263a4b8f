"""Conveyor: an async-first distributed task queue for Python.

>>> from conveyor import Conveyor
>>> app = Conveyor("memory://")
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from conveyor.app import Conveyor as Conveyor
from conveyor.deps import Context as Context
from conveyor.deps import Depends as Depends
from conveyor.errors import BrokerUnavailable as BrokerUnavailable
from conveyor.errors import ConfigurationError as ConfigurationError
from conveyor.errors import ConveyorError as ConveyorError
from conveyor.errors import EnqueueError as EnqueueError
from conveyor.errors import PartialPublish as PartialPublish
from conveyor.errors import PayloadTooLarge as PayloadTooLarge
from conveyor.errors import ProcessDied as ProcessDied
from conveyor.errors import RemoteTraceback as RemoteTraceback
from conveyor.errors import ResultMissing as ResultMissing
from conveyor.errors import ResultTimeout as ResultTimeout
from conveyor.errors import TaskFailed as TaskFailed
from conveyor.errors import TaskNotFound as TaskNotFound
from conveyor.errors import TaskTimeout as TaskTimeout
from conveyor.errors import UnknownTask as UnknownTask
from conveyor.hooks import Hook as Hook
from conveyor.message import Message as Message
from conveyor.result import AbortOutcome as AbortOutcome
from conveyor.result import ErrorInfo as ErrorInfo
from conveyor.result import Result as Result
from conveyor.result import TaskState as TaskState
from conveyor.result import TaskStatus as TaskStatus
from conveyor.retry import exponential as exponential
from conveyor.retry import fixed as fixed
from conveyor.retry import none as none
from conveyor.settings import Settings as Settings
from conveyor.task import SyncTask as SyncTask
from conveyor.task import Task as Task
from conveyor.task import TaskHandle as TaskHandle
from conveyor.workflow import Signature as Signature
from conveyor.workflow import chain as chain
from conveyor.workflow import chord as chord
from conveyor.workflow import group as group
from conveyor.workflow.handle import GroupHandle as GroupHandle
from conveyor.workflow.handle import WorkflowHandle as WorkflowHandle
from conveyor.workflow.handle import WorkflowState as WorkflowState
from conveyor.workflow.handle import WorkflowStatus as WorkflowStatus

if _TYPE_CHECKING:
    from conveyor.scheduler import Schedule as Schedule
    from conveyor.scheduler import at as at
    from conveyor.scheduler import catch_up as catch_up
    from conveyor.scheduler import cron as cron
    from conveyor.scheduler import every as every
    from conveyor.scheduler.loop import Scheduler as Scheduler

# Scheduling loads on first use: a process that only enqueues (a FastAPI app) does not pay
# for the scheduler loop, nor a worker whose tasks have no schedule for cron parsing and
# time zones (tests/test_public_api.py)
_LAZY = {
    "Schedule": "conveyor.scheduler.schedule",
    "Scheduler": "conveyor.scheduler.loop",
    "at": "conveyor.scheduler.schedule",
    "catch_up": "conveyor.scheduler.schedule",
    "cron": "conveyor.scheduler.schedule",
    "every": "conveyor.scheduler.schedule",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "AbortOutcome",
    "BrokerUnavailable",
    "ConfigurationError",
    "Context",
    "Conveyor",
    "ConveyorError",
    "Depends",
    "EnqueueError",
    "ErrorInfo",
    "GroupHandle",
    "Hook",
    "Message",
    "PartialPublish",
    "PayloadTooLarge",
    "ProcessDied",
    "RemoteTraceback",
    "Result",
    "ResultMissing",
    "ResultTimeout",
    "Schedule",
    "Scheduler",
    "Settings",
    "Signature",
    "SyncTask",
    "Task",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFound",
    "TaskState",
    "TaskStatus",
    "TaskTimeout",
    "UnknownTask",
    "WorkflowHandle",
    "WorkflowState",
    "WorkflowStatus",
    "at",
    "catch_up",
    "chain",
    "chord",
    "cron",
    "every",
    "exponential",
    "fixed",
    "group",
    "none",
]
