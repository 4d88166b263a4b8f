"""Brokers, taskiq's way: ``AsyncBroker`` and the brokers applications construct,
``InMemoryBroker`` and taskiq-redis's ``RedisStreamBroker``/``ListQueueBroker``.

>>> broker = RedisStreamBroker("redis://localhost:6379").with_result_backend(  # doctest: +SKIP
...     RedisAsyncResultBackend("redis://localhost:6379")
... )
>>> @broker.task(retry_on_error=True, max_retries=3)                    # doctest: +SKIP
... async def add(a: int, b: int) -> int:
...     return a + b

Every broker wraps a real :class:`~conveyor.Conveyor` app, ``broker.conveyor``:
``conveyor worker pkg.module:broker`` runs its tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, Self, TypeVar, overload
from urllib.parse import urlsplit

from conveyor.app import Conveyor, broker_options
from conveyor.brokers import result_store_class_for
from conveyor.compat.taskiq._options import _label, _note_ignored
from conveyor.compat.taskiq.context import Context, TaskiqEvents, TaskiqState, _context_provider
from conveyor.compat.taskiq.results import AsyncResultBackend, RedisAsyncResultBackend
from conveyor.compat.taskiq.retries import (
    SimpleRetryMiddleware,
    SmartRetryMiddleware,
    TaskiqMiddleware,
    _RetryMiddleware,
)
from conveyor.compat.taskiq.tasks import AsyncTaskiqDecoratedTask
from conveyor.errors import ConfigurationError
from conveyor.worker.consumer import run_handlers

if TYPE_CHECKING:
    from conveyor.worker.consumer import Worker

__all__ = ["AsyncBroker", "InMemoryBroker", "ListQueueBroker", "RedisStreamBroker"]

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Any])


class _TaskiqDecorator(Protocol):
    """What ``@broker.task(...)`` returns."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTaskiqDecoratedTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> AsyncTaskiqDecoratedTask[P, R]: ...


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
        await run_handlers(handlers)

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


def _flag(value: Any) -> bool:
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _constant(value: Any) -> Callable[[], Any]:
    def provide() -> Any:
        return value

    return provide


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
    app._result_store = result_store_class_for(url)(url, broker_options(app.settings))
