"""taskiq's API on Conveyor: change the imports, keep the code.

>>> # from taskiq import InMemoryBroker, TaskiqDepends, Context          (before)
>>> from conveyor.compat.taskiq import InMemoryBroker, TaskiqDepends, Context
>>> broker = InMemoryBroker()
>>> @broker.task(retry_on_error=True, max_retries=3)
... async def add(a: int, b: int) -> int:
...     return a + b
>>> await broker.startup()                                    # doctest: +SKIP
>>> (await (await add.kiq(1, 2)).wait_result(timeout=5)).return_value   # doctest: +SKIP
3

taskiq-redis names (``RedisStreamBroker``, ``RedisAsyncResultBackend``,
``ListRedisScheduleSource``...) are here too. Every broker wraps a real
:class:`~conveyor.Conveyor` app, ``broker.conveyor``; its tasks are real
:class:`~conveyor.Task` objects, ``kiq()`` returns a :class:`~conveyor.TaskHandle`, and
``conveyor worker pkg.module:broker`` / ``conveyor scheduler pkg.module:scheduler`` run
them. What maps 1:1, what differs and what is left out: docs/migrating-from-taskiq.md.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, Self, TypeVar, overload
from urllib.parse import urlsplit

from conveyor.app import Conveyor
from conveyor.brokers import result_store_class_for
from conveyor.deps import Context as ConveyorContext
from conveyor.deps import Depends
from conveyor.errors import ConfigurationError, ConveyorError, ResultMissing, ResultTimeout
from conveyor.result import Result
from conveyor.retry import Backoff, none
from conveyor.scheduler.schedule import Schedule, schedule_from_entry
from conveyor.scheduler.triggers import At, Cron, Every, InvalidSchedule
from conveyor.task import CallOptions, Seconds, Task, TaskHandle, TaskOptions, seconds

if TYPE_CHECKING:
    from conveyor.scheduler.book import ScheduleBook
    from conveyor.worker.consumer import Worker

__all__ = [
    "AsyncBroker",
    "AsyncKicker",
    "AsyncResultBackend",
    "AsyncTaskiqDecoratedTask",
    "AsyncTaskiqTask",
    "Context",
    "CreatedSchedule",
    "InMemoryBroker",
    "LabelScheduleSource",
    "ListQueueBroker",
    "ListRedisScheduleSource",
    "RedisAsyncResultBackend",
    "RedisScheduleSource",
    "RedisStreamBroker",
    "ResultGetError",
    "ScheduleSource",
    "ScheduledTask",
    "SimpleRetryMiddleware",
    "SmartRetryMiddleware",
    "TaskiqDepends",
    "TaskiqError",
    "TaskiqEvents",
    "TaskiqMessage",
    "TaskiqMiddleware",
    "TaskiqResult",
    "TaskiqResultTimeoutError",
    "TaskiqScheduler",
    "TaskiqState",
]

log = logging.getLogger("conveyor.compat.taskiq")

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Any])

# taskiq's exception names for the errors Conveyor raises in the same places
TaskiqError = ConveyorError
TaskiqResultTimeoutError = ResultTimeout
ResultGetError = ResultMissing
TaskiqResult = Result

# seconds per wait while waiting without a limit (taskiq's wait_result(timeout=-1))
_UNBOUNDED_WAIT_STEP = 3600.0


# -- state, events, message, context ---------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class TaskiqMessage:
    """The call a task is running, as taskiq's ``Context.message`` shows it.

    ``args``/``kwargs`` are as sent (before conversion to the annotated types); label
    values are strings. ``labels["_retries"]`` counts the earlier attempts, as taskiq's
    retry middleware does.
    """

    task_id: str
    task_name: str
    labels: dict[str, str]
    args: list[Any]
    kwargs: dict[str, Any]


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
    labels = dict(ctx.labels)
    if ctx.attempt > 1:
        labels["_retries"] = str(ctx.attempt - 1)
    sent = ctx.message
    args = list(sent.args) if sent is not None else []
    kwargs = dict(sent.kwargs) if sent is not None else {}
    return TaskiqMessage(ctx.task_id, ctx.task_name, labels, args, kwargs)


def _context_provider(broker: AsyncBroker) -> Callable[[ConveyorContext], Context]:
    """What ``ctx: Context = TaskiqDepends()`` calls (through ``app.dependency_providers``):
    its parameter is annotated with Conveyor's Context, which the resolver injects."""

    def taskiq_context(ctx: ConveyorContext) -> Context:
        return Context(_message_of(ctx), broker, ctx)

    return taskiq_context


def _constant(value: Any) -> Callable[[], Any]:
    def provide() -> Any:
        return value

    return provide


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


# -- retries ---------------------------------------------------------------------------


class TaskiqMiddleware:
    """taskiq's middleware base class, so modules that define middlewares still import.

    :meth:`AsyncBroker.with_middlewares` understands the two retry middlewares only; port
    other middlewares to a :class:`conveyor.Hook` (``broker.conveyor.add_hook(...)``).
    """


@dataclass(frozen=True)
class SimpleRetryMiddleware(TaskiqMiddleware):
    """Retry policy for tasks declared with ``retry_on_error=True``: at most
    ``max_retries`` (default ``default_retry_count``) runs in total, retried at once.

    Without any retry middleware, ``retry_on_error=True`` uses these defaults (taskiq would
    not retry at all).
    """

    default_retry_count: int = 3
    default_retry_label: bool = False
    no_result_on_retry: bool = True
    types_of_exceptions: Iterable[type[BaseException]] | None = None

    def backoff(self, delay_label: Any) -> Backoff:
        """Retry at once, as taskiq's middleware re-sends at once."""
        return none()


@dataclass(frozen=True)
class SmartRetryMiddleware(TaskiqMiddleware):
    """:class:`SimpleRetryMiddleware` with a delay between runs: ``default_delay`` (or the
    task's ``delay`` label) seconds, times the retry number with ``use_delay_exponent``
    (capped at ``max_delay_exponent``), plus up to one second with ``use_jitter``."""

    default_retry_count: int = 3
    default_retry_label: bool = False
    no_result_on_retry: bool = True
    default_delay: float = 5
    use_jitter: bool = False
    use_delay_exponent: bool = False
    max_delay_exponent: float = 60
    schedule_source: ScheduleSource | None = None
    types_of_exceptions: Iterable[type[BaseException]] | None = None

    def backoff(self, delay_label: Any) -> Backoff:
        base = self.default_delay if delay_label is None else float(delay_label)
        return _SmartDelay(base, self.use_delay_exponent, self.max_delay_exponent, self.use_jitter)


@dataclass(frozen=True, slots=True)
class _SmartDelay:
    """SmartRetryMiddleware's delay, as a Conveyor backoff (``attempt`` is the retry number)."""

    delay: float
    exponent: bool
    cap: float
    jitter: bool
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __call__(self, attempt: int) -> float:
        delay = min(self.delay * attempt, self.cap) if self.exponent else self.delay
        return delay + self.rng.random() if self.jitter else delay


_RetryMiddleware = SimpleRetryMiddleware | SmartRetryMiddleware


def _flag(value: Any) -> bool:
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _label(value: Any) -> str:
    """Conveyor labels are strings; taskiq's may be numbers and booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


# -- results ---------------------------------------------------------------------------


class AsyncTaskiqTask(TaskHandle[R]):
    """What ``kiq()`` returns: a :class:`~conveyor.TaskHandle` with taskiq's methods and
    defaults (``wait_result()`` waits without a limit unless given ``timeout``)."""

    __slots__ = ()

    async def wait_result(
        self,
        timeout: Seconds = -1,
        *,
        check_interval: float | None = None,
        with_logs: bool = False,
    ) -> Result[R]:
        """The task's :class:`~conveyor.Result`; ``timeout=-1`` (taskiq's default) waits
        without a limit, otherwise :class:`~conveyor.ResultTimeout`
        (``TaskiqResultTimeoutError``) is raised after ``timeout`` seconds.

        ``check_interval`` and ``with_logs`` are accepted and ignored: results are pushed
        to waiters, not polled, and task output is not captured.
        """
        limit = seconds(timeout)
        if limit is not None and limit >= 0:
            return await super().wait_result(limit)
        while True:
            try:
                return await super().wait_result(_UNBOUNDED_WAIT_STEP)
            except ResultTimeout:
                continue

    async def is_ready(self) -> bool:
        """True once the task's result is stored."""
        try:
            await self.result()
        except ResultMissing:
            return False
        return True

    async def get_result(self, with_logs: bool = False) -> Result[R]:
        """The stored result now; raises ``ResultGetError`` (ResultMissing) if none yet."""
        return await self.result()


class AsyncResultBackend:
    """Reads results of the broker it is attached to. Every compat broker has one:
    Conveyor always stores results (taskiq's default backend stores none)."""

    def __init__(self) -> None:
        self._broker: AsyncBroker | None = None

    def _attach(self, broker: AsyncBroker) -> None:
        if self._broker is not None and self._broker is not broker:
            raise ConfigurationError(
                f"{type(self).__name__} is already attached to {self._broker!r}; give each "
                "broker its own result backend"
            )
        self._broker = broker

    def _app(self) -> Conveyor:
        if self._broker is None:
            raise ConfigurationError(
                f"{type(self).__name__} is not attached to a broker: "
                "use broker.with_result_backend(backend)"
            )
        return self._broker.conveyor

    async def startup(self) -> None:
        """Nothing to do: the broker's ``startup()`` connects the result store."""

    async def shutdown(self) -> None:
        """Nothing to do: the broker's ``shutdown()`` closes the result store."""

    async def is_result_ready(self, task_id: str) -> bool:
        """True once ``task_id`` has a stored result."""
        return await self._app().get_result(task_id) is not None

    async def get_result(self, task_id: str, with_logs: bool = False) -> Result[Any]:
        """The stored result of ``task_id``; raises ``ResultGetError`` if there is none."""
        result = await self._app().get_result(task_id)
        if result is None:
            raise ResultGetError(f"no result stored for task {task_id} (not finished, or expired)")
        return result


class RedisAsyncResultBackend(AsyncResultBackend):
    """taskiq-redis's result backend: results are kept on ``redis_url`` for
    ``result_ex_time`` seconds (``result_px_time`` ms), else Conveyor's ``result_ttl``.

    When ``redis_url`` is the broker's server and database, the broker's own result store
    (and key prefix) is used. ``keep_results=False`` is ignored: results expire by TTL.
    """

    def __init__(
        self,
        redis_url: str,
        keep_results: bool = True,
        result_ex_time: int | None = None,
        result_px_time: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if result_ex_time is not None and result_px_time is not None:
            raise ConfigurationError("give result_ex_time or result_px_time, not both")
        self.redis_url = redis_url
        self.keep_results = keep_results
        self.result_ttl: float | None = (
            float(result_ex_time)
            if result_ex_time is not None
            else (result_px_time / 1000 if result_px_time is not None else None)
        )
        _note_ignored(type(self).__name__, options)


def _note_ignored(owner: str, options: Mapping[str, Any]) -> None:
    if options:
        log.info(
            "%s: ignoring taskiq transport option(s) %s; Conveyor tunes its own connections "
            "(see docs/migrating-from-taskiq.md)",
            owner,
            ", ".join(sorted(options)),
        )


def _same_server(first: str, second: str) -> bool:
    """Same scheme, host and database, whatever the query (``?prefix=``)."""
    a, b = urlsplit(first), urlsplit(second)
    return (a.scheme, a.netloc, a.path.strip("/") or "0") == (
        b.scheme,
        b.netloc,
        b.path.strip("/") or "0",
    )


def _store_results_at(app: Conveyor, url: str, ttl: float | None) -> None:
    """Point ``app``'s results at ``url``. A Conveyor app picks its result store at
    construction; taskiq attaches its backend afterwards, so the store is swapped here,
    before anything connects."""
    changes: dict[str, Any] = {} if ttl is None else {"result_ttl": ttl}
    if _same_server(url, app.settings.broker_url):
        app.settings = app.settings.replace(result_url=None, **changes)
        app._result_store = app._broker.result_store()
        return
    app.settings = app.settings.replace(result_url=url, **changes)
    app._result_store = result_store_class_for(url)(url, app.settings)


# -- tasks -----------------------------------------------------------------------------


class AsyncKicker(Generic[P, R]):
    """``task.kicker()``: per-call labels and task id, then ``kiq()`` or a schedule.

    >>> await send.kicker().with_labels(delay=5, tenant="a").kiq("a@b.c")  # doctest: +SKIP

    Label ``delay`` (seconds) delays the run and ``priority`` sets its priority; every
    label is kept, as a string, in the message's labels (``Context.message.labels``).
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
        """Only the task's own broker: a task runs on the app that declared it."""
        if broker is not self.broker:
            raise ConfigurationError(
                f"task {self.task_name!r} is declared on {self.broker!r}; declare it on "
                f"{broker!r} too (taskiq's shared tasks are not supported)"
            )
        return self

    async def kiq(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskiqTask[R]:
        """Send the call; returns its handle at once."""
        return await self.task.send(args, kwargs, self._options())

    def _options(self) -> CallOptions | None:
        labels = self.labels
        declared = self.task.labels
        changed = {
            k: _label(v)
            for k, v in labels.items()
            if k != "schedule" and (k not in declared or declared[k] != v)
        }
        delay = labels.get("delay")
        if not changed and self.custom_task_id is None:
            return self.task.default_options
        priority = labels.get("priority")
        return CallOptions(
            delay=None if delay is None else float(delay),
            priority=None if priority is None else int(priority),
            task_id=self.custom_task_id,
            labels=changed or None,
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
            labels=dict(self.labels),
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
        if not app.is_connected:
            raise TaskiqError(
                f"{self.broker!r} is not started: await broker.startup() before kiq() "
                "(a conveyor worker process starts it for you)"
            )
        handle = await app.enqueue(self, args, kwargs, options)
        return AsyncTaskiqTask(app, handle.task_id, self.return_type)

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


class _TaskiqDecorator(Protocol):
    """What ``@broker.task(...)`` returns."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTaskiqDecoratedTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> AsyncTaskiqDecoratedTask[P, R]: ...


# -- brokers ---------------------------------------------------------------------------


class AsyncBroker:
    """What taskiq applications use of taskiq's ``AsyncBroker``, on the Conveyor app
    ``broker.conveyor``."""

    # InMemoryBroker runs its worker inside the client, and stays a client (as in taskiq)
    _serves_in_process = False

    def __init__(self, conveyor: Conveyor, result_backend: AsyncResultBackend | None) -> None:
        self.conveyor = conveyor
        self.state = TaskiqState()
        conveyor.state = self.state
        self.is_worker_process = False
        self.middlewares: list[TaskiqMiddleware] = []
        self.event_handlers: dict[TaskiqEvents, list[Callable[[TaskiqState], Any]]] = {
            event: [] for event in TaskiqEvents
        }
        self._retry: _RetryMiddleware = SimpleRetryMiddleware()
        self._started = False
        conveyor.dependency_providers[Context] = _context_provider(self)
        conveyor.dependency_providers[TaskiqState] = _constant(self.state)
        conveyor.on_startup(self._worker_started)  # first: before the WORKER_STARTUP handlers
        self.result_backend: AsyncResultBackend = AsyncResultBackend()
        self.with_result_backend(result_backend or self.result_backend)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.conveyor!r}>"

    def _worker_started(self) -> None:
        self.is_worker_process = not self._serves_in_process

    # -- configuration -----------------------------------------------------------------

    def with_result_backend(self, result_backend: AsyncResultBackend) -> Self:
        """Attach ``result_backend`` (before ``startup()``); returns the broker."""
        if self.conveyor.is_connected:
            raise ConfigurationError("with_result_backend() must be called before startup()")
        result_backend._attach(self)
        self.result_backend = result_backend
        if isinstance(result_backend, RedisAsyncResultBackend):
            _store_results_at(self.conveyor, result_backend.redis_url, result_backend.result_ttl)
        return self

    def with_middlewares(self, *middlewares: TaskiqMiddleware) -> Self:
        """Accept taskiq's retry middlewares (the policy for ``retry_on_error`` tasks);
        any other middleware is refused with a pointer to :class:`conveyor.Hook`."""
        for middleware in middlewares:
            if not isinstance(middleware, SimpleRetryMiddleware | SmartRetryMiddleware):
                raise ConfigurationError(
                    f"{type(middleware).__name__}: conveyor.compat.taskiq understands "
                    "SimpleRetryMiddleware and SmartRetryMiddleware only; port other "
                    "middlewares to a conveyor.Hook and add it with broker.conveyor.add_hook()"
                )
            self._retry = middleware
            self.middlewares.append(middleware)
        for task in self.get_all_tasks().values():
            task.options = replace(task.options, **self._retry_options(task.labels))
        return self

    def add_dependency_context(self, new_ctx: Mapping[Any, Any]) -> None:
        """Inject ``value`` into parameters annotated ``key`` with ``TaskiqDepends()``."""
        for key, value in new_ctx.items():
            self.conveyor.dependency_providers[key] = _constant(value)

    # -- events ------------------------------------------------------------------------

    def add_event_handler(
        self, event: TaskiqEvents | str, handler: Callable[[TaskiqState], Any]
    ) -> None:
        """Run ``handler(state)`` (sync or async) on ``event``."""
        kind = TaskiqEvents(event)
        self.event_handlers[kind].append(handler)
        if kind is TaskiqEvents.WORKER_STARTUP:
            self.conveyor.on_startup(functools.partial(handler, self.state))
        elif kind is TaskiqEvents.WORKER_SHUTDOWN:
            self.conveyor.on_shutdown(functools.partial(handler, self.state))

    def on_event(self, *events: TaskiqEvents | str) -> Callable[[H], H]:
        """Decorator: ``@broker.on_event(TaskiqEvents.WORKER_STARTUP)``."""

        def register(handler: H) -> H:
            for event in events:
                self.add_event_handler(event, handler)
            return handler

        return register

    def with_event_handlers(
        self, event: TaskiqEvents | str, *handlers: Callable[[TaskiqState], Any]
    ) -> Self:
        """Add ``handlers`` for ``event``; returns the broker."""
        for handler in handlers:
            self.add_event_handler(event, handler)
        return self

    async def _run_handlers(self, event: TaskiqEvents) -> None:
        handlers = [functools.partial(h, self.state) for h in self.event_handlers[event]]
        await self.conveyor.call_handlers(handlers)

    # -- tasks -------------------------------------------------------------------------

    @overload
    def task(
        self, task_name: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTaskiqDecoratedTask[P, R]: ...

    @overload
    def task(self, task_name: Callable[P, R], /) -> AsyncTaskiqDecoratedTask[P, R]: ...

    @overload
    def task(self, task_name: str | None = None, **labels: Any) -> _TaskiqDecorator: ...

    def task(self, task_name: Callable[..., Any] | str | None = None, **labels: Any) -> Any:
        """``@broker.task`` or ``@broker.task(task_name=..., **labels)``.

        Labels with a meaning: ``retry_on_error`` and ``max_retries`` (runs in total, as
        taskiq counts them), ``timeout`` (seconds), ``priority``, ``delay`` (seconds, for
        every call) and ``schedule=[{"cron": ...}]``. Every other label is kept, as a
        string, in the task's messages.
        """
        if callable(task_name):
            return self._register(task_name, None, labels)

        def register(fn: Callable[..., Any]) -> AsyncTaskiqDecoratedTask[Any, Any]:
            return self._register(fn, task_name, labels)

        return register

    def register_task(
        self, func: Callable[..., Any], task_name: str | None = None, **labels: Any
    ) -> AsyncTaskiqDecoratedTask[Any, Any]:
        """``broker.task(task_name, **labels)(func)`` without the decorator syntax."""
        return self._register(func, task_name, labels)

    def find_task(self, task_name: str) -> AsyncTaskiqDecoratedTask[Any, Any] | None:
        """The task registered as ``task_name``, or None."""
        found = self.conveyor.tasks.get(task_name)
        return found if isinstance(found, AsyncTaskiqDecoratedTask) else None

    def get_all_tasks(self) -> dict[str, AsyncTaskiqDecoratedTask[Any, Any]]:
        """Every task declared on this broker, by name."""
        return {
            name: task
            for name, task in self.conveyor.tasks.items()
            if isinstance(task, AsyncTaskiqDecoratedTask)
        }

    def _register(
        self, fn: Callable[..., Any], task_name: str | None, labels: Mapping[str, Any]
    ) -> AsyncTaskiqDecoratedTask[Any, Any]:
        labels = dict(labels)
        timeout, priority = labels.get("timeout"), labels.get("priority")
        # app.task validates the options and binds the schedules; the taskiq-flavoured
        # Task then takes the plain one's place in the registry
        plain = self.conveyor.task(
            name=task_name,
            timeout=None if timeout is None else float(timeout),
            priority=0 if priority is None else int(priority),
            labels={k: _label(v) for k, v in labels.items() if k != "schedule"},
            schedule=labels.get("schedule"),
            **self._retry_options(labels),
        )(fn)
        task: AsyncTaskiqDecoratedTask[Any, Any] = AsyncTaskiqDecoratedTask(
            self, fn, plain.options, labels
        )
        self.conveyor.tasks[plain.name] = task
        return task

    def _retry_options(self, labels: Mapping[str, Any]) -> dict[str, Any]:
        policy = self._retry
        flag = labels.get("retry_on_error")
        enabled = policy.default_retry_label if flag is None else _flag(flag)
        if not enabled:
            return {"retries": 0}
        # taskiq's middleware stops once its retry counter reaches max_retries, so
        # max_retries counts every run, the first included
        runs = int(labels.get("max_retries", policy.default_retry_count))
        kinds = policy.types_of_exceptions
        return {
            "retries": max(runs - 1, 0),
            "retry_on": (Exception,) if kinds is None else tuple(kinds),
            "backoff": policy.backoff(labels.get("delay")),
        }

    # -- lifecycle ---------------------------------------------------------------------

    async def startup(self) -> None:
        """Connect as a client (to ``kiq()`` and read results), then run the
        CLIENT_STARTUP handlers. In a worker process the worker owns the connection, and
        this does nothing."""
        if self.is_worker_process or self._started:
            return
        await self.conveyor.connect()
        self._started = True
        await self._run_handlers(TaskiqEvents.CLIENT_STARTUP)

    async def shutdown(self) -> None:
        """Run the CLIENT_SHUTDOWN handlers, then close the connection."""
        if self.is_worker_process or not self._started:
            return
        self._started = False
        try:
            await self._run_handlers(TaskiqEvents.CLIENT_SHUTDOWN)
        finally:
            await self.conveyor.close()


class InMemoryBroker(AsyncBroker):
    """Tasks run in this process, on ``memory://``: ``await broker.startup()`` starts a
    worker in the running event loop (running the WORKER_STARTUP handlers, then the
    CLIENT_STARTUP ones), and ``await broker.shutdown()`` stops it gracefully.

    ``max_async_tasks`` is the worker's concurrency; the other arguments are accepted for
    compatibility and ignored (results are kept ``result_ttl`` seconds, not by count).
    """

    _serves_in_process = True

    def __init__(
        self,
        sync_tasks_pool_size: int = 4,
        max_stored_results: int = 100,
        cast_types: bool = True,
        max_async_tasks: int = 30,
        propagate_exceptions: bool = True,
        await_inplace: bool = False,
    ) -> None:
        if await_inplace:
            raise ConfigurationError(
                "InMemoryBroker(await_inplace=True) is not supported: "
                "await (await task.kiq(...)).wait_result() instead"
            )
        super().__init__(Conveyor("memory://", concurrency=max_async_tasks), None)
        self._worker: Worker | None = None

    async def startup(self) -> None:
        """Connect and start the in-process worker."""
        if self._worker is not None:
            return
        await self.conveyor.connect()
        worker = self.conveyor.worker()
        try:
            await worker.start()  # runs the WORKER_STARTUP handlers
        except BaseException:
            await self.conveyor.close()
            raise
        self._worker = worker
        self._started = True
        await self._run_handlers(TaskiqEvents.CLIENT_STARTUP)

    async def shutdown(self) -> None:
        """Stop the worker (running tasks get the ``grace`` setting to finish), then close."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._started = False
        try:
            await worker.stop()  # runs the WORKER_SHUTDOWN handlers
            await self._run_handlers(TaskiqEvents.CLIENT_SHUTDOWN)
        finally:
            await self.conveyor.close()


class RedisStreamBroker(AsyncBroker):
    """taskiq-redis's ``RedisStreamBroker`` on Conveyor's Redis Streams broker.

    ``url`` is a ``redis://`` or ``rediss://`` URL (``?prefix=`` sets Conveyor's key
    prefix); ``queue_name`` becomes the Conveyor queue this broker sends to and its
    workers serve. Transport options (``consumer_group_name``, ``xread_block``,
    ``idle_timeout``, ``maxlen``, pool sizes...) are accepted and ignored: leases,
    reclaiming and batching are Conveyor's (settings ``lease``, ``fetch_wait``...).
    """

    def __init__(
        self,
        url: str,
        queue_name: str | None = None,
        *,
        result_backend: AsyncResultBackend | None = None,
        **options: Any,
    ) -> None:
        _note_ignored(type(self).__name__, options)
        queues: dict[str, Any] = {}
        if queue_name is not None:
            queues = {"default_queue": queue_name, "queues": (queue_name,)}
        super().__init__(Conveyor(url, **queues), result_backend)


class ListQueueBroker(RedisStreamBroker):
    """taskiq-redis's ``ListQueueBroker``: the same Redis Streams broker, so a task whose
    worker dies is run again instead of lost (taskiq's list broker acknowledges on receipt)."""


# -- schedules -------------------------------------------------------------------------


@dataclass
class ScheduledTask:
    """A dynamic schedule as taskiq's sources take it: exactly one of ``cron``
    (``cron_offset``: an IANA zone name or a whole-hour timedelta), ``time`` or
    ``interval`` (seconds)."""

    task_name: str
    labels: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    schedule_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cron: str | None = None
    cron_offset: str | timedelta | None = None
    time: datetime | None = None
    interval: float | timedelta | None = None


class CreatedSchedule(Generic[R]):
    """What ``schedule_by_*`` returns: ``schedule_id``, ``await unschedule()``, and
    ``await kiq()`` to run it once now."""

    def __init__(self, kicker: AsyncKicker[Any, R], source: ScheduleSource, task: ScheduledTask):
        self.kicker = kicker
        self.source = source
        self.task = task
        self.schedule_id = task.schedule_id

    def __repr__(self) -> str:
        return f"<CreatedSchedule {self.schedule_id} {self.task.task_name}>"

    async def unschedule(self) -> None:
        """Delete the schedule; running schedulers stop firing it within
        ``schedule_refresh`` seconds."""
        await self.source.delete_schedule(self.schedule_id)

    async def kiq(self) -> AsyncTaskiqTask[R]:
        """Run the scheduled call once, now."""
        return await self.kicker.task.send(self.task.args, self.task.kwargs, None)


class ScheduleSource:
    """Where dynamic schedules go. In Conveyor that is always the broker's schedule store
    (``broker.conveyor.schedules``), whatever a source's URL says, so every scheduler
    process of the app sees them."""

    def __init__(self) -> None:
        self._broker: AsyncBroker | None = None

    def _attach(self, broker: AsyncBroker) -> None:
        if self._broker is not None and self._broker is not broker:
            raise ConfigurationError(
                f"{type(self).__name__} is already used with {self._broker!r}; give each "
                "broker its own schedule source"
            )
        self._broker = broker

    def _book(self) -> ScheduleBook:
        if self._broker is None:
            raise ConfigurationError(
                f"{type(self).__name__} is not bound to a broker: pass it to "
                "TaskiqScheduler(broker, sources=[...]) or to task.schedule_by_cron()"
            )
        return self._broker.conveyor.schedules

    async def startup(self) -> None:
        """Nothing to do: the broker's connection serves the schedule store."""

    async def shutdown(self) -> None:
        """Nothing to do."""

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        """Store ``schedule`` (its task must be registered; its arguments are checked)."""
        await self._book().add(
            schedule.schedule_id,
            schedule.task_name,
            args=schedule.args,
            kwargs=schedule.kwargs,
            **_trigger_of(schedule),
        )

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the dynamic schedule ``schedule_id`` (nothing if there is none)."""
        await self._book().remove(schedule_id)

    async def get_schedules(self) -> list[ScheduledTask]:
        """The dynamic schedules."""
        stored = await self._book().load()
        return [_scheduled(s) for s in stored if s.origin == "dynamic"]


class LabelScheduleSource(ScheduleSource):
    """The ``schedule=[...]`` labels of the broker's tasks. Conveyor's scheduler fires
    them whether or not this source is listed."""

    def __init__(self, broker: AsyncBroker) -> None:
        super().__init__()
        self._attach(broker)

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        raise NotImplementedError(
            "LabelScheduleSource holds the schedule=[...] labels only; add schedules to "
            "a ListRedisScheduleSource (or any other source)"
        )

    async def delete_schedule(self, schedule_id: str) -> None:
        raise NotImplementedError(
            "LabelScheduleSource holds the schedule=[...] labels only; pause one with "
            "`conveyor schedules APP pause ID` or remove it from the code"
        )

    async def get_schedules(self) -> list[ScheduledTask]:
        """The schedules declared in code."""
        return [_scheduled(s) for s in self._book().in_code()]


class ListRedisScheduleSource(ScheduleSource):
    """taskiq-redis's ``ListRedisScheduleSource``: schedules are stored in the broker's
    schedule store; ``url`` and the other options are accepted and ignored."""

    def __init__(self, url: str, prefix: str = "schedule", **options: Any) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix


class RedisScheduleSource(ListRedisScheduleSource):
    """taskiq-redis's older ``RedisScheduleSource``: the same as
    :class:`ListRedisScheduleSource`."""


def _trigger_of(schedule: ScheduledTask) -> dict[str, Any]:
    kinds = [
        name
        for name, value in (
            ("cron", schedule.cron),
            ("time", schedule.time),
            ("interval", schedule.interval),
        )
        if value is not None
    ]
    if len(kinds) != 1:
        raise InvalidSchedule(
            f"schedule {schedule.schedule_id!r} needs exactly one of cron, time or interval"
        )
    if schedule.cron is not None:
        entry = schedule_from_entry({"cron": schedule.cron, "cron_offset": schedule.cron_offset})
        trigger = entry.trigger
        assert isinstance(trigger, Cron)
        return {"cron": trigger.expr, "tz": trigger.tz}
    if schedule.time is not None:
        return {"at": schedule.time}
    return {"every": schedule.interval}


def _scheduled(schedule: Schedule) -> ScheduledTask:
    trigger = schedule.trigger
    found = ScheduledTask(
        task_name=schedule.task,
        labels={},
        args=list(schedule.args),
        kwargs=dict(schedule.kwargs),
        schedule_id=schedule.id,
    )
    if isinstance(trigger, Cron):
        found.cron = trigger.expr
        found.cron_offset = None if trigger.tz == "UTC" else trigger.tz
    elif isinstance(trigger, At):
        found.time = datetime.fromtimestamp(trigger.when, UTC)
    elif isinstance(trigger, Every):
        found.interval = trigger.interval
    return found


class TaskiqScheduler:
    """taskiq's scheduler declaration; run it with ``conveyor scheduler pkg.module:scheduler``
    (any number of them: each tick is enqueued once).

    The scheduler fires the broker's code schedules and the dynamic ones in its store;
    ``sources`` bind the given sources to ``broker``.
    """

    def __init__(self, broker: AsyncBroker, sources: Sequence[ScheduleSource]) -> None:
        self.broker = broker
        self.sources = list(sources)
        self.conveyor = broker.conveyor
        for source in self.sources:
            source._attach(broker)

    def __repr__(self) -> str:
        return f"<TaskiqScheduler {self.broker!r}>"

    async def startup(self) -> None:
        """Start the broker as a client (to add schedules from this process)."""
        await self.broker.startup()

    async def shutdown(self) -> None:
        """Shut the broker down."""
        await self.broker.shutdown()
