"""The event types and the event log, as the observability package knew them; they live
in :mod:`conveyor.events` (below the worker and the scheduler, which import them), and
this module re-exports them for code that imported them from here."""

from conveyor.events import AnyEvent as AnyEvent
from conveyor.events import Event as Event
from conveyor.events import EventEmitter as EventEmitter
from conveyor.events import EventLog as EventLog
from conveyor.events import LoggedEvent as LoggedEvent
from conveyor.events import SchedulerTick as SchedulerTick
from conveyor.events import TaskAborted as TaskAborted
from conveyor.events import TaskDead as TaskDead
from conveyor.events import TaskDeferred as TaskDeferred
from conveyor.events import TaskEvent as TaskEvent
from conveyor.events import TaskFailure as TaskFailure
from conveyor.events import TaskReceived as TaskReceived
from conveyor.events import TaskRetried as TaskRetried
from conveyor.events import TaskStarted as TaskStarted
from conveyor.events import TaskSucceeded as TaskSucceeded
from conveyor.events import WorkerHeartbeat as WorkerHeartbeat
from conveyor.events import args_preview as args_preview
from conveyor.events import finished_event as finished_event
from conveyor.events import notify as notify

__all__ = [
    "AnyEvent",
    "Event",
    "EventEmitter",
    "EventLog",
    "LoggedEvent",
    "SchedulerTick",
    "TaskAborted",
    "TaskDead",
    "TaskDeferred",
    "TaskEvent",
    "TaskFailure",
    "TaskReceived",
    "TaskRetried",
    "TaskStarted",
    "TaskSucceeded",
    "WorkerHeartbeat",
    "args_preview",
    "finished_event",
    "notify",
]
