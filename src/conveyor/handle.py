"""A task once enqueued: :class:`TaskHandle`, and every read of a task by id (its result,
its status with progress, and abort), which the app, the CLI and the dashboard share.

>>> handle = await add.kiq(1, 2)               # doctest: +SKIP
>>> (await handle.wait_result(timeout=5)).return_value
3

Two ways to read a result, with two contracts: :meth:`TaskHandle.wait_result` waits
(push-based) and raises :class:`ResultTimeout`; :meth:`TaskHandle.result` answers now
and raises :class:`ResultMissing`. :meth:`TaskHandle.get` is ``wait_result`` returning
the value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import msgspec

from conveyor.brokers import redact_url
from conveyor.brokers.base import (
    Capability,
    FlowControl,
    StatusStore,
    StoredResult,
    own_result_store,
    status_of,
)
from conveyor.clock import Seconds, seconds
from conveyor.errors import ConfigurationError, ResultMissing, ResultTimeout, TaskNotFound
from conveyor.message import (
    NO_CONVERSION,
    MalformedMessage,
    Message,
    convert,
    decode_message,
    encode_value,
)
from conveyor.result import AbortOutcome, Result, TaskState, TaskStatus, aborted_result

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["TaskHandle", "abort_task", "decode_result", "read_state", "record_progress"]

R = TypeVar("R")


class TaskHandle(Generic[R]):
    """A reference to one enqueued task: its id, result and status.

    ``app.handle(task_id, task="...")`` makes one for an id kept elsewhere."""

    __slots__ = ("_app", "_return_type", "task_id")

    def __init__(self, app: Conveyor, task_id: str, return_type: Any = Any) -> None:
        self._app = app
        self.task_id = task_id
        self._return_type = return_type

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    async def wait_result(self, timeout: Seconds = 60.0) -> Result[R]:
        """Wait (push-based, no polling) for the task's :class:`Result`.

        Raises :class:`ResultTimeout` after ``timeout`` seconds.
        """
        limit = seconds(timeout) or 0.0
        raw = await self._app.result_store.wait(self.task_id, limit)
        if raw is None:
            raise ResultTimeout(f"no result for task {self.task_id} within {limit:g} s")
        return decode_result(raw, self._return_type)

    async def get(self, timeout: Seconds = 60.0) -> R:
        """The return value; raises :class:`TaskFailed` carrying the remote error."""
        return (await self.wait_result(timeout)).unwrap()

    async def result(self) -> Result[R]:
        """The stored result now, without waiting; raises :class:`ResultMissing`."""
        raw = await self._app.result_store.get(self.task_id)
        if raw is None:
            raise ResultMissing(f"no result stored for task {self.task_id}")
        return decode_result(raw, self._return_type)

    async def status(self) -> TaskState:
        """Where the task is now: queued, running, retrying, or its terminal status,
        with progress; raises :class:`TaskNotFound` for an unknown id."""
        return await read_state(self._app, self.task_id)

    async def abort(self) -> AbortOutcome:
        """Abort the task: if queued it never runs; if running its worker cancels it. The
        task then ends with status ``aborted``, without retries (docs/aborting.md).

        >>> await handle.abort()                       # doctest: +SKIP
        <AbortOutcome.SIGNALLED: 'signalled'>
        """
        return await abort_task(self._app, self.task_id)

    def abort_sync(self) -> AbortOutcome:
        """:meth:`abort` for synchronous code."""
        return self._app._connections.portal().call(self.abort)

    def status_sync(self) -> TaskState:
        """:meth:`status` for synchronous code (a Django view polling a task)."""
        return self._app._connections.portal().call(self.status)

    def result_sync(self) -> Result[R]:
        """:meth:`result` for synchronous code; raises :class:`ResultMissing`."""
        return self._app._connections.portal().call(self.result)

    def wait_result_sync(self, timeout: Seconds = 60.0) -> Result[R]:
        """:meth:`wait_result` for synchronous code (not from the thread running the
        app's event loop, which it would block: use ``await handle.wait_result()``)."""
        connections = self._app._connections
        connections.refuse_blocking_on_own_loop("wait_result_sync()/get_sync()")
        return connections.portal().call(lambda: self.wait_result(timeout))

    def get_sync(self, timeout: Seconds = 60.0) -> R:
        """:meth:`get` for synchronous code."""
        return self.wait_result_sync(timeout).unwrap()


_result_decoder = msgspec.msgpack.Decoder(Result[Any])


def decode_result(raw: bytes, return_type: Any = Any) -> Result[Any]:
    """Decode a stored result, converting its value to ``return_type``."""
    result = _result_decoder.decode(raw)
    if return_type in NO_CONVERSION or result.return_value is None or result.is_err:
        return result
    return msgspec.structs.replace(result, return_value=convert(result.return_value, return_type))


class _Progress(msgspec.Struct, frozen=True):
    fraction: float
    message: str | None = None
    attempt: int = 0  # 0: unknown (written by an older version)


_WAITING = (TaskStatus.QUEUED, TaskStatus.RETRYING)


async def read_state(app: Conveyor, task_id: str) -> TaskState:
    """The task's status: its result's when it has one, else where the broker holds it
    (``status_of``), with the progress of the running attempt."""
    store, broker = app.result_store, app.broker
    stored = store.get_status if isinstance(store, StatusStore) else store.get
    raw = await stored(task_id)
    location = None if raw is not None else await broker.locate(task_id)
    if raw is None and location is None:
        # it may have finished between the two reads: a task's result is stored before
        # (or with) the ack after which the broker forgets it, so a second read finds it
        raw = await stored(task_id)
    if raw is not None:
        result = decode_result(raw)
        return TaskState(task_id, result.status, result.attempts, result=result)
    if location is None:
        raise TaskNotFound(f"unknown task id {task_id!r} (never enqueued, or its result expired)")
    status, attempts = status_of(location), location.attempts
    if status in _WAITING and Capability.FLOW in broker.capabilities:
        (reason,) = await cast("FlowControl", broker).get_marks([f"wait:{task_id}"])
        if reason is not None:
            return TaskState(task_id, status, attempts, waiting=reason)
    progress = await store.get_progress(task_id) if status is TaskStatus.RUNNING else None
    if progress is not None:
        snapshot = msgspec.msgpack.decode(progress, type=_Progress)
        if snapshot.attempt in (0, attempts):  # not an earlier attempt's last report
            return TaskState(task_id, status, attempts, snapshot.fraction, snapshot.message)
    return TaskState(task_id, status, attempts)


async def record_progress(
    app: Conveyor, task_id: str, fraction: float, message: str | None, attempt: int = 0
) -> None:
    """Store a progress snapshot of ``attempt`` (``Context.progress`` calls this).

    It is kept ``result_ttl`` seconds (an hour when results are not stored), and replaced
    by the task's result when it ends."""
    data = encode_value(_Progress(fraction, message, attempt))
    await app.result_store.set_progress(task_id, data, app.settings.result_ttl or 3600.0)


async def abort_task(app: Conveyor, task_id: str, *, in_workflow: bool = False) -> AbortOutcome:
    """Abort a task by id (``TaskHandle.abort()`` and ``app.abort()``; see there).

    A workflow's task removed before it ran leaves its workflow as a failed task would:
    its group slot is filled as aborted (the group fails), or the workflow ends aborted.
    ``in_workflow``: the whole workflow is being aborted, which does that itself."""
    broker, store = app.broker, app.result_store
    if Capability.ABORT not in broker.capabilities:
        raise ConfigurationError(
            f"the broker at {redact_url(broker.url)} cannot abort tasks (it does not declare "
            "the ABORT capability)"
        )
    finished_at = app.settings.clock.now()
    default_ttl = app.settings.result_ttl

    removed: list[tuple[Message, Result[Any]]] = []  # a workflow's task, removed

    def result_for(body: bytes, attempts: int) -> StoredResult | None:
        message: Message | None
        try:
            message = decode_message(body)
        except MalformedMessage:
            name, ttl = "", default_ttl
            message = None
        else:
            name = message.task
            ttl = default_ttl if message.result_ttl is None else message.result_ttl
        result = aborted_result(
            task_id, name, attempts=attempts, finished_at=finished_at, running=False
        )
        if message is not None and message.link is not None:
            removed[:] = [(message, result)]
        if ttl == 0:  # the task stores no results
            return None
        return StoredResult(task_id, encode_value(result), ttl)

    if store is own_result_store(broker):
        outcome = await broker.abort(task_id, result_for)
    else:
        # results live elsewhere: the broker removes the message, then we store its
        # result (a crash in between leaves the task unknown rather than queued)
        built: list[StoredResult] = []

        def build(body: bytes, attempts: int) -> None:
            stored = result_for(body, attempts)
            built[:] = [stored] if stored is not None else []

        outcome = await broker.abort(task_id, build)
        if outcome is AbortOutcome.DEQUEUED and built:
            await store.put(built)
    if outcome is AbortOutcome.DEQUEUED and removed and not in_workflow:
        await _leave_workflow(app, *removed[0])
    stored = store.get_status if isinstance(store, StatusStore) else store.get
    if outcome is AbortOutcome.UNKNOWN and await stored(task_id) is not None:
        return AbortOutcome.FINISHED  # brokers forget acked tasks; their result remains
    return outcome


async def _leave_workflow(app: Conveyor, message: Message, result: Result[Any]) -> None:
    """A workflow's task was removed before it ran: apply what its failure leaves (its
    group slot, or the workflow's end), in a step of its own. A crash between the abort
    and this step leaves its group waiting: abort the whole workflow then."""
    from conveyor.workflow.plan import on_failure

    assert message.link is not None
    follow = on_failure(message, message.link, result, encode_value(result), app.settings)
    if follow.results and app._connections.current().results_apart:
        await app.result_store.put(list(follow.results))
        follow = msgspec.structs.replace(follow, results=())
    await app.broker.apply_follow(follow)
