"""What a taskiq task sees while it runs: ``TaskiqEvents``, ``TaskiqState``,
``TaskiqMessage``, ``Context`` and ``TaskiqDepends``.

>>> @broker.task                                                        # doctest: +SKIP
... async def send(to: str, ctx: Context = TaskiqDepends()) -> None:
...     print(ctx.message.task_id, ctx.state.db)
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from conveyor.compat.taskiq.message import TaskiqMessage
from conveyor.deps import Context as ConveyorContext
from conveyor.deps import Depends
from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.compat.taskiq.brokers import AsyncBroker

__all__ = ["Context", "TaskiqDepends", "TaskiqEvents", "TaskiqMessage", "TaskiqState"]


class TaskiqEvents(enum.StrEnum):
    """When ``@broker.on_event(...)`` handlers run.

    Worker events run in each ``conveyor worker`` process (and around
    :class:`InMemoryBroker`'s in-process worker); client events run in
    ``broker.startup()``/``broker.shutdown()`` outside workers.
    """

    CLIENT_STARTUP = "CLIENT_STARTUP"
    CLIENT_SHUTDOWN = "CLIENT_SHUTDOWN"
    WORKER_STARTUP = "WORKER_STARTUP"
    WORKER_SHUTDOWN = "WORKER_SHUTDOWN"


class TaskiqState(dict[str, Any]):
    """``broker.state``: a dict whose keys are also attributes (``state.db = ...``).

    It is the wrapped app's ``app.state`` too, so Conveyor code sees the same values.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"state has no {name!r}; set it in a WORKER_STARTUP handler"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class Context:
    """taskiq's ``Context``: declare ``ctx: Context = TaskiqDepends()`` in a task.

    ``message``, ``broker`` and ``state`` are taskiq's; ``conveyor`` is Conveyor's own
    :class:`conveyor.Context` (``attempt``, ``progress()``, ``abort_requested``).
    """

    __slots__ = ("broker", "conveyor", "message", "state")

    def __init__(
        self, message: TaskiqMessage, broker: AsyncBroker, conveyor: ConveyorContext | None = None
    ) -> None:
        self.message = message
        self.broker = broker
        self.state = broker.state
        self.conveyor = conveyor

    async def requeue(self) -> None:
        """Not supported: raise an exception and let ``retry_on_error`` run the task again."""
        raise NotImplementedError(
            "Context.requeue() is not supported by conveyor.compat.taskiq: raise an exception "
            "in a task declared with retry_on_error=True, or kiq() the task again"
        )

    def reject(self) -> None:
        """Not supported: a task that raises with no retries left is dead-lettered."""
        raise NotImplementedError(
            "Context.reject() is not supported by conveyor.compat.taskiq: raise an exception; "
            "with no retries left the message goes to the dead-letter queue (conveyor dlq)"
        )


def _message_of(ctx: ConveyorContext) -> TaskiqMessage:
    labels: dict[str, Any] = dict(ctx.labels)
    if ctx.attempt > 1:
        labels["_retries"] = str(ctx.attempt - 1)
    if "schedule" in labels and "schedule_id" not in labels:
        labels["schedule_id"] = labels["schedule"]  # taskiq's scheduler sets schedule_id
    sent = ctx.message
    args = list(sent.args) if sent is not None else []
    kwargs = dict(sent.kwargs) if sent is not None else {}
    return TaskiqMessage(ctx.task_id, ctx.task_name, labels, args, kwargs)


def _context_provider(broker: AsyncBroker) -> Callable[[ConveyorContext], Context]:
    """What ``ctx: Context = TaskiqDepends()`` calls (through ``app.dependency_providers``):
    its parameter is annotated with Conveyor's Context, which the resolver injects."""

    def taskiq_context(ctx: ConveyorContext) -> Context:
        # the message as the middlewares' pre_execute() returned it, if they ran
        from conveyor.compat.taskiq._middleware import current_message

        return Context(current_message(ctx.task_id) or _message_of(ctx), broker, ctx)

    return taskiq_context


def TaskiqDepends(
    dependency: Callable[..., Any] | None = None,
    *,
    use_cache: bool = True,
    kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """taskiq's ``TaskiqDepends``: Conveyor's :func:`~conveyor.Depends`, plus taskiq's
    ``kwargs=`` (keyword arguments passed to ``dependency``).

    >>> async def send(to: str, db: Session = TaskiqDepends(get_db)) -> None: ...  # doctest: +SKIP
    """
    if kwargs:
        if dependency is None:
            raise ConfigurationError("TaskiqDepends(kwargs=...) needs a dependency to call")
        dependency = functools.partial(dependency, **kwargs)
    return Depends(dependency, use_cache=use_cache)
