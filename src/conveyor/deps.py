"""Dependency injection for tasks: ``Depends`` and ``Context``, FastAPI-style.

>>> async def get_db():                      # doctest: +SKIP
...     async with Session() as session:
...         yield session                    # cleaned up after the task, even on failure
>>> @app.task                                # doctest: +SKIP
... async def send_email(to: str, db: Session = Depends(get_db), ctx: Context = Depends()):
...     await ctx.progress(0.5, "rendered")

Supported: async and sync callables, async and sync generators (cleaned up after the
task), sub-dependencies, per-task caching (one call per dependency per task run, unless
``use_cache=False``), ``Context`` by annotation, ``Annotated[T, Depends(...)]``, and
``app.dependency_overrides``. FastAPI's own ``fastapi.Depends(...)`` markers are
understood too, so one provider serves a route and a task; parameters annotated with
Starlette's ``Request``/``HTTPConnection`` are injected like FastAPI injects them, from
``app.dependency_providers`` (which ``conveyor.integrations.fastapi`` fills).

Why not fast-depends: we need Context injected by type, FastAPI's markers recognised, and
a resolver that costs nothing for tasks without dependencies (the hot path); the whole
resolver is the page below.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from types import MappingProxyType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    TypeVar,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

import msgspec

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.message import Message

__all__ = ["Context", "Dependency", "Depends", "resolve_dependencies", "split_signature"]

T = TypeVar("T")

log = logging.getLogger("conveyor.worker")


class Dependency(msgspec.Struct, frozen=True):
    """The marker ``Depends(...)`` returns; ``call`` None means "use the annotation"."""

    call: Callable[..., Any] | None
    use_cache: bool = True


def Depends(dependency: Callable[..., Any] | None = None, *, use_cache: bool = True) -> Any:
    """Declare a parameter filled by calling ``dependency`` (or its annotation) per task run.

    The return type is ``Any`` so that ``db: Session = Depends(get_db)`` type-checks, as in
    FastAPI.
    """
    return Dependency(dependency, use_cache)


class Context:
    """What a running task can know about itself; inject with ``ctx: Context = Depends()``.

    ``attempt`` is 1 on the first run. ``progress()`` publishes a fraction (0..1) and a
    message that ``TaskHandle.status()`` and the dashboard show (``progress_sync()`` from a
    ``def`` task). ``message`` is the envelope being run (its arguments as sent, labels,
    headers), None outside a worker. ``abort_requested`` turns True when the task is
    aborted: an ``async def`` task is cancelled too, a ``def`` task should poll it.
    """

    __slots__ = (
        "_abort",
        "_loop",
        "app",
        "attempt",
        "labels",
        "message",
        "queue",
        "task_id",
        "task_name",
    )

    def __init__(
        self,
        app: Conveyor,
        task_id: str,
        task_name: str,
        attempt: int,
        queue: str,
        labels: Mapping[str, str],
        message: Message | None = None,
    ) -> None:
        self.app = app
        self.task_id = task_id
        self.task_name = task_name
        self.attempt = attempt
        self.queue = queue
        self.labels = labels
        self.message = message
        self._abort = asyncio.Event()
        try:  # the worker's loop, for progress_sync() from a def task's thread
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @property
    def abort_requested(self) -> bool:
        """True once the task was aborted (``handle.abort()``); safe to read from any thread.

        >>> while not ctx.abort_requested:            # doctest: +SKIP
        ...     process(next_chunk())
        """
        return self._abort.is_set()

    def request_abort(self) -> None:
        """Set :attr:`abort_requested` (the worker calls this when the task is aborted)."""
        self._abort.set()

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress, e.g. ``await ctx.progress(0.5, "halfway")``.

        Best effort: a broker error is logged, not raised, so a reporting hiccup never
        fails the task. A fraction outside 0..1 raises ``ValueError``.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be within 0..1, got {fraction}")
        try:
            from conveyor.handle import record_progress

            await record_progress(self.app, self.task_id, fraction, message, self.attempt)
        except Exception:
            log.warning("could not record the progress of task %s", self.task_id, exc_info=True)

    def progress_sync(self, fraction: float, message: str | None = None) -> None:
        """:meth:`progress` for a ``def`` task, from its worker thread.

        >>> ctx.progress_sync(0.5, "halfway")           # doctest: +SKIP
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("progress_sync() needs the Context of a task run by a worker")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("progress_sync() would block the event loop: await ctx.progress()")
        asyncio.run_coroutine_threadsafe(self.progress(fraction, message), loop).result()


class _Param(msgspec.Struct, frozen=True):
    name: str
    dependency: Dependency | None  # None: the Context itself
    annotation: Any


class CallSpec(msgspec.Struct, frozen=True):
    """A callable's parameters split into injected ones and plain arguments."""

    call: Callable[..., Any]
    injected: tuple[_Param, ...]
    arguments: tuple[inspect.Parameter, ...]
    hints: Mapping[str, Any]


def _as_dependency(default: Any) -> Dependency | None:
    if isinstance(default, Dependency):
        return default
    # fastapi.params.Depends, without importing FastAPI
    if type(default).__name__ == "Depends" and hasattr(default, "dependency"):
        return Dependency(default.dependency, getattr(default, "use_cache", True))
    return None


def _annotated_dependency(annotation: Any) -> Dependency | None:
    """The marker in ``Annotated[T, Depends(...)]``; FastAPI uses the last one."""
    if get_origin(annotation) is not Annotated:
        return None
    for meta in reversed(annotation.__metadata__):
        dependency = _as_dependency(meta)
        if dependency is not None:
            return dependency
    return None


def _is_context(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Context)


def _is_connection(annotation: Any) -> bool:
    """Starlette's ``HTTPConnection`` or a subclass (``Request``), without importing it:
    FastAPI injects these by annotation alone, so providers written for routes take them
    without ``Depends()``."""
    return isinstance(annotation, type) and any(
        cls.__name__ == "HTTPConnection" and cls.__module__ == "starlette.requests"
        for cls in annotation.__mro__
    )


_specs: dict[Callable[..., Any], CallSpec] = {}


def split_signature(call: Callable[..., Any]) -> CallSpec:
    """Analyse ``call`` once: which parameters are injected and which are arguments."""
    cached = _specs.get(call)
    if cached is not None:
        return cached
    # a class is called through its __init__, whose annotations say what it depends on; a
    # generic class given its type arguments (``Repo[User]``) fills its TypeVars with them
    origin = get_origin(call)
    cls = origin if isinstance(origin, type) else call
    typevars: dict[Any, Any] = {}
    if cls is not call:
        typevars = dict(zip(getattr(cls, "__parameters__", ()), get_args(call), strict=False))
    # getattr: mypy refuses __init__ read off a value it types as a callable
    annotated = getattr(cls, "__init__") if isinstance(cls, type) else call  # noqa: B009
    try:
        hints = get_type_hints(annotated)
        extras = get_type_hints(annotated, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = extras = {}
    signature = inspect.signature(cls)
    injected: list[_Param] = []
    arguments: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if isinstance(annotation, TypeVar):
            annotation = typevars.get(annotation, annotation)
        dependency = _as_dependency(param.default) or _annotated_dependency(extras.get(param.name))
        if dependency is None and _is_connection(annotation):
            dependency = Dependency(None)
        if dependency is not None:
            if dependency.call is None and _is_context(annotation):
                injected.append(_Param(param.name, None, annotation))
            else:
                injected.append(_Param(param.name, dependency, annotation))
        elif _is_context(annotation):
            injected.append(_Param(param.name, None, annotation))
        else:
            arguments.append(param)
    spec = CallSpec(call, tuple(injected), tuple(arguments), hints)
    _specs[call] = spec
    return spec


_NO_PROVIDERS: Mapping[Any, Callable[..., Any]] = MappingProxyType({})


def passed_explicitly(spec: CallSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> set[str]:
    """The injected parameters a direct call passes itself, by position or by name (a
    test handing a task its session or a Context): those are not resolved. A call that
    does not fit the signature passes none; calling the function then says why."""
    if not spec.injected:
        return set()
    try:
        bound = inspect.signature(spec.call).bind_partial(*args, **kwargs)
    except TypeError:
        return set()
    return {param.name for param in spec.injected if param.name in bound.arguments}


async def run_with_dependencies(
    spec: CallSpec,
    context: Context | None,
    overrides: Mapping[Callable[..., Any], Callable[..., Any]],
    providers: Mapping[Any, Callable[..., Any]],
    body: Callable[[dict[str, Any]], Awaitable[T]],
    given: Collection[str] = (),
) -> T:
    """Resolve ``spec``'s dependencies (but those the caller ``given`` itself), run
    ``body(injected)``, then close them: generator dependencies run their cleanup with the
    body's exception, if any.

    A cleanup cannot turn a failed call into a success: a generator that catches the
    exception (to roll back) and does not re-raise it still leaves the call failed, with
    that exception, as FastAPI does."""
    stack = AsyncExitStack()
    await stack.__aenter__()
    try:
        injected = await resolve_dependencies(
            spec, context, stack, overrides, providers=providers, given=given
        )
        value = await body(injected)
    except BaseException as exc:
        await stack.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await stack.__aexit__(None, None, None)
    return value


async def resolve_dependencies(
    spec: CallSpec,
    context: Context | None,
    stack: AsyncExitStack,
    overrides: Mapping[Callable[..., Any], Callable[..., Any]],
    cache: dict[Callable[..., Any], Any] | None = None,
    providers: Mapping[Any, Callable[..., Any]] = _NO_PROVIDERS,
    given: Collection[str] = (),
) -> dict[str, Any]:
    """Values for ``spec``'s injected parameters, but those named in ``given`` (passed by
    the caller of a direct call). Generator dependencies are entered on ``stack``; closing
    the stack runs their cleanup (with the task's exception, if any).

    ``Depends()`` without a callable calls the first of ``overrides[annotation]``,
    ``providers[annotation]`` and the annotation itself."""
    cache = {} if cache is None else cache
    values: dict[str, Any] = {}
    for param in spec.injected:
        if param.name in given:
            continue
        if param.dependency is None:
            if context is None:
                raise RuntimeError(f"{param.name}: a Context is only available inside a task run")
            values[param.name] = context
            continue
        call = param.dependency.call
        if call is not None:
            target = overrides.get(call, call)
        else:
            target = _provider_for(param, overrides, providers)
        if param.dependency.use_cache and target in cache:
            values[param.name] = cache[target]
            continue
        value = await _call_dependency(target, context, stack, overrides, cache, providers)
        if param.dependency.use_cache:
            cache[target] = value
        values[param.name] = value
    return values


def _provider_for(
    param: _Param,
    overrides: Mapping[Callable[..., Any], Callable[..., Any]],
    providers: Mapping[Any, Callable[..., Any]],
) -> Callable[..., Any]:
    """What ``Depends()`` without a callable calls: keyed by the annotation."""
    annotation = param.annotation
    found = overrides.get(annotation)
    if found is None:
        found = providers.get(annotation)
    if found is not None:
        return found
    if _is_connection(annotation):
        raise RuntimeError(
            f"{param.name}: a {annotation.__name__} is injected only into tasks of an app "
            "bound to a FastAPI app with conveyor.integrations.fastapi.init() or lifespan()"
        )
    return cast(Callable[..., Any], annotation)


async def _call_dependency(
    target: Callable[..., Any],
    context: Context | None,
    stack: AsyncExitStack,
    overrides: Mapping[Callable[..., Any], Callable[..., Any]],
    cache: dict[Callable[..., Any], Any],
    providers: Mapping[Any, Callable[..., Any]],
) -> Any:
    spec = split_signature(target)
    kwargs = await resolve_dependencies(spec, context, stack, overrides, cache, providers)
    if inspect.isasyncgenfunction(target):
        return await stack.enter_async_context(asynccontextmanager(target)(**kwargs))
    if inspect.isgeneratorfunction(target):
        return stack.enter_context(contextmanager(target)(**kwargs))
    value = target(**kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value
