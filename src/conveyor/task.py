"""A decorated task (:class:`Task`), its options, and the handle an enqueue returns.

>>> @app.task(retries=3)                       # doctest: +SKIP
... async def add(a: int, b: int) -> int:
...     return a + b
>>> handle = await add.kiq(1, 2)               # doctest: +SKIP
>>> await handle.get(timeout=5)                # doctest: +SKIP
3
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast

import msgspec

from conveyor.clock import Seconds as Seconds
from conveyor.clock import seconds as seconds
from conveyor.deps import (
    CallSpec,
    Context,
    passed_explicitly,
    run_with_dependencies,
    split_signature,
)
from conveyor.errors import ConfigurationError
from conveyor.flow import FlowOptions
from conveyor.handle import TaskHandle
from conveyor.message import NO_CONVERSION, PLAIN_TYPES, convert, encode_value
from conveyor.retry import Backoff, exponential, fixed
from conveyor.workflow.canvas import Signature

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.scheduler.schedule import Schedule
    from conveyor.send import OutboxWriter

__all__ = ["CallOptions", "SyncTask", "Task", "TaskHandle", "TaskOptions", "TaskWithOptions"]

P = ParamSpec("P")
R = TypeVar("R")

SyncRun = Callable[[Callable[..., Any], list[Any], dict[str, Any]], Awaitable[Any]]
"""How the worker runs a plain function: ``await run_sync(fn, args, kwargs)``."""

ProcessRun = Callable[["Task[Any, Any]", list[Any], dict[str, Any]], Awaitable[Any]]
"""How the worker runs a ``runner="process"`` task: ``await run_process(task, args,
kwargs)``, in its process pool."""

Runner = Literal["thread", "process"]
"""Where a plain ``def`` task runs in a worker: its thread pool, or its process pool."""


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task runs, fixed at decoration time."""

    name: str
    queue: str = "default"
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: Backoff = field(default_factory=exponential)
    timeout: float | None = None
    result_ttl: float | None = None
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    schedule: tuple[Schedule, ...] = ()
    runner: Runner = "thread"
    flow: FlowOptions | None = None
    """Rate and concurrency limits, unique, debounce and expiry (conveyor.flow)."""

    def __post_init__(self) -> None:
        _check_options(self)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


def _check_options(options: TaskOptions) -> None:
    """Refuse, at declaration, an option that would only fail later inside a worker:
    ``TypeError`` for a wrong type, ``ValueError`` for a wrong value, naming the option."""
    where = f"task {options.name!r}"

    def wrong(option: str, expected: str, value: object) -> TypeError:
        return TypeError(f"{where}: option {option!r} must be {expected}, got {value!r}")

    if not isinstance(options.name, str) or not options.name:
        raise wrong("name", "a non-empty str", options.name)
    if not isinstance(options.queue, str) or not options.queue:
        raise wrong("queue", "a non-empty str", options.queue)
    if not _is_int(options.retries):
        raise wrong("retries", "an int (runs after the first)", options.retries)
    if options.retries < 0:
        raise ValueError(f"{where}: option 'retries' must be >= 0, got {options.retries}")
    if not _is_int(options.priority):
        raise wrong("priority", "an int (higher runs first)", options.priority)
    if not isinstance(options.retry_on, tuple) or not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in options.retry_on
    ):
        raise wrong("retry_on", "exception classes", options.retry_on)
    for option in ("timeout", "result_ttl"):
        value = getattr(options, option)
        if value is not None and not (
            isinstance(value, float) and math.isfinite(value) and 0 <= value <= _LONGEST
        ):
            raise ValueError(
                f"{where}: option {option!r} must be >= 0 seconds (and at most 10 years), "
                f"got {value!r}"
            )
    if options.timeout == 0:
        raise ValueError(f"{where}: option 'timeout' must be > 0 seconds (None: no timeout)")
    if options.runner not in ("thread", "process"):
        raise ValueError(
            f"{where}: option 'runner' must be 'thread' (the default) or 'process', "
            f"got {options.runner!r}"
        )
    if not isinstance(options.labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in options.labels.items()
    ):
        raise wrong("labels", "a mapping of str to str", options.labels)
    _check_backoff(where, options.backoff)


# the longest duration a task or a call may carry: Redis keeps times in integer ms
_LONGEST = 10 * 365 * 24 * 3600.0


def _check_call_options(task_name: str, options: CallOptions) -> None:
    """Refuse per-call options that would only fail in the broker or a worker."""
    where = f"task {task_name!r}: with_options()"
    if options.delay is not None and not (
        math.isfinite(options.delay) and 0 <= options.delay <= _LONGEST
    ):
        raise ValueError(
            f"{where}: delay must be >= 0 seconds (at most 10 years), got {options.delay!r}"
        )
    if options.eta is not None and not isinstance(options.eta, datetime):
        raise TypeError(f"{where}: eta must be a datetime, got {options.eta!r}")
    if options.priority is not None and not _is_int(options.priority):
        raise TypeError(f"{where}: priority must be an int, got {options.priority!r}")
    for name in ("queue", "key", "task_id"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{where}: {name} must be a non-empty str, got {value!r}")
    if options.labels is not None and not (
        isinstance(options.labels, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in options.labels.items())
    ):
        raise TypeError(f"{where}: labels must be a mapping of str to str, got {options.labels!r}")


def _check_workflow_options(task_name: str, options: CallOptions) -> None:
    """Refuse the options a call in a workflow cannot have: the workflow gives each call
    its task id and idempotency key, publishes it when its turn comes (no delay or eta),
    and not in the caller's transaction."""
    given = [
        name
        for name in ("delay", "eta", "key", "task_id", "transaction", "outbox")
        if getattr(options, name) is not None
    ]
    if given:
        shown = ", ".join("connection/session" if n == "transaction" else n for n in given)
        raise ValueError(
            f"task {task_name!r}: a call in a workflow cannot have {shown}: the workflow "
            "names its calls and publishes each when its turn comes; give queue, "
            "priority or labels, or enqueue it alone with kiq()"
        )


def _check_backoff(where: str, backoff: Backoff) -> None:
    """A backoff is called with the failed attempt's number and returns seconds; probe it
    once, so ``backoff=exponential`` (not called) fails here rather than at a retry."""
    if not callable(backoff) or isinstance(backoff, type):
        raise TypeError(
            f"{where}: option 'backoff' must be a policy such as exponential(), fixed(5) or a "
            f"number of seconds, got {backoff!r}"
        )
    try:
        delay = backoff(1)
    except Exception as exc:
        raise TypeError(
            f"{where}: option 'backoff' {backoff!r} cannot be called with an attempt number "
            f"({type(exc).__name__}: {exc}); pass exponential(), fixed(5) or a number of seconds"
        ) from None
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise TypeError(
            f"{where}: option 'backoff' {backoff!r} returned {delay!r} for attempt 1, not a "
            "number of seconds >= 0; pass exponential(), fixed(5) or a number of seconds"
        )


def backoff_option(task_name: str, value: Backoff | Seconds | None) -> Backoff:
    """The task option ``backoff``: a policy, a fixed delay in seconds, or None (the
    default exponential backoff)."""
    if value is None:
        return exponential()
    if isinstance(value, bool):
        raise TypeError(f"task {task_name!r}: option 'backoff' must be a policy, got {value!r}")
    if isinstance(value, timedelta | int | float):
        delay = seconds(value) or 0.0
        if delay < 0:
            raise ValueError(
                f"task {task_name!r}: option 'backoff' must be >= 0 seconds, got {delay:g}"
            )
        return fixed(delay)
    return value


def retry_on_option(
    task_name: str, value: type[BaseException] | Iterable[type[BaseException]]
) -> tuple[type[BaseException], ...]:
    """The task option ``retry_on``: one exception class or several."""
    if isinstance(value, type):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise TypeError(
            f"task {task_name!r}: option 'retry_on' must be exception classes, got {value!r}"
        ) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call overrides set with ``task.with_options(...)``."""

    delay: float | None = None
    eta: datetime | None = None
    priority: int | None = None
    queue: str | None = None
    key: str | None = None
    task_id: str | None = None
    labels: Mapping[str, str] | None = None
    key_ttl: float | None = None
    """How long ``key`` keeps pointing at the task after it ends (default: its
    ``result_ttl``); the scheduler sets it to cover a tick's whole window."""
    timeout: float | None = None
    """This call's timeout in seconds, instead of the task's (the worker reads the
    message's); taskiq's per-call ``timeout`` label sets it."""
    transaction: object | None = None
    """The caller's database connection or session (``with_options(connection=...)`` or
    ``session=...``): the task is written in its transaction, on a broker that can
    (:class:`~conveyor.brokers.base.TransactionalPublish`), or published after its commit
    (a SQLAlchemy session, on the others; docs/transactional-enqueue.md)."""
    outbox: OutboxWriter | None = None
    """Write the task to this outbox table through ``transaction`` instead; a relay
    publishes it after the commit (:mod:`conveyor.outbox`)."""


class Task(Generic[P, R]):
    """A function registered as a task. Call it to run in-process; ``kiq`` to enqueue."""

    def __init__(self, app: Conveyor, fn: Callable[P, Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.spec: CallSpec = split_signature(fn)
        self.has_dependencies = bool(self.spec.injected)
        self.in_process = options.runner == "process"
        self.return_type: Any = self.spec.hints.get("return", Any)
        self._positional = [
            p for p in self.spec.arguments if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self._conversions: dict[str, Any] = {
            p.name: self.spec.hints.get(p.name, Any)
            for p in self.spec.arguments
            if self.spec.hints.get(p.name, Any) not in NO_CONVERSION
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        self._signature = inspect.Signature(list(self.spec.arguments))
        # A call giving only positional arguments to a signature of plain parameters is
        # checked without Signature.bind (2 us of a 4 us enqueue).
        plain = len(self._positional) == len(self.spec.arguments)
        self._plain_names = tuple(p.name for p in self._positional) if plain else None
        self._required = sum(1 for p in self._positional if p.default is p.empty)
        # per plain parameter: its name, its plain type (checked by type) or None, and
        # whether its value is checked by conversion instead
        self._plain_checks = tuple(
            (
                p.name,
                hint if (hint := self.spec.hints.get(p.name)) in PLAIN_TYPES else None,
                p.name in self._conversions,
            )
            for p in self._positional
        )
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.options.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Run the task here, in this process, resolving its dependencies (unit tests,
        reuse): ``await task(...)`` for an ``async def`` task; a plain ``def`` task
        (:class:`SyncTask`) just runs and returns its value."""
        if not self.is_async:
            return self._call_sync(args, kwargs)  # type: ignore[return-value]
        return self._call_here(args, kwargs)

    async def _call_here(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        async def body(injected: dict[str, Any]) -> R:
            value = self.fn(*args, **kwargs, **injected)
            return cast(R, await value if self.is_async else value)

        return await run_with_dependencies(
            self.spec,
            None,
            self.app.dependency_overrides,
            self.app.dependency_providers,
            body,
            given=passed_explicitly(self.spec, args, kwargs),
        )

    def _call_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        if not self.has_dependencies:
            return cast(R, self.fn(*args, **kwargs))
        # dependencies may be async: resolve them on a private loop, in a thread of its
        # own when this one already runs a loop (which a blocking call must not nest in)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._call_here(args, kwargs))
        context = contextvars.copy_context()
        with ThreadPoolExecutor(1, thread_name_prefix="conveyor-direct-call") as pool:
            return pool.submit(context.run, asyncio.run, self._call_here(args, kwargs)).result()

    if not TYPE_CHECKING:  # type checkers report the unknown attribute themselves

        def __getattr__(self, name: str) -> Any:
            hint = _OTHER_QUEUES_NAMES.get(name)
            if hint is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            raise AttributeError(
                f"task {self.name!r} has no {name}() ({hint}): enqueue with "
                "`await task.kiq(...)` from async code or `task.kiq_sync(...)` from sync "
                "code; per-call options (delay, eta, priority, queue, key) go through "
                "task.with_options(...)"
            )

    # -- enqueue -------------------------------------------------------------------

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Send the task to its queue; returns a :class:`TaskHandle` at once."""
        return await self.app.enqueue(self, args, kwargs, None)

    kiq = enqueue  # taskiq's name, kept for users coming from taskiq

    def kiq_sync(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Enqueue from synchronous code, with or without a running event loop, from any
        thread."""
        return self.app.enqueue_sync(self, args, kwargs, None)

    enqueue_sync = kiq_sync

    # -- workflows -----------------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A call of this task for a workflow (``conveyor.chain``, ``group``, ``chord``):
        in a chain it receives the previous result as its first argument, before
        ``args``.

        >>> await chain(fetch.s(url), parse.s(), store.s()).kiq()   # doctest: +SKIP
        """
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A call of this task for a workflow that receives nothing from the step before
        it (Celery's immutable signature): ``chain(a.s(), cleanup.si())``."""
        return Signature(self, args, kwargs, receives=False)

    def with_options(
        self,
        *,
        delay: Seconds | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        key: str | None = None,
        task_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        connection: object | None = None,
        session: object | None = None,
        outbox: OutboxWriter | None = None,
    ) -> TaskWithOptions[P, R]:
        """Per-call options: ``await task.with_options(delay=10, key="k").kiq(...)``.

        ``connection`` (an asyncpg connection) or ``session`` (a SQLAlchemy
        ``AsyncSession``) enqueues inside that transaction, on PostgreSQL: the task is
        visible to workers at its commit and gone on rollback. On other brokers a
        ``session`` holds the publish until its commit and drops it on rollback
        (:mod:`conveyor.integrations.sqlalchemy`; docs/transactional-enqueue.md)::

            async with conn.transaction():
                await conn.execute("INSERT INTO emails ...")
                await send_email.with_options(connection=conn).kiq(email_id)

        ``outbox`` (a :class:`conveyor.outbox.Outbox`) with ``connection`` or ``session``
        writes the task to that table in your PostgreSQL, in your transaction, on any
        broker; a relay publishes it after the commit, with no window::

            await send_email.with_options(outbox=outbox, session=session).kiq(email_id)
        """
        if delay is not None and eta is not None:
            raise ValueError("with_options(): give delay or eta, not both")
        if connection is not None and session is not None:
            raise ValueError("with_options(): give connection or session, not both")
        if outbox is not None and connection is None and session is None:
            raise ValueError(
                "with_options(outbox=...): give the transaction to write it in as well "
                "(connection=asyncpg_connection or session=AsyncSession)"
            )
        options = CallOptions(
            seconds(delay, "with_options(): delay"),
            eta,
            priority,
            queue,
            key,
            task_id,
            labels,
            transaction=connection if connection is not None else session,
            outbox=outbox,
        )
        _check_call_options(self.name, options)
        return TaskWithOptions(self, options)

    # -- worker side ---------------------------------------------------------------

    def check_arguments(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, receives: bool = False
    ) -> None:
        """Raise ``TypeError`` naming the task and the argument when the call does not fit
        the signature or an argument does not fit its annotation.

        An argument with a richer annotation (``list[int]``, a dataclass, a model) is
        checked as the worker will convert it: encoded, decoded and converted, so a call
        the worker would dead-letter fails here, in the caller. ``receives``: a workflow
        call (``task.s()``), whose first argument is the previous result, given later."""
        if receives:
            if not self._positional:
                raise TypeError(
                    f"task {self.name!r} takes no positional argument to receive the previous "
                    "result in a workflow; make the call with .si() instead of .s()"
                )
            args = (_RECEIVED, *args)
        names = self._plain_names
        if names is not None and not kwargs and self._required <= len(args) <= len(names):
            for (name, plain, converted), value in zip(self._plain_checks, args, strict=False):
                if value is _RECEIVED:  # converted by the worker when it arrives
                    continue
                if plain is not None:
                    if type(value) is not plain and not _fits(value, plain):
                        raise TypeError(
                            f"task {self.name!r}: argument {name!r} must be {plain.__name__}, "
                            f"got {type(value).__name__}"
                        )
                elif converted:
                    self._check_conversion(name, value)
            return
        try:
            given = self._signature.bind(*args, **kwargs).arguments.items()
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None
        for name, value in given:
            if value is _RECEIVED:  # converted by the worker when it arrives
                continue
            expected = self.spec.hints.get(name)
            if expected in PLAIN_TYPES:
                if not _fits(value, expected):
                    raise TypeError(
                        f"task {self.name!r}: argument {name!r} must be {expected.__name__}, "
                        f"got {type(value).__name__}"
                    )
            elif name in self._conversions:
                self._check_conversion(name, value)

    def _check_conversion(self, name: str, value: Any) -> None:
        try:
            wire = msgspec.msgpack.decode(encode_value(value))
        except TypeError:
            return  # not serializable: the encoder names the argument (app.encode)
        try:
            convert(wire, self._conversions[name])
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            raise TypeError(
                f"task {self.name!r}: argument {name!r} does not fit its annotation "
                f"{_type_name(self._conversions[name])}: {exc}"
            ) from None

    def convert_arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Convert decoded arguments to the annotated types; raises ``msgspec.ValidationError``
        (with the parameter named) when they do not fit."""
        if not self._conversions:
            return args, kwargs
        for index, value in enumerate(args):
            if index < len(self._positional):
                name = self._positional[index].name
                if name in self._conversions:
                    args[index] = _convert_named(name, value, self._conversions[name])
        for name, value in kwargs.items():
            if name in self._conversions:
                kwargs[name] = _convert_named(name, value, self._conversions[name])
        return args, kwargs

    @functools.cached_property
    def location(self) -> tuple[str, str]:
        """``(module, qualname)`` of the function: where a process imports it from."""
        from conveyor.app import importable_module

        return importable_module(self.fn), self.fn.__qualname__

    async def run(
        self,
        args: list[Any],
        kwargs: dict[str, Any],
        context: Context | None,
        run_sync: SyncRun,
        run_process: ProcessRun | None = None,
    ) -> Any:
        """Execute with dependencies resolved; a sync function runs through ``run_sync``
        (the worker's thread pool), or ``run_process`` (its process pool) for a
        ``runner="process"`` task."""
        if self.in_process:  # it has no dependencies: refused at registration
            if run_process is None:
                raise ConfigurationError(
                    f"task {self.name!r} has runner='process', and this worker has no process pool"
                )
            return await run_process(self, args, kwargs)
        if not self.has_dependencies:
            if self.is_async:
                return await self.fn(*args, **kwargs)
            return await run_sync(self.fn, args, kwargs)

        async def body(injected: dict[str, Any]) -> Any:
            if self.is_async:
                return await self.fn(*args, **kwargs, **injected)
            return await run_sync(self.fn, args, {**kwargs, **injected})

        return await run_with_dependencies(
            self.spec, context, self.app.dependency_overrides, self.app.dependency_providers, body
        )


_RECEIVED = object()  # the value a workflow call receives, in check_arguments


def _fits(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def _convert_named(name: str, value: Any, annotation: Any) -> Any:
    try:
        return convert(value, annotation)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"argument {name!r}: {exc}") from None


class SyncTask(Task[P, R]):
    """A task whose function is a plain ``def``. In a worker it runs in a thread;
    called directly it just runs and returns its value: ``resize("a.png") == "a.png"``."""

    if TYPE_CHECKING:
        # the same object as Task.__call__ at run time; only its type differs
        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:  # type: ignore[override]
            ...


_OTHER_QUEUES_NAMES = {
    "delay": "Celery's name",
    "apply_async": "Celery's name",
    "send": "Dramatiq's name",
    "send_with_options": "Dramatiq's name",
    "enqueue_job": "arq's name",
}


@dataclass(frozen=True, slots=True)
class TaskWithOptions(Generic[P, R]):
    """A task bound to per-call options; enqueue it with ``kiq``/``enqueue``/``kiq_sync``."""

    task: Task[P, R]
    options: CallOptions

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        return await self.task.app.enqueue(self.task, args, kwargs, self.options)

    kiq = enqueue

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """:meth:`Task.s` with these options (queue, priority, labels)."""
        _check_workflow_options(self.task.name, self.options)
        return Signature(self.task, args, kwargs, self.options)

    def si(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """:meth:`Task.si` with these options (queue, priority, labels)."""
        _check_workflow_options(self.task.name, self.options)
        return Signature(self.task, args, kwargs, self.options, receives=False)

    def kiq_sync(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        if self.options.transaction is not None:
            raise ConfigurationError(
                f"task {self.task.name!r}: a transactional enqueue (connection= or session=) "
                "runs on the caller's event loop: use `await ....kiq()`, not kiq_sync()"
            )
        return self.task.app.enqueue_sync(self.task, args, kwargs, self.options)

    enqueue_sync = kiq_sync
