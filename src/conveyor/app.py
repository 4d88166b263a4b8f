"""The :class:`Conveyor` application: task registry, settings, lifecycle and sending.

>>> app = Conveyor("memory://")                     # doctest: +SKIP
>>> @app.task
... async def add(a: int, b: int) -> int:
...     return a + b
>>> async with app, app.worker(concurrency=4):      # doctest: +SKIP
...     assert await (await add.kiq(1, 2)).get(timeout=5) == 3
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

import msgspec

from conveyor.batching import Batcher
from conveyor.brokers import broker_class_for, redact_url, result_store_class_for
from conveyor.brokers.base import Broker, Outgoing, ResultStore, StoredResult
from conveyor.errors import ConfigurationError, ConveyorError, PayloadTooLarge, TaskNotFound
from conveyor.hooks import Hook, overridden
from conveyor.message import (
    SCHEMA_VERSION,
    MalformedMessage,
    Message,
    decode_message,
    encode_message,
    encode_value,
)
from conveyor.result import AbortOutcome, Result, TaskState, TaskStatus, aborted_result
from conveyor.retry import Backoff
from conveyor.scheduler.book import ScheduleBook
from conveyor.scheduler.schedule import Schedule, schedule_from_entry
from conveyor.settings import Settings
from conveyor.signing import sign
from conveyor.task import (
    CallOptions,
    SyncTask,
    Task,
    TaskHandle,
    TaskOptions,
    backoff_option,
    new_task_id,
    retry_on_option,
    seconds,
)

if TYPE_CHECKING:
    from conveyor.worker.consumer import Worker

__all__ = ["Conveyor"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Progress(msgspec.Struct, frozen=True):
    fraction: float
    message: str | None = None
    attempt: int = 0  # 0: unknown (written by an older version)


@dataclass(slots=True)
class _Connection:
    """A broker and result store connected on one event loop."""

    loop: asyncio.AbstractEventLoop
    broker: Broker
    result_store: ResultStore
    publisher: Batcher[Outgoing, str]


class Conveyor:
    """A task queue application.

    ``broker_url`` defaults to ``CONVEYOR_BROKER_URL``, else the embedded
    ``sqlite:///conveyor.db``. ``results`` defaults to the broker's own server. Any
    :class:`Settings` field can be passed as a keyword (``Conveyor(lease=10)``).
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
        self.hooks: list[Hook] = []
        self._hook_cache: dict[str, list[Any]] = {}
        self.startup_handlers: list[Callable[[], Any]] = []
        self.shutdown_handlers: list[Callable[[], Any]] = []
        self.state: dict[str, Any] = {}
        self._broker: Broker = broker_class_for(base.broker_url)(base.broker_url, base)
        self._result_store: ResultStore = (
            self._broker.result_store()
            if base.result_url is None
            else result_store_class_for(base.result_url)(base.result_url, base)
        )
        self._main: _Connection | None = None
        self._connect_lock = threading.Lock()
        self._portal: SyncPortal | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self.schedules = ScheduleBook(self)

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
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(retries=3, ...)``.

        ``async def`` tasks run on the worker's event loop; plain ``def`` tasks run in the
        worker's thread pool. ``retries`` is the number of runs after the first;
        ``retry_on`` filters which exceptions are retried; ``backoff`` is a policy
        (``exponential()``, the default; ``fixed(5)``) or a number of seconds;
        ``timeout`` and ``result_ttl`` are seconds. ``schedule`` runs the task on a
        timetable: ``cron(...)``, ``every(...)``, ``at(...)`` or taskiq's
        ``{"cron": "..."}`` dicts. A wrong option raises ``TypeError`` or ``ValueError``
        naming it, here rather than in a worker.
        """
        entries = [schedule_from_entry(entry) for entry in schedule or ()]

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(func):
                raise TypeError(f"@app.task decorates a function, got {func!r}")
            task_name = name or f"{func.__module__}:{func.__qualname__}"
            where = f"task {task_name!r}: option"
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
            )
            task = self.register(func, options)
            try:
                for entry in options.schedule:
                    self.schedules.check_call(task, entry.args, entry.kwargs)
            except BaseException:
                del self.tasks[task.name]
                raise
            return task

        return register(fn) if fn is not None else register

    def register(self, fn: Callable[..., Any], options: TaskOptions) -> Task[Any, Any]:
        """Register ``fn`` under ``options.name``; the name must be unique in this app."""
        existing = self.tasks.get(options.name)
        if existing is not None and existing.fn is not fn:
            raise ConfigurationError(
                f"task name {options.name!r} is already registered by {existing.fn.__qualname__}"
            )
        kind = Task if inspect.iscoroutinefunction(fn) else SyncTask
        task: Task[Any, Any] = kind(self, fn, options)
        self.tasks[options.name] = task
        return task

    def add_hook(self, hook: Hook) -> None:
        """Add a :class:`~conveyor.hooks.Hook`; hooks run in the order added."""
        self.hooks.append(hook)
        self._hook_cache.clear()

    def hooks_for(self, method: str) -> list[Any]:
        """The registered hooks' overriding ``method``s (cached)."""
        found = self._hook_cache.get(method)
        if found is None:
            found = self._hook_cache[method] = overridden(self.hooks, method)
        return found

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
        if self._main is not None:
            return
        loop = asyncio.get_running_loop()
        await self._broker.connect()
        if self._result_store is not self._broker.result_store():
            await self._result_store.connect()
        self._main = _Connection(
            loop, self._broker, self._result_store, Batcher(self._broker.publish)
        )

    async def close(self) -> None:
        """Close connections, the sync portal and the thread pool."""
        if self._portal is not None:
            portal, self._portal = self._portal, None
            await asyncio.to_thread(portal.close)
        main, self._main = self._main, None
        if main is not None:
            await main.publisher.aclose()
            if main.result_store is not main.broker.result_store():
                await main.result_store.close()
            await main.broker.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            self._pool_size = 0

    async def __aenter__(self) -> Conveyor:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        return self._main is not None

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._main is not None and self._main.loop is loop:
            return self._main
        portal = self._portal
        if portal is not None and portal.connection is not None and portal.connection.loop is loop:
            return portal.connection
        if self._main is None:
            raise ConveyorError(
                "Conveyor is not connected: use `async with app:` (or `await app.connect()`) "
                "before enqueueing or waiting for results; from sync code use kiq_sync()"
            )
        raise ConveyorError("this Conveyor app was connected on another event loop")

    @property
    def broker(self) -> Broker:
        """The broker connected on the running event loop."""
        return self._connection().broker

    @property
    def result_store(self) -> ResultStore:
        """The result store connected on the running event loop."""
        return self._connection().result_store

    def refuse_blocking_on_own_loop(self, what: str) -> None:
        """Raise if called on the thread running this app's event loop, which a blocking
        wait would freeze (its worker could then never produce the result)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._main is not None and self._main.loop is loop:
            raise RuntimeError(
                f"{what} would block this app's own event loop; await the async form"
            )

    @property
    def portal(self) -> SyncPortal:
        """The background event loop that serves the ``*_sync`` methods."""
        with self._connect_lock:
            if self._portal is None:
                self._portal = SyncPortal(self)
            return self._portal

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

    def build_message(
        self,
        task: Task[Any, Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None,
    ) -> Message:
        """The envelope for one call; raises ``TypeError`` for arguments that do not fit."""
        task.check_arguments(tuple(args), kwargs)
        opts = task.options
        now = self.settings.clock.now()
        not_before = 0.0
        priority, queue, key, task_id, labels = opts.priority, opts.queue, None, None, opts.labels
        if options is not None:
            if options.delay is not None:
                not_before = now + options.delay
            elif options.eta is not None:
                eta = options.eta if options.eta.tzinfo else options.eta.replace(tzinfo=UTC)
                not_before = eta.timestamp()
            priority = opts.priority if options.priority is None else options.priority
            queue = options.queue or queue
            key, task_id = options.key, options.task_id
            if options.labels:
                labels = {**labels, **options.labels}
        return Message(
            version=SCHEMA_VERSION,
            task_id=task_id or new_task_id(),
            task=task.name,
            queue=queue,
            args=list(args),
            kwargs=dict(kwargs),
            priority=priority,
            enqueued_at=now,
            not_before=not_before,
            max_attempts=opts.max_attempts,
            timeout=opts.timeout,
            result_ttl=opts.result_ttl,
            key=key,
            labels=dict(labels),
        )

    def encode(self, task: Task[Any, Any], message: Message) -> Outgoing:
        """Encode ``message`` and check its size; nothing is sent."""
        try:
            body = encode_message(message)
        except TypeError as exc:
            raise _name_bad_argument(task, message, exc) from None
        if self.settings.signing_keys:
            body = sign(body, self.settings.signing_keys[0])
        if len(body) > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"task {task.name!r}: encoded message is {len(body)} bytes, over the limit of "
                f"{self.settings.max_payload_bytes} (max_payload_bytes); pass a reference "
                "(a path, a URL, a row id) instead of the data"
            )
        key_ttl = message.result_ttl if message.result_ttl is not None else self.settings.result_ttl
        return Outgoing(
            task_id=message.task_id,
            queue=message.queue,
            body=body,
            priority=message.priority,
            not_before=message.not_before,
            key=message.key,
            key_ttl=key_ttl,
        )

    async def enqueue(
        self,
        task: Task[Any, R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None,
    ) -> TaskHandle[R]:
        """Build, encode and publish one task call (``task.kiq`` lands here)."""
        message = self.build_message(task, args, kwargs, options)
        for hook in self.hooks_for("before_enqueue"):
            message = await hook(message)
        outgoing = self.encode(task, message)
        connection = self._connection()
        if options is not None and options.task_id is not None:
            # re-running a finished task id: its old result must not answer the new run
            found = await connection.broker.task_status(options.task_id)
            if found is None or found[0] is TaskStatus.DEAD:
                await connection.result_store.delete(options.task_id)
        task_id = await connection.publisher.submit(outgoing)
        for hook in self.hooks_for("after_enqueue"):
            await hook(message, task_id)
        return TaskHandle(self, task_id, task.return_type)

    async def enqueue_many(
        self, calls: Sequence[tuple[Task[Any, Any], Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskHandle[Any]]:
        """Publish many calls in one broker batch: ``[(task, args, kwargs), ...]``."""
        prepared = []
        for task, args, kwargs in calls:
            message = self.build_message(task, args, kwargs, None)
            for hook in self.hooks_for("before_enqueue"):
                message = await hook(message)
            prepared.append((task, message, self.encode(task, message)))
        ids = await self.broker.publish([out for _, _, out in prepared])
        for (_, message, _), task_id in zip(prepared, ids, strict=True):
            for hook in self.hooks_for("after_enqueue"):
                await hook(message, task_id)
        return [
            TaskHandle(self, task_id, task.return_type)
            for (task, _, _), task_id in zip(prepared, ids, strict=True)
        ]

    def enqueue_sync(
        self,
        task: Task[Any, R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None,
    ) -> TaskHandle[R]:
        """:meth:`enqueue` from synchronous code, through the portal's event loop."""
        return self.portal.call(lambda: self.enqueue(task, args, kwargs, options))

    # -- results and status --------------------------------------------------------

    def handle(self, task_id: str, task: str | None = None) -> TaskHandle[Any]:
        """A handle for a task id obtained elsewhere (e.g. from an HTTP request)."""
        registered = self.tasks.get(task) if task else None
        return TaskHandle(self, task_id, registered.return_type if registered else Any)

    async def task_state(self, task_id: str) -> TaskState:
        """The task's status: its result's when it has one, else the broker's view."""
        from conveyor.task import decode_result

        raw = await self.result_store.get(task_id)
        found = None if raw is not None else await self.broker.task_status(task_id)
        if raw is None and found is None:
            # it may have finished between the two reads: a task's result is stored before
            # (or with) the ack after which the broker forgets it, so a second read finds it
            raw = await self.result_store.get(task_id)
        if raw is not None:
            result = decode_result(raw)
            return TaskState(task_id, result.status, result.attempts, result=result)
        if found is None:
            raise TaskNotFound(
                f"unknown task id {task_id!r} (never enqueued, or its result expired)"
            )
        status, attempts = found
        progress = await self.result_store.get_progress(task_id)
        if progress is not None and status is TaskStatus.RUNNING:
            snapshot = msgspec.msgpack.decode(progress, type=_Progress)
            if snapshot.attempt in (0, attempts):  # not an earlier attempt's last report
                return TaskState(task_id, status, attempts, snapshot.fraction, snapshot.message)
        return TaskState(task_id, status, attempts)

    async def abort(self, task_id: str) -> AbortOutcome:
        """Abort a task by id (``TaskHandle.abort()`` lands here).

        Queued, delayed or waiting for a retry: it is removed and never runs, and its
        result (status ``aborted``) is stored at once (``DEQUEUED``). Running: its worker
        cancels it within milliseconds and stores the ``aborted`` result (``SIGNALLED``;
        a sync task's thread runs on, see docs/aborting.md). Already ended: ``FINISHED``,
        nothing changes. ``UNKNOWN``: never enqueued, or its result expired.

        >>> await app.abort(task_id)                     # doctest: +SKIP
        <AbortOutcome.DEQUEUED: 'dequeued'>
        """
        connection = self._connection()
        broker, store = connection.broker, connection.result_store
        finished_at = self.settings.clock.now()

        def result_for(body: bytes, attempts: int) -> StoredResult | None:
            try:
                message = decode_message(body)
            except MalformedMessage:
                name, ttl = "", self.settings.result_ttl
            else:
                name = message.task
                ttl = self.settings.result_ttl if message.result_ttl is None else message.result_ttl
            if ttl == 0:  # the task stores no results
                return None
            result = aborted_result(
                task_id, name, attempts=attempts, finished_at=finished_at, running=False
            )
            return StoredResult(task_id, encode_value(result), ttl)

        if store is broker.result_store():
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
        if outcome is AbortOutcome.UNKNOWN and await store.get(task_id) is not None:
            return AbortOutcome.FINISHED  # brokers forget acked tasks; their result remains
        return outcome

    def abort_sync(self, task_id: str) -> AbortOutcome:
        """:meth:`abort` from synchronous code, through the portal's event loop."""
        return self.portal.call(lambda: self.abort(task_id))

    async def record_progress(
        self, task_id: str, fraction: float, message: str | None, attempt: int = 0
    ) -> None:
        """Store a progress snapshot of ``attempt`` (``Context.progress`` calls this).

        It is kept ``result_ttl`` seconds (an hour when results are not stored), and
        replaced by the task's result when it ends."""
        data = encode_value(_Progress(fraction, message, attempt))
        await self.result_store.set_progress(task_id, data, self.settings.result_ttl or 3600.0)

    async def get_result(self, task_id: str) -> Result[Any] | None:
        """The stored result of ``task_id``, or None."""
        from conveyor.task import decode_result

        raw = await self.result_store.get(task_id)
        return None if raw is None else decode_result(raw)

    # -- running sync code ---------------------------------------------------------

    def ensure_thread_pool(self, size: int) -> None:
        """Make the pool for sync tasks at least ``size`` threads (a worker calls this with
        its concurrency, so every slot can run a sync task)."""
        if self._executor is None or self._pool_size < size:
            old = self._executor
            self._executor = ThreadPoolExecutor(
                max_workers=size, thread_name_prefix="conveyor-task"
            )
            self._pool_size = size
            if old is not None:
                old.shutdown(wait=False)

    async def run_sync(
        self, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> T:
        """Run a plain function in the app's thread pool, keeping contextvars."""
        if self._executor is None:
            self.ensure_thread_pool(self.settings.concurrency)
        assert self._executor is not None
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def call_handlers(self, handlers: Sequence[Callable[[], Any]]) -> None:
        """Run startup/shutdown handlers, awaiting the async ones."""
        for handler in handlers:
            value = handler()
            if inspect.isawaitable(value):
                await value


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


def _name_bad_argument(task: Task[Any, Any], message: Message, exc: TypeError) -> TypeError:
    named = [(str(i), v) for i, v in enumerate(message.args)]
    params = [p.name for p in task.spec.arguments]
    named = [(params[i] if i < len(params) else f"#{i}", v) for i, (_, v) in enumerate(named)]
    named += list(message.kwargs.items())
    for name, value in named:
        try:
            encode_value(value)
        except TypeError as inner:
            return TypeError(
                f"task {task.name!r}: argument {name!r} of type {type(value).__qualname__} "
                f"cannot be serialized ({inner}); pass JSON-like data, a dataclass, a msgspec "
                "Struct or a pydantic model"
            )
    return TypeError(f"task {task.name!r}: cannot serialize the call ({exc})")


class SyncPortal:
    """A background thread running an event loop, with its own broker connection, so that
    synchronous code can enqueue and wait (``kiq_sync``, ``get_sync``).

    It works with or without a running loop in the caller's thread, and from many threads
    at once; it is started on first use and stopped by ``app.close()`` or at exit.
    """

    def __init__(self, app: Conveyor) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.connection: _Connection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="conveyor-portal", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._connect())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._disconnect())
        self._loop.close()

    async def _connect(self) -> None:
        app = self._app
        broker = app._broker.clone()
        await broker.connect()
        if app._result_store is app._broker.result_store():
            store = broker.result_store()
        else:
            store = app._result_store.clone()
            await store.connect()
        self.connection = _Connection(self._loop, broker, store, Batcher(broker.publish))

    async def _disconnect(self) -> None:
        conn, self.connection = self.connection, None
        if conn is None:
            return
        await conn.publisher.aclose()
        if conn.result_store is not conn.broker.result_store():
            await conn.result_store.close()
        await conn.broker.close()

    def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run ``factory()`` on the portal loop and block this thread for its value."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a *_sync method was called from inside the portal loop")

        async def run() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def close(self) -> None:
        """Stop the loop, closing the portal's connections."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
