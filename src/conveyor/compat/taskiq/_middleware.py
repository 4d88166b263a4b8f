"""taskiq's middleware base class, and the Conveyor hook that runs middlewares.

A broker with middlewares other than the retry ones adds one :class:`MiddlewareHook` to
its Conveyor app; the hook calls each middleware's methods where taskiq calls them:

==================  ==========================================  ==========================
taskiq method       when                                        Conveyor hook
==================  ==========================================  ==========================
``pre_send``        before the message is sent; may change it   ``before_enqueue``
``post_send``       after the broker accepted it                ``after_enqueue``
``pre_execute``     in the worker, before the task runs         ``before_execute``
``on_error``        an attempt raised (the exception itself)    ``on_error``
``post_execute``    after every attempt, retried ones included  ``on_retry``,
                                                                ``after_execute``
``post_save``       the attempt's result is stored (the last    ``after_execute``
                    attempt: a retried one stores nothing)
``startup``,        ``broker.startup()``/``shutdown()``, and    worker startup/shutdown
``shutdown``        in each worker process                      handlers
==================  ==========================================  ==========================

``pre_send``/``pre_execute`` and ``post_*``/``on_error`` run in taskiq's orders (as
added, and reversed). A method may be sync or async.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from conveyor.compat.taskiq._options import _label
from conveyor.compat.taskiq.context import _message_of
from conveyor.compat.taskiq.message import TaskiqMessage
from conveyor.compat.taskiq.results import TaskiqResult, is_custom_backend
from conveyor.deps import Context as ConveyorContext
from conveyor.hooks import Hook
from conveyor.message import Message
from conveyor.result import ErrorInfo, Result, TaskStatus

if TYPE_CHECKING:
    from conveyor.compat.taskiq.brokers import AsyncBroker

__all__ = ["MiddlewareHook", "TaskiqMiddleware"]

log = logging.getLogger("conveyor.compat.taskiq")

T = TypeVar("T")


class TaskiqMiddleware:
    """taskiq's middleware base class: override what you need, sync or async, and add
    it with ``broker.add_middlewares(...)`` or ``broker.with_middlewares(...)``.

    ``self.broker`` is the broker it was added to. See the module docstring for where
    each method runs; a method that raises is logged and does not change the task's
    outcome (``pre_send`` aside: it stops the ``kiq()``, as in taskiq).
    """

    def __init__(self) -> None:
        self.broker: AsyncBroker = None  # type: ignore[assignment]  # set by set_broker()

    def set_broker(self, broker: AsyncBroker) -> None:
        """Called by the broker the middleware is added to."""
        self.broker = broker

    def startup(self) -> Awaitable[None] | None:
        """Run by ``broker.startup()`` (a client) and when a worker process starts, after
        the event handlers."""
        return None

    def shutdown(self) -> Awaitable[None] | None:
        """Run by ``broker.shutdown()`` and when a worker process stops."""
        return None

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage | Awaitable[TaskiqMessage]:
        """Before a message is sent: return it, changed or not (labels, args, kwargs,
        task id)."""
        return message

    def post_send(self, message: TaskiqMessage) -> Awaitable[None] | None:
        """After the broker accepted the message."""
        return None

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage | Awaitable[TaskiqMessage]:
        """In the worker, before the task runs. The message returned is the one the
        task's ``Context.message`` and the later methods see."""
        return message

    def post_execute(
        self, message: TaskiqMessage, result: TaskiqResult[Any]
    ) -> Awaitable[None] | None:
        """In the worker, after each attempt (a retried one too)."""
        return None

    def post_save(
        self, message: TaskiqMessage, result: TaskiqResult[Any]
    ) -> Awaitable[None] | None:
        """In the worker, when the attempt's result is stored (the last attempt)."""
        return None

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> Awaitable[None] | None:
        """In the worker, when an attempt raised ``exception``."""
        return None


def overrides(middleware: TaskiqMiddleware, method: str) -> bool:
    """``middleware`` defines its own ``method`` (taskiq calls no others)."""
    return getattr(type(middleware), method, None) is not getattr(TaskiqMiddleware, method)


async def maybe_await(value: T | Awaitable[T]) -> T:
    """The value of a sync or async middleware method."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(slots=True)
class _Run:
    """The attempt running in this asyncio task, as the middlewares saw it."""

    message: TaskiqMessage
    started: float
    error: BaseException | None = None


# before_execute, the task body and the after hooks of one attempt share an asyncio task
_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "conveyor_taskiq_run", default=None
)


def current_message(task_id: str) -> TaskiqMessage | None:
    """The message ``pre_execute`` returned for the attempt of ``task_id`` running here."""
    run = _RUN.get()
    return run.message if run is not None and run.message.task_id == task_id else None


class MiddlewareHook(Hook):
    """Runs ``broker.middlewares`` (read at each call, so middlewares added later count)
    from Conveyor's hook points."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker

    def _with(self, method: str) -> list[TaskiqMiddleware]:
        return [m for m in self.broker.middlewares if overrides(m, method)]

    # -- producer ----------------------------------------------------------------------

    async def before_enqueue(self, message: Message) -> Message:
        middlewares = self._with("pre_send")
        if not middlewares:
            return message
        sent = _sent_message(message)
        for middleware in middlewares:
            sent = await maybe_await(middleware.pre_send(sent))
        return _applied(message, sent)

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        middlewares = self._with("post_send")
        if not middlewares:
            return
        sent = _sent_message(message)
        for middleware in reversed(middlewares):
            await _guarded(middleware, "post_send", sent)

    # -- worker ------------------------------------------------------------------------

    async def before_execute(self, message: Message, context: ConveyorContext) -> None:
        received = _message_of(context)
        for middleware in self._with("pre_execute"):
            try:
                received = await maybe_await(middleware.pre_execute(received))
            except Exception:
                log.exception("%s.pre_execute raised; ignoring it", type(middleware).__name__)
        _RUN.set(_Run(received, time.perf_counter()))

    async def on_error(self, message: Message, attempt: int, error: BaseException) -> None:
        run = self._run(message, attempt)
        run.error = error
        middlewares = self._with("on_error")
        if not middlewares:
            return
        result = _result(run, message, attempt, error=error)
        for middleware in reversed(middlewares):
            await _guarded(middleware, "on_error", run.message, result, error)

    async def on_retry(
        self, message: Message, attempt: int, delay: float, error: ErrorInfo
    ) -> None:
        run = self._run(message, attempt)
        middlewares = self._with("post_execute")
        if middlewares:
            result = _result(run, message, attempt, error=run.error or error)
            for middleware in reversed(middlewares):
                await _guarded(middleware, "post_execute", run.message, result)
        _RUN.set(None)

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        run = self._run(message, result.attempts)
        seen = _from_conveyor(run, result)
        for middleware in reversed(self._with("post_execute")):
            await _guarded(middleware, "post_execute", run.message, seen)
        backend = self.broker.result_backend
        if is_custom_backend(backend):
            # an application's backend stores the result itself, as taskiq's worker has
            # it do; Conveyor's store keeps the status either way
            try:
                await backend.set_result(message.task_id, seen)
            except Exception:
                log.exception("%s.set_result raised", type(backend).__name__)
        for middleware in reversed(self._with("post_save")):
            await _guarded(middleware, "post_save", run.message, seen)
        _RUN.set(None)

    def _run(self, message: Message, attempt: int) -> _Run:
        run = _RUN.get()
        if run is None or run.message.task_id != message.task_id:
            # no before_execute for this attempt (aborted before it started)
            context = ConveyorContext(
                self.broker.conveyor,
                message.task_id,
                message.task,
                attempt,
                message.queue,
                message.labels,
                message,
            )
            run = _Run(_message_of(context), time.perf_counter())
        return run


async def _guarded(middleware: TaskiqMiddleware, method: str, *args: Any) -> None:
    """Call ``middleware.method(*args)``; an exception is logged, as Conveyor's hooks'."""
    try:
        await maybe_await(getattr(middleware, method)(*args))
    except Exception:
        log.exception("%s.%s raised; ignoring it", type(middleware).__name__, method)


def _sent_message(message: Message) -> TaskiqMessage:
    return TaskiqMessage(
        task_id=message.task_id,
        task_name=message.task,
        labels=dict(message.labels),
        args=list(message.args),
        kwargs=dict(message.kwargs),
    )


def _applied(message: Message, sent: TaskiqMessage) -> Message:
    """``message`` with what ``pre_send`` changed: task id, task name, labels (as
    strings), args and kwargs."""
    return msgspec.structs.replace(
        message,
        task_id=str(sent.task_id),
        task=str(sent.task_name),
        labels={str(k): _label(v) for k, v in sent.labels.items()},
        args=list(sent.args),
        kwargs=dict(sent.kwargs),
    )


def _result(
    run: _Run, message: Message, attempt: int, *, error: BaseException | ErrorInfo
) -> TaskiqResult[Any]:
    """A failed attempt's result, as taskiq's middlewares get it."""
    return TaskiqResult(
        is_err=True,
        return_value=None,
        execution_time=round(time.perf_counter() - run.started, 2),
        labels=run.message.labels,
        error=error,
        task_id=message.task_id,
        task=message.task,
        status=TaskStatus.RETRYING,
        attempts=attempt,
    )


def _from_conveyor(run: _Run, result: Result[Any]) -> TaskiqResult[Any]:
    """A final result, as taskiq's middlewares get it: ``error`` is the exception the
    attempt raised (its :class:`ErrorInfo` when there was none: an abort)."""
    error: BaseException | ErrorInfo | None = None
    if result.is_err:
        error = run.error if run.error is not None else result.error
    return TaskiqResult(
        is_err=result.is_err,
        return_value=result.return_value,
        execution_time=round(result.execution_time, 2),
        labels=run.message.labels,
        error=error,
        task_id=result.task_id,
        task=result.task,
        status=result.status,
        attempts=result.attempts,
        finished_at=result.finished_at,
    )
