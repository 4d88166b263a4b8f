"""The :class:`Conveyor` application: the task registry, settings, hooks and lifecycle.

>>> app = Conveyor("memory://")                     # doctest: +SKIP
>>> @app.task
... async def add(a: int, b: int) -> int:
...     return a + b
>>> async with app, app.worker(concurrency=4):      # doctest: +SKIP
...     assert await (await add.kiq(1, 2)).get(timeout=5) == 3

What it delegates: sending to :mod:`conveyor.send` (the one path of every enqueue),
connections and the sync portal to :mod:`conveyor.portal`, reads of a task by id to
:mod:`conveyor.handle`, running tasks to :mod:`conveyor.worker` (imported only when a
worker is made), the scheduler to :mod:`conveyor.scheduler` (likewise).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from conveyor.brokers import broker_class_for, redact_url, result_store_class_for
from conveyor.brokers.base import (
    Broker,
    BrokerOptions,
    ResultStore,
    StoredResult,
    own_result_store,
)
from conveyor.errors import ConfigurationError
from conveyor.flow import DebounceOption, RateOption, flow_options
from conveyor.handle import TaskHandle, abort_task
from conveyor.hooks import Hook, HookSet
from conveyor.portal import Connections
from conveyor.result import AbortOutcome
from conveyor.retry import Backoff
from conveyor.send import Call, build_message, encode, send
from conveyor.settings import Settings
from conveyor.task import (
    CallOptions,
    Runner,
    SyncTask,
    Task,
    TaskOptions,
    backoff_option,
    retry_on_option,
    seconds,
)
from conveyor.workflow.handle import WorkflowHandle

if TYPE_CHECKING:
    from conveyor.scheduler.book import ScheduleBook
    from conveyor.scheduler.schedule import Schedule
    from conveyor.worker.consumer import Worker

__all__ = ["Conveyor", "NoResultStore", "broker_options"]

P = ParamSpec("P")
R = TypeVar("R")


class Conveyor:
    """A task queue application.

    ``broker_url`` defaults to ``CONVEYOR_BROKER_URL``, else the embedded
    ``sqlite:///conveyor.db``. ``results`` defaults to the broker's own server; a broker
    that keeps no results (``amqp://``) without ``results=`` runs tasks fire-and-forget
    (:class:`NoResultStore`). Any :class:`Settings` field can be passed as a keyword
    (``Conveyor(lease=10)``).
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        results: str | None = None,
        settings: Settings | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        explicit = {"broker_url": broker_url, "result_url": results, **overrides}
        if settings is None:
            base = Settings.load(environ, **explicit)
        else:
            base = settings.replace(**{k: v for k, v in explicit.items() if v is not None})
        self.settings = base
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        # what `Depends()` with no callable calls for an annotation (FastAPI's Request)
        self.dependency_providers: dict[Any, Callable[..., Any]] = {}
        self.hooks = HookSet()
        self.startup_handlers: list[Callable[[], Any]] = []
        self.shutdown_handlers: list[Callable[[], Any]] = []
        self.state: dict[str, Any] = {}
        options = broker_options(base)
        self._broker: Broker = broker_class_for(base.broker_url)(base.broker_url, options)
        if base.result_url is not None:
            store = result_store_class_for(base.result_url)(base.result_url, options)
        elif (own := own_result_store(self._broker)) is not None:
            store = own
        else:
            store = status_store_of(self._broker) or NoResultStore(base.broker_url)
        self._result_store: ResultStore = store
        self._connections = Connections(lambda: (self._broker, self._result_store))
        self._schedules: ScheduleBook | None = None

    def __repr__(self) -> str:
        return f"<Conveyor {redact_url(self.settings.broker_url)} tasks={len(self.tasks)}>"

    # -- tasks ---------------------------------------------------------------------

    # an async def matches both overloads; the first wins, so it is a Task, not a SyncTask
    @overload
    def task(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
        backoff: Backoff | float | timedelta | None = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta | None = None,
        priority: int = 0,
        labels: Mapping[str, str] | None = None,
        schedule: Sequence[Schedule | Mapping[str, Any]] | None = None,
        runner: Runner = "thread",
        rate_limit: RateOption = None,
        concurrency: int | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        unique: bool | Callable[..., Any] = False,
        debounce: DebounceOption = None,
        expires: float | timedelta | datetime | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retries: int = 0,
        retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
        backoff: Backoff | float | timedelta | None = None,
        timeout: float | timedelta | None = None,
        result_ttl: float | timedelta | None = None,
        priority: int = 0,
        labels: Mapping[str, str] | None = None,
        schedule: Sequence[Schedule | Mapping[str, Any]] | None = None,
        runner: Runner = "thread",
        rate_limit: RateOption = None,
        concurrency: int | None = None,
        concurrency_key: Callable[..., Any] | None = None,
        unique: bool | Callable[..., Any] = False,
        debounce: DebounceOption = None,
        expires: float | timedelta | datetime | None = None,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(retries=3, ...)``.

        ``async def`` tasks run on the worker's event loop; plain ``def`` tasks run in the
        worker's thread pool. ``retries`` is the number of runs after the first;
        ``retry_on`` filters which exceptions are retried; ``backoff`` is a policy
        (``exponential()``, the default; ``fixed(5)``) or a number of seconds;
        ``timeout`` and ``result_ttl`` are seconds. ``schedule`` runs the task on a
        timetable: ``cron(...)``, ``every(...)``, ``at(...)`` or taskiq's
        ``{"cron": "..."}`` dicts. ``runner="process"`` runs a plain ``def`` in the
        worker's process pool instead of a thread, for CPU-bound work
        (docs/process-tasks.md). A wrong option raises ``TypeError`` or ``ValueError``
        naming it, here rather than in a worker.

        Flow control (docs/flow-control.md), shared by every worker on every host:
        ``rate_limit="10/s"`` (or ``("100/m", key_fn)``, a bucket per key),
        ``concurrency=3`` (with ``concurrency_key=key_fn``, per key), ``unique=True`` (or
        a key function: at most one queued-or-running task per key), ``debounce=5`` (the
        last enqueue within 5 s of the same arguments runs; the others end
        ``superseded``) and ``expires=60`` (seconds after the enqueue, or a datetime: not
        started by then, it ends ``expired``). A key function takes arguments of the task
        by name: ``lambda customer_id: customer_id``.
        """
        entries: list[Schedule] = []
        if schedule:  # cron parsing and time zones load only for tasks that have one
            from conveyor.scheduler.schedule import schedule_from_entry

            entries = [schedule_from_entry(entry) for entry in schedule]

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(func):
                raise TypeError(f"@app.task decorates a function, got {func!r}")
            task_name = name or f"{importable_module(func)}:{func.__qualname__}"
            where = f"task {task_name!r}: option"
            flow = flow_options(
                f"task {task_name!r}",
                func,
                rate_limit=rate_limit,
                concurrency=concurrency,
                concurrency_key=concurrency_key,
                unique=unique,
                debounce=debounce,
                expires=expires,
            )
            options = TaskOptions(
                name=task_name,
                queue=self.settings.default_queue if queue is None else queue,
                retries=retries,
                retry_on=retry_on_option(task_name, retry_on),
                backoff=backoff_option(task_name, backoff),
                timeout=seconds(timeout, f"{where} 'timeout'"),
                result_ttl=seconds(result_ttl, f"{where} 'result_ttl'"),
                priority=priority,
                labels=dict(labels or {}),
                schedule=_bind_schedules(task_name, entries),
                runner=runner,
                flow=flow,
            )
            task = self.register(func, options)
            try:
                for entry in options.schedule:  # a schedule's call must be sendable
                    encode(
                        task,
                        build_message(Call(task, entry.args, entry.kwargs), self.settings),
                        self.settings,
                    )
            except BaseException:
                del self.tasks[task.name]
                raise
            return task

        return register(fn) if fn is not None else register

    def register(self, fn: Callable[..., Any], options: TaskOptions) -> Task[Any, Any]:
        """Register ``fn`` under ``options.name``; the name must be unique in this app.

        ``@app.task`` lands here. Call it directly to put a task of another app on this
        one, as it is: ``test_app.register(task.fn, task.options)`` (docs/testing.md)."""
        existing = self.tasks.get(options.name)
        if existing is not None and existing.fn is not fn:
            raise ConfigurationError(
                f"task name {options.name!r} is already registered by {existing.fn.__qualname__}"
            )
        kind = Task if inspect.iscoroutinefunction(fn) else SyncTask
        task: Task[Any, Any] = kind(self, fn, options)
        if task.in_process:
            _check_process_task(task)
        self.tasks[options.name] = task
        return task

    def add_hook(self, hook: Hook) -> None:
        """Add a :class:`~conveyor.hooks.Hook`; hooks run in the order added."""
        self.hooks.add(hook)

    def on_startup(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``fn`` (sync or async) when a worker starts; build app state here."""
        self.startup_handlers.append(fn)
        return fn

    def on_shutdown(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``fn`` (sync or async) when a worker stops."""
        self.shutdown_handlers.append(fn)
        return fn

    # -- lifecycle -----------------------------------------------------------------

    async def connect(self) -> None:
        """Connect the broker and the result store (``async with app`` does this)."""
        await self._connections.connect()

    async def close(self) -> None:
        """Close the connections and the sync portal."""
        await self._connections.close()

    async def __aenter__(self) -> Conveyor:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        return self._connections.main is not None

    @property
    def broker(self) -> Broker:
        """The broker connected on the running event loop."""
        return self._connections.current().broker

    @property
    def result_store(self) -> ResultStore:
        """The result store connected on the running event loop."""
        return self._connections.current().result_store

    @property
    def schedules(self) -> ScheduleBook:
        """Dynamic schedules: add, pause, resume, remove, list, run now (docs/scheduling.md)."""
        if self._schedules is None:
            from conveyor.scheduler.book import ScheduleBook

            self._schedules = ScheduleBook(self)
        return self._schedules

    def worker(
        self,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        *,
        grace: float | None = None,
        max_tasks: int | None = None,
    ) -> Worker:
        """A worker in this event loop: ``async with app.worker(concurrency=10): ...``."""
        from conveyor.worker.consumer import Worker

        return Worker(
            self, concurrency=concurrency, queues=queues, grace=grace, max_tasks=max_tasks
        )

    # -- sending -------------------------------------------------------------------

    async def enqueue(
        self,
        task: Task[Any, R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None,
    ) -> TaskHandle[R]:
        """Send one task call (``task.kiq`` lands here)."""
        (sent,) = await send(
            [Call(task, args, kwargs, options)],
            self._connections.current(),
            self.settings,
            self.hooks,
        )
        return TaskHandle(self, sent.task_id, task.return_type)

    async def enqueue_many(
        self, calls: Sequence[tuple[Task[Any, Any], Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskHandle[Any]]:
        """Send many calls in one broker batch: ``[(task, args, kwargs), ...]``. Every call
        is checked and encoded first; if one is invalid, nothing is sent."""
        sent = await send(
            [Call(task, args, kwargs) for task, args, kwargs in calls],
            self._connections.current(),
            self.settings,
            self.hooks,
        )
        return [TaskHandle(self, item.task_id, item.call.task.return_type) for item in sent]

    def enqueue_sync(
        self,
        task: Task[Any, R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None,
    ) -> TaskHandle[R]:
        """:meth:`enqueue` from synchronous code, through the portal's event loop."""
        return self._connections.portal().call(lambda: self.enqueue(task, args, kwargs, options))

    # -- tasks by id ---------------------------------------------------------------

    def workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle for a workflow id obtained elsewhere (``handle.workflow_id``): its
        status, result and abort (docs/workflows.md)."""
        return WorkflowHandle(self, workflow_id, None)

    def handle(self, task_id: str, task: str | None = None) -> TaskHandle[Any]:
        """A handle for a task id obtained elsewhere (e.g. from an HTTP request); with the
        task's name, its return value is converted to the task's annotated type."""
        registered = self.tasks.get(task) if task else None
        return TaskHandle(self, task_id, registered.return_type if registered else Any)

    async def abort(self, task_id: str) -> AbortOutcome:
        """Abort a task by id (``TaskHandle.abort()`` does the same).

        Queued, delayed or waiting for a retry: it is removed and never runs, and its
        result (status ``aborted``) is stored at once (``DEQUEUED``). Running: its worker
        cancels it within milliseconds and stores the ``aborted`` result (``SIGNALLED``;
        a sync task's thread runs on, see docs/aborting.md). Already ended: ``FINISHED``,
        nothing changes. ``UNKNOWN``: never enqueued, or its result expired.

        >>> await app.abort(task_id)                     # doctest: +SKIP
        <AbortOutcome.DEQUEUED: 'dequeued'>
        """
        return await abort_task(self, task_id)

    def abort_sync(self, task_id: str) -> AbortOutcome:
        """:meth:`abort` from synchronous code, through the portal's event loop."""
        return self._connections.portal().call(lambda: self.abort(task_id))


def importable_module(func: Callable[..., Any]) -> str:
    """The module a worker imports to find ``func``: its ``__module__``, except for a
    script run as ``python tasks.py`` (``__main__``), which a worker knows as ``tasks``
    (the path of the file under the current directory or ``sys.path``, as taskiq names
    it), or as ``pkg.tasks`` when run with ``python -m pkg.tasks``."""
    module = getattr(func, "__module__", None) or "__main__"
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if not path:
        return module  # an interactive session: no module a worker could import
    file = Path(path).resolve()
    for root in [Path.cwd(), *(Path(p) for p in sys.path if p)]:
        try:
            parts = file.with_suffix("").relative_to(root.resolve()).parts
        except ValueError:
            continue
        if parts and all(part.isidentifier() for part in parts):
            return ".".join(parts)
    return file.stem


def _check_process_task(task: Task[Any, Any]) -> None:
    """Refuse, at declaration, a ``runner="process"`` task that a process pool cannot
    run: ``TypeError`` saying why and what to do."""
    where = f"task {task.name!r}: runner='process'"
    fn = task.fn
    if task.is_async or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{where} runs a plain def in a child process, and {fn.__qualname__} is an "
            "async def: it runs on the worker's event loop already. Make it a def (for "
            "CPU-bound work), or drop runner='process'"
        )
    qualname = getattr(fn, "__qualname__", "")
    module = importable_module(fn)
    if not qualname or "<" in qualname or module == "__main__":
        raise TypeError(
            f"{where} needs a function defined at the top level of a module, since the "
            f"child process imports it by name; {fn!r} is not"
        )
    if task.has_dependencies:
        raise TypeError(
            f"{where} cannot take dependencies (Depends, Context): they live in the "
            "worker's process. Pass what the task needs as arguments"
        )


def broker_options(settings: Settings) -> BrokerOptions:
    """What the app's settings tell its broker and result store (they never see the
    settings themselves)."""
    return BrokerOptions(
        lease=settings.lease,
        fetch_wait=settings.fetch_wait,
        reap_interval=settings.reap_interval,
        queues=settings.queues,
        events_max=settings.events_max,
        clock=settings.clock,
        fault_pause=settings.fault_pause,
        fault_pause_max=settings.fault_pause_max,
        result_url=settings.result_url,
    )


def missing_result_store(broker_url: str) -> ConfigurationError:
    """The error of waiting for a result where no store keeps results."""
    return ConfigurationError(
        f"the broker {redact_url(broker_url)!r} keeps no results (no Capability.RESULTS) "
        "and this app has no result store: give Conveyor(..., results=...) the URL of "
        "one (results='redis://localhost:6379/0', or CONVEYOR_RESULT_URL)"
    )


def status_store_of(broker: Broker) -> ResultStore | None:
    """The store of terminal statuses a broker without results keeps (the RabbitMQ
    ledger's), if it has one."""
    method = getattr(broker, "status_store", None)
    return method() if callable(method) else None


class NoResultStore:
    """The result store of an app whose broker keeps no results and that was given no
    ``results=``: tasks run fire-and-forget. Their results are dropped, status reads fall
    through to the broker, and waiting for a result raises :class:`ConfigurationError`
    saying how to add a store (never a silent ``None``)."""

    def __init__(self, broker_url: str) -> None:
        self.url = broker_url

    def _missing(self) -> ConfigurationError:
        return missing_result_store(self.url)

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def clone(self) -> NoResultStore:
        return self

    async def put(self, batch: Sequence[StoredResult]) -> None:
        pass  # fire-and-forget: nobody can wait for these

    async def get(self, task_id: str) -> bytes | None:
        return None

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        raise self._missing()

    async def delete(self, task_id: str) -> None:
        pass

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        pass

    async def get_progress(self, task_id: str) -> bytes | None:
        return None


class _TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: turns a function into a :class:`Task`."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...


def _bind_schedules(task_name: str, entries: Sequence[Schedule]) -> tuple[Schedule, ...]:
    bound: list[Schedule] = []
    for entry in entries:
        schedule = entry.bind(task_name)
        taken = {s.id for s in bound}
        if schedule.id in taken and not entry.id:
            n = 2
            while f"{schedule.id}#{n}" in taken:
                n += 1
            schedule = entry.bind(task_name, f"{schedule.id}#{n}")
        elif schedule.id in taken:
            raise ConfigurationError(f"task {task_name!r}: schedule id {schedule.id!r} is repeated")
        bound.append(schedule)
    return tuple(bound)
