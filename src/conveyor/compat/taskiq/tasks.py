"""Tasks, taskiq's way: ``AsyncTaskiqDecoratedTask`` (what ``@broker.task`` returns, a real
:class:`~conveyor.Task`) and ``AsyncKicker`` (``task.kicker()``, per-call labels and task id).

>>> await send.kiq("a@b.c")                                             # doctest: +SKIP
>>> await send.kicker().with_labels(delay=5).with_task_id("t-1").kiq("a@b.c")  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar

from conveyor.compat.taskiq._options import _label
from conveyor.compat.taskiq.errors import SendTaskError
from conveyor.compat.taskiq.results import AsyncTaskiqTask, forget_reported
from conveyor.compat.taskiq.schedules import CreatedSchedule, ScheduledTask, ScheduleSource
from conveyor.errors import BrokerUnavailable, EnqueueError
from conveyor.task import CallOptions, Task, TaskOptions

if TYPE_CHECKING:
    from conveyor.compat.taskiq.brokers import AsyncBroker

__all__ = ["AsyncKicker", "AsyncTaskiqDecoratedTask"]

P = ParamSpec("P")
R = TypeVar("R")

# labels that configure the call or the task rather than travel with the message
_NOT_SENT = frozenset({"schedule", "types_of_exceptions"})


class AsyncKicker(Generic[P, R]):
    """``task.kicker()``: per-call labels and task id, then ``kiq()`` or a schedule.

    >>> await send.kicker().with_labels(delay=5, tenant="a").kiq("a@b.c")  # doctest: +SKIP

    Label ``delay`` (seconds) delays the run, ``priority`` sets its priority and
    ``timeout`` (seconds) its timeout; every label is kept, as a string, in the message's
    labels (``Context.message.labels``), and a schedule's labels in each of its runs.
    """

    def __init__(self, task: AsyncTaskiqDecoratedTask[P, R], labels: dict[str, Any]) -> None:
        self.task = task
        self.task_name = task.task_name
        self.broker = task.broker
        self.labels = labels
        self.custom_task_id: str | None = None
        self.custom_schedule_id: str | None = None

    def with_labels(self, **labels: Any) -> Self:
        """Add or replace labels for this call."""
        self.labels.update(labels)
        return self

    def with_task_id(self, task_id: str) -> Self:
        """Use ``task_id`` instead of a fresh one."""
        self.custom_task_id = task_id
        return self

    def with_schedule_id(self, schedule_id: str) -> Self:
        """Use ``schedule_id`` for the next ``schedule_by_*`` call."""
        self.custom_schedule_id = schedule_id
        return self

    def with_broker(self, broker: AsyncBroker) -> Self:
        """Send through ``broker`` (a shared task's way; ``broker``'s workers run the
        task if they have it)."""
        self.broker = broker
        return self

    async def kiq(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskiqTask[R]:
        """Send the call; returns its handle at once."""
        return await self.broker._own(self.task).send(args, kwargs, self._options())

    def _options(self) -> CallOptions | None:
        labels = self.labels
        declared = self.task.labels
        changed = {
            k: _label(v)
            for k, v in labels.items()
            if k not in _NOT_SENT and (k not in declared or declared[k] != v)
        }
        delay = labels.get("delay")
        if not changed and self.custom_task_id is None:
            return self.task.default_options
        priority, timeout = labels.get("priority"), labels.get("timeout")
        return CallOptions(
            delay=None if delay is None else float(delay),
            priority=None if priority is None else int(priority),
            task_id=self.custom_task_id,
            labels=changed or None,
            timeout=None if "timeout" not in changed or timeout is None else float(timeout),
        )

    async def schedule_by_cron(
        self, source: ScheduleSource, cron: str, *args: P.args, **kwargs: P.kwargs
    ) -> CreatedSchedule[R]:
        """Run the call on ``cron`` (5 fields; 6 with seconds first) until unscheduled."""
        return await self._schedule(source, args, kwargs, cron=cron)

    async def schedule_by_time(
        self, source: ScheduleSource, time: datetime, *args: P.args, **kwargs: P.kwargs
    ) -> CreatedSchedule[R]:
        """Run the call once at ``time`` (naive: UTC)."""
        return await self._schedule(source, args, kwargs, time=time)

    async def schedule_by_interval(
        self,
        source: ScheduleSource,
        interval: float | timedelta,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> CreatedSchedule[R]:
        """Run the call every ``interval`` seconds (aligned to the Unix epoch)."""
        return await self._schedule(source, args, kwargs, interval=interval)

    async def _schedule(
        self,
        source: ScheduleSource,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        **trigger: Any,
    ) -> CreatedSchedule[R]:
        source._attach(self.broker)
        scheduled = ScheduledTask(
            task_name=self.task_name,
            labels={k: v for k, v in self.labels.items() if k not in _NOT_SENT},
            args=list(args),
            kwargs=dict(kwargs),
            schedule_id=self.custom_schedule_id or uuid.uuid4().hex,
            **trigger,
        )
        await source.add_schedule(scheduled)
        return CreatedSchedule(self, source, scheduled)


class AsyncTaskiqDecoratedTask(Task[P, R]):
    """What ``@broker.task`` returns: a real :class:`~conveyor.Task` with taskiq's
    ``kicker()``, ``schedule_by_cron()``/``schedule_by_time()``/``schedule_by_interval()``,
    ``task_name``, ``labels``, ``original_func`` and ``broker``."""

    def __init__(
        self,
        broker: AsyncBroker,
        fn: Callable[P, Any],
        options: TaskOptions,
        labels: dict[str, Any],
    ) -> None:
        super().__init__(broker.conveyor, fn, options)
        self.broker = broker
        self.task_name = options.name
        self.labels = labels
        self.original_func = fn
        delay = labels.get("delay")
        # a task-level `delay` label delays every call; nothing else needs per-call options
        self.default_options = None if delay is None else CallOptions(delay=float(delay))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskiqTask[R]:
        """Send the task; returns its handle at once (``kiq`` is the same method)."""
        return await self.send(args, kwargs, self.default_options)

    kiq = enqueue

    async def send(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], options: CallOptions | None
    ) -> AsyncTaskiqTask[R]:
        """Enqueue one call with ``options``; ``kiq()`` and ``kicker().kiq()`` land here."""
        app = self.app
        if self.broker._kicks_itself:
            return await self.broker._kick(self, args, kwargs, options)
        try:
            # connects a broker not started yet; an id from with_id_generator()
            options = await self.broker._prepare_send(options)
            if options is not None and options.task_id is not None:
                await forget_reported(app.result_store, options.task_id)
            handle = await app.enqueue(self, args, kwargs, options)
        except SendTaskError:
            raise
        except (BrokerUnavailable, EnqueueError, OSError) as exc:
            raise SendTaskError(f"cannot send task {self.task_name!r}: {exc}") from exc
        sent: AsyncTaskiqTask[R] = AsyncTaskiqTask(app, handle.task_id, self.return_type)
        await self.broker._sent(sent)  # InMemoryBroker(await_inplace=True) waits for it
        return sent

    def kicker(self) -> AsyncKicker[P, R]:
        """A kicker for one call: ``task.kicker().with_labels(delay=5).kiq(...)``."""
        return AsyncKicker(self, dict(self.labels))

    async def schedule_by_cron(
        self, source: ScheduleSource, cron: str, *args: P.args, **kwargs: P.kwargs
    ) -> CreatedSchedule[R]:
        """``await task.schedule_by_cron(source, "*/5 * * * *", ...)``; see AsyncKicker."""
        return await self.kicker().schedule_by_cron(source, cron, *args, **kwargs)

    async def schedule_by_time(
        self, source: ScheduleSource, time: datetime, *args: P.args, **kwargs: P.kwargs
    ) -> CreatedSchedule[R]:
        """``await task.schedule_by_time(source, when, ...)``; see AsyncKicker."""
        return await self.kicker().schedule_by_time(source, time, *args, **kwargs)

    async def schedule_by_interval(
        self,
        source: ScheduleSource,
        interval: float | timedelta,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> CreatedSchedule[R]:
        """``await task.schedule_by_interval(source, 60, ...)``; see AsyncKicker."""
        return await self.kicker().schedule_by_interval(source, interval, *args, **kwargs)
