"""Brokers, taskiq's way: ``AsyncBroker`` and the brokers applications construct,
``InMemoryBroker``, taskiq-redis's ``RedisStreamBroker``/``ListQueueBroker``, and
``async_shared_broker`` for shared tasks.

>>> broker = RedisStreamBroker("redis://localhost:6379").with_result_backend(  # doctest: +SKIP
...     RedisAsyncResultBackend("redis://localhost:6379")
... )
>>> @broker.task(retry_on_error=True, max_retries=3)                    # doctest: +SKIP
... async def add(a: int, b: int) -> int:
...     return a + b

Every broker wraps a real :class:`~conveyor.Conveyor` app, ``broker.conveyor``:
``conveyor worker pkg.module:broker`` runs its tasks. As taskiq's, a broker sends
without ``startup()``: the first ``kiq()`` connects it (and starts
``InMemoryBroker``'s in-process worker), without running any event handler or
middleware ``startup()``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, Self, TypeVar, overload
from urllib.parse import urlsplit

import msgspec

from conveyor.app import Conveyor, broker_options
from conveyor.brokers import result_store_class_for
from conveyor.compat.taskiq._middleware import (
    MiddlewareHook,
    TaskiqMiddleware,
    maybe_await,
    overrides,
)
from conveyor.compat.taskiq._options import _label, _note_ignored
from conveyor.compat.taskiq.context import Context, TaskiqEvents, TaskiqState, _context_provider
from conveyor.compat.taskiq.errors import SharedBrokerSendTaskError, TaskiqError
from conveyor.compat.taskiq.message import BrokerMessage, TaskiqMessage
from conveyor.compat.taskiq.results import (
    AsyncResultBackend,
    AsyncTaskiqTask,
    RedisAsyncResultBackend,
    _jsonable,
    is_custom_backend,
)
from conveyor.compat.taskiq.retries import (
    SimpleRetryMiddleware,
    SmartRetryMiddleware,
    _RetryMiddleware,
)
from conveyor.compat.taskiq.tasks import AsyncKicker, AsyncTaskiqDecoratedTask
from conveyor.errors import ConfigurationError, ResultTimeout
from conveyor.message import new_task_id
from conveyor.task import CallOptions
from conveyor.worker.consumer import run_handlers

if TYPE_CHECKING:
    from conveyor.worker.consumer import Worker

__all__ = [
    "AsyncBroker",
    "AsyncSharedBroker",
    "InMemoryBroker",
    "ListQueueBroker",
    "RedisStreamBroker",
    "SharedDecoratedTask",
    "ZeroMQBroker",
    "async_shared_broker",
    "default_id_generator",
    "shared_task",
]

log = logging.getLogger("conveyor.compat.taskiq")

# taskiq's submodules of taskiq.brokers (inmemory_broker, shared_broker) are in _brokers/
__path__ = [os.path.join(os.path.dirname(__file__), "_brokers")]

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Any])

# seconds per wait while waiting for a result without a limit
_WAIT_STEP = 3600.0


def default_id_generator() -> str:
    """A fresh task id (32 hex digits, as taskiq's ``uuid4().hex``)."""
    return new_task_id()


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
    _task_class: type[AsyncTaskiqDecoratedTask[Any, Any]] = AsyncTaskiqDecoratedTask

    def __init__(
        self,
        result_backend: AsyncResultBackend[Any] | None = None,
        task_id_generator: Callable[[], str] | None = None,
        *,
        conveyor: Conveyor | None = None,
    ) -> None:
        # an application's own AsyncBroker subclass (taskiq's "custom broker") sends
        # through its kick(): its app keeps only task registrations and statuses
        conveyor = Conveyor("memory://", environ={}) if conveyor is None else conveyor
        self.conveyor = conveyor
        self.state = TaskiqState()
        conveyor.state = self.state
        self.is_worker_process = False
        self.is_scheduler_process = False
        self.middlewares: list[TaskiqMiddleware] = []
        self.event_handlers: dict[TaskiqEvents, list[Callable[[TaskiqState], Any]]] = {
            event: [] for event in TaskiqEvents
        }
        self.id_generator: Callable[[], str] = task_id_generator or default_id_generator
        self._retry: _RetryMiddleware = SimpleRetryMiddleware()
        self._middleware_hook: MiddlewareHook | None = None
        self._started = False
        self._custom_context: dict[Any, Any] = {}
        self._adopted: set[str] = set()  # shared tasks registered here
        self._builtin_providers: dict[Any, Callable[..., Any]] = {
            Context: _context_provider(self),
            TaskiqState: _constant(self.state),
        }
        conveyor.dependency_providers.update(self._builtin_providers)
        # first: before any handler registered on the app later
        conveyor.on_startup(self._worker_started)
        conveyor.on_shutdown(self._worker_stopping)
        self.result_backend: AsyncResultBackend[Any] = AsyncResultBackend()
        self.with_result_backend(result_backend or self.result_backend)
        _brokers.add(self)
        for listener in list(_new_broker_listeners):
            listener(self)
        for name, (fn, labels) in list(_shared.items()):
            self._adopt(name, fn, labels)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.conveyor!r}>"

    # -- configuration -----------------------------------------------------------------

    def with_result_backend(self, result_backend: AsyncResultBackend[Any]) -> Self:
        """Attach ``result_backend`` (before ``startup()``); returns the broker."""
        if self.conveyor.is_connected:
            raise ConfigurationError("with_result_backend() must be called before startup()")
        result_backend._attach(self)
        self.result_backend = result_backend
        if is_custom_backend(result_backend):
            self._hook_middlewares()
        if isinstance(result_backend, RedisAsyncResultBackend):
            _store_results_at(self.conveyor, result_backend.redis_url, result_backend.result_ttl)
        return self

    def with_id_generator(self, task_id_generator: Callable[[], str]) -> Self:
        """Make task ids with ``task_id_generator()`` (a call's ``with_task_id()`` wins);
        returns the broker."""
        self.id_generator = task_id_generator
        return self

    def add_middlewares(self, *middlewares: TaskiqMiddleware) -> None:
        """Add middlewares, run in the order added (see
        :mod:`conveyor.compat.taskiq.middlewares`). ``SimpleRetryMiddleware`` and
        ``SmartRetryMiddleware`` set the retry policy of ``retry_on_error`` tasks;
        anything that is not a ``TaskiqMiddleware`` is skipped with a warning, as taskiq
        does."""
        retry = None
        for middleware in middlewares:
            if not isinstance(middleware, TaskiqMiddleware):
                log.warning(
                    "Middleware %r is not an instance of conveyor.compat.taskiq's "
                    "TaskiqMiddleware (was its import changed?); skipping it",
                    middleware,
                )
                continue
            middleware.set_broker(self)
            self.middlewares.append(middleware)
            if isinstance(middleware, SimpleRetryMiddleware | SmartRetryMiddleware):
                retry = middleware
            if any(overrides(middleware, method) for method in _HOOKED):
                self._hook_middlewares()
        if retry is not None:
            self._retry = retry
            for task in self.get_all_tasks().values():
                task.options = replace(task.options, **self._retry_options(task.labels))

    def _hook_middlewares(self) -> None:
        """Add the hook that runs middlewares and an application's result backend."""
        if self._middleware_hook is None:
            self._middleware_hook = MiddlewareHook(self)
            self.conveyor.add_hook(self._middleware_hook)

    def with_middlewares(self, *middlewares: TaskiqMiddleware) -> Self:
        """:meth:`add_middlewares`, returning the broker."""
        self.add_middlewares(*middlewares)
        return self

    @property
    def dependency_overrides(self) -> dict[Any, Any]:
        """``{dependency: replacement}`` for the tasks' ``TaskiqDepends(dependency)``
        (the app's ``dependency_overrides``)."""
        return self.conveyor.dependency_overrides

    @dependency_overrides.setter
    def dependency_overrides(self, overrides: dict[Any, Any]) -> None:
        self.conveyor.dependency_overrides = overrides

    @property
    def custom_dependency_context(self) -> dict[Any, Any]:
        """What :meth:`add_dependency_context` added; assign ``{}`` to forget it."""
        return self._custom_context

    @custom_dependency_context.setter
    def custom_dependency_context(self, context: Mapping[Any, Any]) -> None:
        providers = self.conveyor.dependency_providers
        for key in self._custom_context:
            if key in self._builtin_providers:
                providers[key] = self._builtin_providers[key]
            else:
                providers.pop(key, None)
        self._custom_context = {}
        self.add_dependency_context(context)

    def add_dependency_context(self, new_ctx: Mapping[Any, Any]) -> None:
        """Inject ``value`` into parameters annotated ``key`` with ``TaskiqDepends()``."""
        for key, value in new_ctx.items():
            self._custom_context[key] = value
            self.conveyor.dependency_providers[key] = _constant(value)

    # -- events ------------------------------------------------------------------------

    def add_event_handler(
        self, event: TaskiqEvents | str, handler: Callable[[TaskiqState], Any]
    ) -> None:
        """Run ``handler(state)`` (sync or async) on ``event``."""
        self.event_handlers[TaskiqEvents(event)].append(handler)

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

    async def _run_middlewares(self, method: str) -> None:
        """Every middleware's ``startup`` or ``shutdown`` (sync or async), in order, then
        the result backend's (an application's own backend may open a connection)."""
        for middleware in list(self.middlewares):
            if overrides(middleware, method):
                await maybe_await(getattr(middleware, method)())
        if is_custom_backend(self.result_backend):
            await maybe_await(getattr(self.result_backend, method)())

    async def _worker_started(self) -> None:
        """A worker of this app starts: in a worker process, the WORKER_STARTUP handlers
        run, then the middlewares' ``startup()``, as taskiq's worker does."""
        if self._serves_in_process:
            return  # InMemoryBroker runs its events itself (startup())
        if self._kicks_itself:
            await self.listen().__anext__()  # raises: says why no worker can serve it
        self.is_worker_process = True
        await self._run_handlers(TaskiqEvents.WORKER_STARTUP)
        await self._run_middlewares("startup")

    async def _worker_stopping(self) -> None:
        if self._serves_in_process:
            return
        await self._run_handlers(TaskiqEvents.WORKER_SHUTDOWN)
        await self._run_middlewares("shutdown")

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
        """The task registered as ``task_name`` (shared tasks included), or None."""
        found = self.conveyor.tasks.get(task_name)
        return found if isinstance(found, AsyncTaskiqDecoratedTask) else None

    def get_all_tasks(self) -> dict[str, AsyncTaskiqDecoratedTask[Any, Any]]:
        """Every task declared on this broker, and the shared tasks, by name."""
        return {
            name: task
            for name, task in self.conveyor.tasks.items()
            if isinstance(task, AsyncTaskiqDecoratedTask)
        }

    def _register(
        self, fn: Callable[..., Any], task_name: str | None, labels: Mapping[str, Any]
    ) -> AsyncTaskiqDecoratedTask[Any, Any]:
        labels = dict(labels)
        if task_name in self._adopted:  # a task of this broker wins over a shared one
            self._adopted.discard(task_name)
            del self.conveyor.tasks[task_name]
        timeout, priority = labels.get("timeout"), labels.get("priority")
        # app.task validates the options and binds the schedules; the taskiq-flavoured
        # Task then takes the plain one's place in the registry
        plain = self.conveyor.task(
            name=task_name,
            timeout=None if timeout is None else float(timeout),
            priority=0 if priority is None else int(priority),
            labels={
                k: _label(v)
                for k, v in labels.items()
                if k not in ("schedule", "types_of_exceptions")
            },
            schedule=_taskiq_schedules(labels.get("schedule")),
            **self._retry_options(labels),
        )(fn)
        task = self._task_class(self, fn, plain.options, labels)
        self.conveyor.tasks[plain.name] = task
        return task

    def _adopt(self, name: str, fn: Callable[..., Any], labels: Mapping[str, Any]) -> None:
        """Register the shared task ``name`` here, unless a task of this broker has the
        name (taskiq's local tasks win over shared ones)."""
        if name in self.conveyor.tasks:
            return
        self._register(fn, name, labels)
        self._adopted.add(name)

    def _own(self, task: AsyncTaskiqDecoratedTask[P, R]) -> AsyncTaskiqDecoratedTask[P, R]:
        """This broker's task for ``task`` (``kicker().with_broker(self)``): itself, the
        task of the same name registered here (a shared task), or a copy registered now
        for sending (a worker of this broker runs it only if it registers it too)."""
        if task.broker is self:
            return task
        found = self.conveyor.tasks.get(task.task_name)
        if isinstance(found, AsyncTaskiqDecoratedTask):
            return found
        labels = {k: v for k, v in task.labels.items() if k != "schedule"}
        return self._register(task.original_func, task.task_name, labels)

    def _retry_options(self, labels: Mapping[str, Any]) -> dict[str, Any]:
        policy = self._retry
        flag = labels.get("retry_on_error")
        enabled = policy.default_retry_label if flag is None else _flag(flag)
        if not enabled:
            return {"retries": 0}
        # taskiq's middleware stops once its retry counter reaches max_retries, so
        # max_retries counts every run, the first included
        runs = int(labels.get("max_retries", policy.default_retry_count))
        kinds = labels.get("types_of_exceptions", policy.types_of_exceptions)
        return {
            "retries": max(runs - 1, 0),
            "retry_on": (Exception,) if kinds is None else tuple(kinds),
            "backoff": policy.backoff(labels.get("delay")),
        }

    # -- sending -----------------------------------------------------------------------

    async def _prepare_send(self, options: CallOptions | None) -> CallOptions | None:
        """Before a ``kiq()``: connect if this broker is not (taskiq's brokers send
        without ``startup()``), and give the call an id from ``with_id_generator()``."""
        await self._ready()
        if self.id_generator is not default_id_generator and (
            options is None or options.task_id is None
        ):
            options = replace(options or CallOptions(), task_id=self.id_generator())
        return options

    async def _sent(self, task: AsyncTaskiqTask[Any]) -> None:
        """After a ``kiq()`` (InMemoryBroker waits for it, or counts it)."""

    # -- an application's own transport (taskiq's "custom broker") ----------------------

    async def kick(self, message: BrokerMessage) -> None:
        """taskiq's transport method. The brokers here send through their Conveyor app
        and never call it; an application's subclass that overrides it gets each
        ``kiq()`` as a :class:`BrokerMessage` (``message`` is the JSON
        ``TaskiqMessage``, as taskiq's default serializer writes it)."""
        raise NotImplementedError(f"{type(self).__name__} sends through its Conveyor app")

    async def listen(self) -> AsyncGenerator[bytes, None]:
        """taskiq's receiving side of a custom broker. Conveyor's workers do not run an
        application's ``listen()``: they consume through a Conveyor broker."""
        raise ConfigurationError(
            f"{type(self).__name__}.listen(): Conveyor workers consume from Conveyor "
            "brokers (memory://, sqlite://, redis://) and do not run a custom taskiq "
            "broker's listen(); see docs/migrating-from-taskiq.md"
        )
        yield b""  # pragma: no cover  (makes this an async generator, as taskiq's)

    @property
    def _kicks_itself(self) -> bool:
        """An application's subclass that sends through its own ``kick()``."""
        return type(self).kick is not AsyncBroker.kick

    async def _kick(
        self,
        task: AsyncTaskiqDecoratedTask[Any, Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None,
    ) -> AsyncTaskiqTask[Any]:
        """Send one call through the application's ``kick()``, with the middlewares'
        ``pre_send``/``post_send`` around it, as taskiq's kicker does."""
        task_id = options.task_id if options is not None and options.task_id else None
        labels = {k: v for k, v in task.labels.items() if k != "schedule"}
        if options is not None and options.labels:
            labels.update(options.labels)
        message = TaskiqMessage(
            task_id=task_id or self.id_generator(),
            task_name=task.task_name,
            labels=labels,
            args=list(args),
            kwargs=dict(kwargs),
        )
        for middleware in self.middlewares:
            if overrides(middleware, "pre_send"):
                message = await maybe_await(middleware.pre_send(message))
        body = msgspec.json.encode(_jsonable(message.model_dump()))
        await self.kick(BrokerMessage(message.task_id, message.task_name, body, message.labels))
        for middleware in reversed(self.middlewares):
            if overrides(middleware, "post_send"):
                await maybe_await(middleware.post_send(message))
        return AsyncTaskiqTask(self.conveyor, message.task_id, task.return_type)

    async def _ready(self) -> None:
        """Connected on the running event loop, connecting now if not. A connection left
        on a closed loop (an earlier test's) is dropped first."""
        main = self.conveyor._connections.main
        if main is not None:
            if main.loop is asyncio.get_running_loop() or not main.loop.is_closed():
                return  # another live loop: Conveyor says so when sending
            self._forget_closed_loop()
        await self.conveyor.connect()

    def _forget_closed_loop(self) -> None:
        """Forget a connection whose event loop is closed: nothing can close it now."""
        self.conveyor._connections.main = None
        self._started = False

    def _connected_here(self) -> bool:
        main = self.conveyor._connections.main
        return main is not None and main.loop is asyncio.get_running_loop()

    # -- lifecycle ---------------------------------------------------------------------

    async def startup(self) -> None:
        """Connect as a client (to ``kiq()`` and read results), then run the
        CLIENT_STARTUP handlers and the middlewares' ``startup()``. In a worker process
        the worker owns the connection and has run the worker's; this does nothing."""
        if self.is_worker_process or self._started:
            return
        await self._ready()
        self._started = True
        await self._run_handlers(TaskiqEvents.CLIENT_STARTUP)
        await self._run_middlewares("startup")

    async def shutdown(self) -> None:
        """Run the CLIENT_SHUTDOWN handlers and the middlewares' ``shutdown()`` (as
        taskiq, even without ``startup()``), then close the connection."""
        if self.is_worker_process:
            return
        self._started = False
        try:
            await self._run_handlers(TaskiqEvents.CLIENT_SHUTDOWN)
            await self._run_middlewares("shutdown")
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        main = self.conveyor._connections.main
        if main is None:
            return
        if main.loop.is_closed():
            self._forget_closed_loop()
        elif main.loop is asyncio.get_running_loop():
            await self.conveyor.close()

    async def __aenter__(self) -> None:
        await self.startup()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


# the methods of a middleware that need Conveyor hooks (startup/shutdown do not)
_HOOKED = ("pre_send", "post_send", "pre_execute", "post_execute", "post_save", "on_error")


class InMemoryBroker(AsyncBroker):
    """Tasks run in this process, on ``memory://``, by a worker in the running event
    loop.

    ``await broker.startup()`` starts it and runs the CLIENT_STARTUP handlers, the
    WORKER_STARTUP handlers and the middlewares' ``startup()``, as taskiq does; without
    it, the first ``kiq()`` starts the worker and runs none of them (taskiq runs tasks
    without any). ``await broker.shutdown()`` stops the worker (running tasks get the
    ``grace`` setting to finish), then runs the CLIENT_SHUTDOWN and WORKER_SHUTDOWN
    handlers and the middlewares' ``shutdown()``.

    A worker started on an event loop that has since closed (pytest gives each test a
    loop) is dropped, and the next ``kiq()`` starts another on the running loop.

    ``max_async_tasks`` is the worker's concurrency. ``await_inplace=True`` makes
    ``kiq()`` return once the task has finished (retries included).
    ``await broker.wait_all()`` waits for every task sent so far. The other arguments
    are accepted and ignored: results are kept ``result_ttl`` seconds, not by count.
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
        max_async_tasks_jitter: int = 0,
    ) -> None:
        super().__init__(conveyor=Conveyor("memory://", concurrency=max_async_tasks))
        self.await_inplace = await_inplace
        self._worker: Worker | None = None
        self._worker_loop: asyncio.AbstractEventLoop | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._unfinished: dict[str, AsyncTaskiqTask[Any]] = {}

    async def _ready(self) -> None:
        loop = asyncio.get_running_loop()
        if self._worker is not None:
            if self._worker_loop is loop:
                return
            assert self._worker_loop is not None
            if not self._worker_loop.is_closed():
                raise TaskiqError(
                    f"{self!r} runs its tasks on the event loop that started it, which is "
                    "not this one: start and use it on one loop"
                )
            self._abandon()
        await super()._ready()
        worker = self.conveyor.worker()
        await worker.start()  # no event handlers: _worker_started skips in-process ones
        self._worker, self._worker_loop = worker, loop
        self._keeper = asyncio.create_task(self._keep(worker), name="conveyor-taskiq-inmemory")

    async def _keep(self, worker: Worker) -> None:
        """Wait until the event loop closes under the worker (asyncio.run(), or pytest
        ending a test, cancels every task): then drop the worker, whose tasks are
        cancelled too, and stop its threads. ``shutdown()`` ends this first."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self._worker is worker:
                self._abandon()
            raise

    def _abandon(self) -> None:
        """Forget the worker of a closed (or closing) event loop, and stop its threads
        (its asyncio tasks are cancelled with the loop)."""
        worker, self._worker = self._worker, None
        self._worker_loop = self._keeper = None
        self._unfinished.clear()
        if worker is not None:
            if worker._renewer is not None:
                worker._renewer.stop()
            if worker._runner is not None:
                worker._runner.close()
        self._forget_closed_loop()

    async def _sent(self, task: AsyncTaskiqTask[Any]) -> None:
        if self.await_inplace:
            await _finished(task)
        else:
            self._unfinished[task.task_id] = task

    async def wait_all(self) -> None:
        """Wait until every task sent through this broker has finished, those they send
        meanwhile included (retries and delays are waited for)."""
        while self._unfinished:
            waiting = list(self._unfinished.items())
            for task_id, task in waiting:
                await _finished(task)
                if self._unfinished.get(task_id) is task:
                    del self._unfinished[task_id]

    async def startup(self) -> None:
        """Start the worker if a ``kiq()`` has not, then run the CLIENT_STARTUP and the
        WORKER_STARTUP handlers and the middlewares' ``startup()``."""
        if self._started:
            return
        await self._ready()
        self._started = True
        await self._run_handlers(TaskiqEvents.CLIENT_STARTUP)
        await self._run_handlers(TaskiqEvents.WORKER_STARTUP)
        await self._run_middlewares("startup")

    async def shutdown(self) -> None:
        """Stop the worker (running tasks get the ``grace`` setting to finish), then run
        the CLIENT_SHUTDOWN and WORKER_SHUTDOWN handlers and the middlewares'
        ``shutdown()``, and close."""
        worker, loop = self._worker, self._worker_loop
        self._started = False
        try:
            if worker is not None and loop is not None and loop.is_closed():
                self._abandon()
            elif worker is not None:
                keeper, self._keeper = self._keeper, None
                self._worker = self._worker_loop = None
                self._unfinished.clear()
                if keeper is not None:
                    keeper.cancel()
                await worker.stop()
            await self._run_handlers(TaskiqEvents.CLIENT_SHUTDOWN)
            await self._run_handlers(TaskiqEvents.WORKER_SHUTDOWN)
            await self._run_middlewares("shutdown")
        finally:
            await self._disconnect()


async def _finished(task: AsyncTaskiqTask[Any]) -> None:
    """Wait, without a limit, until ``task`` has a result."""
    while True:
        try:
            await task.wait_result(_WAIT_STEP)
        except ResultTimeout:
            continue
        return


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
        result_backend: AsyncResultBackend[Any] | None = None,
        **options: Any,
    ) -> None:
        _note_ignored(type(self).__name__, options)
        queues: dict[str, Any] = {}
        if queue_name is not None:
            queues = {"default_queue": queue_name, "queues": (queue_name,)}
        super().__init__(result_backend, conveyor=Conveyor(url, **queues))


class ListQueueBroker(RedisStreamBroker):
    """taskiq-redis's ``ListQueueBroker``: the same Redis Streams broker, so a task whose
    worker dies is run again instead of lost (taskiq's list broker acknowledges on receipt)."""


class ZeroMQBroker(AsyncBroker):
    """taskiq's ``ZeroMQBroker`` (a publisher socket the API binds, subscriber sockets in
    the workers, all on one host) on Conveyor's embedded broker: the app configured by
    the environment, ``CONVEYOR_BROKER_URL`` or else ``sqlite:///conveyor.db`` in the
    working directory, which the API and its workers share as they share ZeroMQ's port.

    Unlike ZeroMQ's pub/sub, a task sent while no worker listens waits for one instead of
    being dropped, and each task runs once however many workers subscribe. The socket
    addresses are accepted and not used.
    """

    def __init__(
        self,
        zmq_pub_host: str = "tcp://0.0.0.0:5555",
        zmq_sub_host: str = "tcp://localhost:5555",
        result_backend: AsyncResultBackend[Any] | None = None,
        task_id_generator: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(result_backend, task_id_generator, conveyor=Conveyor())
        self.zmq_pub_host = zmq_pub_host
        self.zmq_sub_host = zmq_sub_host


# -- shared tasks ----------------------------------------------------------------------

# every broker, to register shared tasks on; and the shared tasks, for brokers made later
_brokers: weakref.WeakSet[AsyncBroker] = weakref.WeakSet()
_shared: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
# called with each broker made from now on (TaskiqInstrumentor().instrument())
_new_broker_listeners: list[Callable[[AsyncBroker], None]] = []


def live_brokers() -> list[AsyncBroker]:
    """Every broker made so far that is still referenced."""
    return list(_brokers)


def on_new_broker(listener: Callable[[AsyncBroker], None]) -> None:
    """Call ``listener(broker)`` for each broker made from now on (once per listener)."""
    if listener not in _new_broker_listeners:
        _new_broker_listeners.append(listener)


class SharedDecoratedTask(AsyncTaskiqDecoratedTask[P, R]):
    """A task declared with ``@async_shared_broker.task``: ``kiq()`` sends it through
    the default broker (``async_shared_broker.default_broker(broker)``), and
    ``kicker().with_broker(broker).kiq()`` through ``broker``. Every broker has it: a
    worker of any broker that imports its module runs it."""

    def kicker(self) -> AsyncKicker[P, R]:
        """A kicker on the default broker (or on the shared broker, which cannot send:
        give it one with ``with_broker()``)."""
        kicker = super().kicker()
        default = getattr(self.broker, "_default_broker", None)
        return kicker if default is None else kicker.with_broker(default)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> AsyncTaskiqTask[R]:
        """Send through the default broker."""
        return await self.kicker().kiq(*args, **kwargs)

    kiq = enqueue


class AsyncSharedBroker(AsyncBroker):
    """taskiq's broker of shared tasks (``async_shared_broker``): it declares tasks and
    sends none itself."""

    _task_class = SharedDecoratedTask

    def __init__(self) -> None:
        super().__init__(conveyor=Conveyor("memory://", environ={}))
        self._default_broker: AsyncBroker | None = None

    def default_broker(self, new_broker: AsyncBroker) -> None:
        """Send shared tasks' ``kiq()`` through ``new_broker``."""
        self._default_broker = new_broker

    def _register(
        self, fn: Callable[..., Any], task_name: str | None, labels: Mapping[str, Any]
    ) -> AsyncTaskiqDecoratedTask[Any, Any]:
        task = super()._register(fn, task_name, labels)
        _shared[task.task_name] = (fn, dict(labels))
        for broker in list(_brokers):
            if broker is not self:
                broker._adopt(task.task_name, fn, labels)
        return task

    def _adopt(self, name: str, fn: Callable[..., Any], labels: Mapping[str, Any]) -> None:
        return None  # its own tasks are the shared ones

    async def _prepare_send(self, options: CallOptions | None) -> CallOptions | None:
        raise SharedBrokerSendTaskError()


# -- helpers ---------------------------------------------------------------------------


def _taskiq_schedules(entries: Any) -> Any:
    """A ``schedule=[...]`` label with taskiq's meaning: an ``interval`` entry first runs
    when the scheduler starts (Conveyor's ``every(start="now")``), not on the epoch's
    grid."""
    if not isinstance(entries, list | tuple):
        return entries
    return [
        {"start": "now", **entry} if isinstance(entry, Mapping) and "interval" in entry else entry
        for entry in entries
    ]


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


async_shared_broker = AsyncSharedBroker()
shared_task = async_shared_broker.task
