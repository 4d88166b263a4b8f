"""A workflow once sent: :class:`WorkflowHandle` (a :class:`GroupHandle` for a group),
and the reads and abort of a workflow by id that the handle, the CLI and the dashboard
share.

>>> handle = await chord((embed.s(c) for c in chunks), build_index.s()).kiq()  # doctest: +SKIP
>>> await handle.get(timeout=600)                         # the callback's value
>>> (await handle.status()).status                        # running, succeeded, failed, aborted
>>> await handle.abort()                                  # how many of its tasks it stopped

A workflow's result is its final task's: the last call of a chain, a chord's callback, a
group's gather task (whose value is the list of its members' values). When a task fails
and nothing of the workflow can finish any more, that final task's result is stored as
failed at once, its error naming the task that failed and why (``conveyor.WorkflowFailed``),
so ``wait_result`` never waits for a task that will not run.
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from conveyor.brokers import redact_url
from conveyor.brokers.base import Capability, StoredResult
from conveyor.clock import Seconds
from conveyor.errors import ConfigurationError, TaskNotFound
from conveyor.handle import TaskHandle, read_state
from conveyor.message import encode_value
from conveyor.result import ErrorInfo, Result, TaskStatus, aborted_result

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.brokers.base import BarrierState, Broker, WorkflowRecord
    from conveyor.workflow.plan import WorkflowInfo

__all__ = [
    "GroupHandle",
    "GroupState",
    "NodeState",
    "WorkflowHandle",
    "WorkflowState",
    "WorkflowStatus",
    "abort_workflow",
    "read_workflow",
]

R = TypeVar("R")

ABORT_AT_ONCE = 100
"""How many of a workflow's tasks an abort asks the broker to abort concurrently."""


class WorkflowStatus(enum.StrEnum):
    """Where a workflow is: running, or how it ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


class NodeState(msgspec.Struct, frozen=True, omit_defaults=True):
    """One task of a workflow: its id, its task name, and its status (a
    :class:`~conveyor.TaskStatus`, ``pending`` before it is published, or ``skipped`` when
    the workflow ended without it). ``depth``: how deep in groups it sits."""

    task_id: str
    task: str
    status: str
    depth: int = 0


class GroupState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A group of a workflow: its size (None while its members are being sent), how many
    members finished, and how many of those failed."""

    group_id: str
    size: int | None
    finished: int
    failed: int
    first_failed: str | None = None


class WorkflowState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A snapshot of a workflow for ``WorkflowHandle.status()``, the CLI and the dashboard.

    ``task_id`` is its final task, whose result is the workflow's. When it failed,
    ``failed_task`` is the task that failed first and ``error`` says why. ``tasks`` lists
    its first tasks with their states (at most the ``tasks`` asked for), ``groups`` its
    groups' progress."""

    workflow_id: str
    status: WorkflowStatus
    kind: str
    name: str
    task_id: str
    created_at: float
    finished_at: float = 0.0
    failed_task: str | None = None
    error: ErrorInfo | None = None
    tasks: list[NodeState] = []
    groups: list[GroupState] = []
    more_tasks: int = 0


class WorkflowHandle(Generic[R]):
    """A workflow sent with ``kiq()``: its id, and its final task's id (``task_id``),
    whose result is the workflow's. ``app.workflow(workflow_id)`` makes one for an id
    kept elsewhere."""

    __slots__ = ("_app", "_return_type", "task_id", "workflow_id")

    def __init__(
        self, app: Conveyor, workflow_id: str, task_id: str | None, return_type: Any = Any
    ) -> None:
        self._app = app
        self.workflow_id = workflow_id
        self.task_id = task_id
        self._return_type = return_type

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.workflow_id}>"

    async def _final(self) -> TaskHandle[R]:
        if self.task_id is None:
            record = await _workflows(self._app).workflow(self.workflow_id)
            if record is None:
                raise TaskNotFound(f"unknown workflow {self.workflow_id!r}")
            self.task_id = _info(record).tail
        return TaskHandle(self._app, self.task_id, self._return_type)

    async def wait_result(self, timeout: Seconds = 60.0) -> Result[R]:
        """Wait (push-based) for the workflow's result: its final task's. A workflow that
        failed has a failed result at once, naming the task that failed
        (``error.type == "conveyor.WorkflowFailed"``)."""
        return await (await self._final()).wait_result(timeout)

    async def get(self, timeout: Seconds = 60.0) -> R:
        """The workflow's value; raises :class:`~conveyor.TaskFailed` if it failed."""
        return (await self.wait_result(timeout)).unwrap()

    async def result(self) -> Result[R]:
        """The workflow's result now, without waiting; raises
        :class:`~conveyor.ResultMissing` while it runs."""
        return await (await self._final()).result()

    async def status(self, tasks: int = 50) -> WorkflowState:
        """Where the workflow and its first ``tasks`` tasks are; raises
        :class:`~conveyor.TaskNotFound` for an unknown (or expired) workflow."""
        return await read_workflow(self._app, self.workflow_id, tasks)

    async def abort(self) -> int:
        """Abort the workflow: its queued tasks never run, its running ones are cancelled,
        and nothing of it is published any more (no next step, no callback). Returns how
        many of its tasks it stopped; 0 when it had already ended.

        >>> await handle.abort()                           # doctest: +SKIP
        3
        """
        return await abort_workflow(self._app, self.workflow_id)

    def abort_sync(self) -> int:
        """:meth:`abort` for synchronous code."""
        return self._app._connections.portal().call(self.abort)

    def status_sync(self, tasks: int = 50) -> WorkflowState:
        """:meth:`status` for synchronous code."""
        return self._app._connections.portal().call(lambda: self.status(tasks))

    def get_sync(self, timeout: Seconds = 60.0) -> R:
        """:meth:`get` for synchronous code (not from the thread running the app's loop)."""
        connections = self._app._connections
        connections.refuse_blocking_on_own_loop("get_sync()")
        return connections.portal().call(lambda: self.get(timeout))


class GroupHandle(WorkflowHandle[list[R]]):
    """A group sent with ``kiq()``: :meth:`wait_results` returns its members' values in
    member order, converted to their task's annotated return type when they share one."""

    __slots__ = ()

    async def wait_results(self, timeout: Seconds = 60.0) -> list[R]:
        """The members' values, in member order, once every member has finished; raises
        :class:`~conveyor.TaskFailed` (``conveyor.WorkflowFailed``, naming the member)
        as soon as one has failed, and :class:`~conveyor.ResultTimeout` after
        ``timeout`` seconds."""
        return await self.get(timeout)

    def wait_results_sync(self, timeout: Seconds = 60.0) -> list[R]:
        """:meth:`wait_results` for synchronous code."""
        return self.get_sync(timeout)


def _workflows(app: Conveyor) -> Broker:
    broker = app.broker
    if Capability.WORKFLOWS not in broker.capabilities:
        raise ConfigurationError(
            f"the broker at {redact_url(broker.url)} keeps no workflows (it does not declare "
            "the WORKFLOWS capability)"
        )
    return broker


def _info(record: WorkflowRecord) -> WorkflowInfo:
    from conveyor.workflow.plan import WorkflowInfo

    return msgspec.msgpack.decode(record.info, type=WorkflowInfo)


async def read_workflow(app: Conveyor, workflow_id: str, tasks: int = 50) -> WorkflowState:
    """The state of workflow ``workflow_id`` with its first ``tasks`` tasks' states (a
    read per task); :class:`TaskNotFound` if the broker does not know it."""
    broker = _workflows(app)
    record = await broker.workflow(workflow_id)
    if record is None:
        raise TaskNotFound(
            f"unknown workflow id {workflow_id!r} (never started, or its record expired)"
        )
    info = _info(record)
    status = WorkflowStatus(record.state)
    error: ErrorInfo | None = None
    if status is not WorkflowStatus.RUNNING:
        raw = await app.result_store.get(info.tail)
        if raw is not None:
            from conveyor.handle import decode_result

            final = decode_result(raw)
            error = final.error if final.is_err else None
    from conveyor.workflow.plan import GATHER_TASK

    nodes = sorted(info.nodes, key=_path)
    groups = [n for n in nodes if n.task == GATHER_TASK]
    calls = [n for n in nodes if n.task != GATHER_TASK]
    states = await asyncio.gather(*(_barrier_state(broker, g.id) for g in groups))
    listed = calls[:tasks]
    statuses = await asyncio.gather(*(_node_status(app, n.id, status) for n in listed))
    shown = [NodeState(n.id, n.task, s, n.depth) for n, s in zip(listed, statuses, strict=True)]
    return WorkflowState(
        workflow_id=workflow_id,
        status=status,
        kind=info.kind,
        name=info.name,
        task_id=info.tail,
        created_at=record.created_at,
        finished_at=record.finished_at,
        failed_task=record.failed_task or None,
        error=error,
        tasks=shown,
        groups=[s for s in states if s is not None],
        more_tasks=max(len(calls) - tasks, 0) + info.more_nodes,
    )


def _path(node: Any) -> tuple[int, ...]:
    """``wf.1.10`` after ``wf.1.9``: ids ordered by their numbers, not as text."""
    return tuple(int(part) for part in node.id.split(".")[1:] if part.isdigit())


async def _barrier_state(broker: Broker, barrier_id: str) -> GroupState | None:
    state: BarrierState | None = await broker.barrier(barrier_id)
    if state is None:
        return None
    first = f"{barrier_id}.{state.first_failure}" if state.first_failure is not None else None
    return GroupState(barrier_id, state.size, state.joined, state.failed, first)


async def _node_status(app: Conveyor, task_id: str, workflow: WorkflowStatus) -> str:
    try:
        return (await read_state(app, task_id)).status.value
    except TaskNotFound:
        return "pending" if workflow is WorkflowStatus.RUNNING else "skipped"


async def _ended_aborted(app: Conveyor, task_id: str) -> bool:
    try:
        return (await read_state(app, task_id)).status is TaskStatus.ABORTED
    except TaskNotFound:
        return False


async def abort_workflow(app: Conveyor, workflow_id: str) -> int:
    """Abort workflow ``workflow_id`` (``WorkflowHandle.abort()``; see there)."""
    from conveyor.handle import abort_task
    from conveyor.result import AbortOutcome

    broker = _workflows(app)
    record, task_ids = await broker.abort_workflow(workflow_id)
    if record is None or record.state != WorkflowStatus.RUNNING:
        return 0
    stopped = 0
    for start in range(0, len(task_ids), ABORT_AT_ONCE):
        chunk = task_ids[start : start + ABORT_AT_ONCE]
        outcomes = await asyncio.gather(
            *(abort_task(app, task_id, in_workflow=True) for task_id in chunk)
        )
        stopped += sum(o in (AbortOutcome.DEQUEUED, AbortOutcome.SIGNALLED) for o in outcomes)
        # a task the broker held at the abort, which a worker fetched after it (the
        # broker starts it with the abort mark: it never ran) and ended as aborted before
        # its own abort_task came: stopped by this abort too
        gone = (AbortOutcome.FINISHED, AbortOutcome.UNKNOWN)
        finished = [t for t, o in zip(chunk, outcomes, strict=True) if o in gone]
        stopped += sum([await _ended_aborted(app, task_id) for task_id in finished])
    info = _info(record)
    if info.tail not in task_ids and await app.result_store.get(info.tail) is None:
        # its final task was not published yet, and never will be: its waiters learn now
        ttl = app.settings.result_ttl
        if ttl:
            ended = aborted_result(
                info.tail,
                info.tail_task,
                attempts=0,
                finished_at=app.settings.clock.now(),
                running=False,
            )
            await app.result_store.put([StoredResult(info.tail, encode_value(ended), ttl)])
    return stopped
