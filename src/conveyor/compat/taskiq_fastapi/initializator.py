"""taskiq-fastapi's ``init`` and ``populate_dependency_context`` (its
``taskiq_fastapi.initializator`` module), on :mod:`conveyor.integrations.fastapi`.

>>> init(broker, "pkg.main:app")                                    # doctest: +SKIP
>>> populate_dependency_context(broker, app)    # tests on InMemoryBroker  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request

from conveyor.compat.taskiq.brokers import AsyncBroker
from conveyor.compat.taskiq.context import TaskiqEvents, TaskiqState
from conveyor.errors import ConfigurationError
from conveyor.integrations.fastapi import _binding, _load, synthetic_request

__all__ = [
    "PathOrAppOrFactory",
    "init",
    "populate_dependency_context",
    "shutdown_event_generator",
    "startup_event_generator",
]

PathOrAppOrFactory = str | FastAPI | Callable[[], FastAPI]
"""What :func:`init` takes: ``"module:attribute"`` (an app, or a function returning
one), the app, or a function returning it."""


def init(broker: AsyncBroker, app_or_path: PathOrAppOrFactory) -> None:
    """Run the FastAPI app's lifespan in each worker process of ``broker``, and give its
    tasks the app's ``Request``.

    Nothing is imported until a worker starts, so ``pkg.main`` may import the module that
    calls ``init``. Outside worker processes (the API, ``InMemoryBroker``) the handlers
    do nothing. Calling it again with the same app does nothing; with another, it raises
    :class:`~conveyor.ConfigurationError` (one FastAPI app per broker).
    """
    binding = _binding(broker.conveyor)
    if binding.source is not None:
        if binding.source == app_or_path:
            return
        raise ConfigurationError(
            f"init(): {broker!r} is already bound to {binding.source!r}; one FastAPI app per broker"
        )
    binding.source = app_or_path  # type: ignore[assignment]  # resolved by startup()
    broker.add_event_handler(
        TaskiqEvents.WORKER_STARTUP, startup_event_generator(broker, app_or_path)
    )
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, shutdown_event_generator(broker))


def startup_event_generator(
    broker: AsyncBroker, app_or_path: PathOrAppOrFactory
) -> Callable[[TaskiqState], Awaitable[None]]:
    """The WORKER_STARTUP handler :func:`init` adds: in a worker process, load the app,
    enter its lifespan (unless this process runs it already: an API with an embedded
    worker) and point ``Request`` at it. ``state.fastapi_app`` is the app."""

    async def startup(state: TaskiqState) -> None:
        if not broker.is_worker_process:
            return
        binding = _binding(broker.conveyor)
        if binding.loaded is None:
            binding.loaded = _application(app_or_path)
        await binding.worker_started()
        api = binding.api or binding.loaded
        state.fastapi_app = api
        populate_dependency_context(broker, api, binding.state)

    return startup


def shutdown_event_generator(broker: AsyncBroker) -> Callable[[TaskiqState], Awaitable[None]]:
    """The WORKER_SHUTDOWN handler :func:`init` adds: leave the app's lifespan."""

    async def shutdown(state: TaskiqState) -> None:
        if not broker.is_worker_process:
            return
        await _binding(broker.conveyor).worker_stopped()

    return shutdown


def populate_dependency_context(
    broker: AsyncBroker,
    app: Starlette,
    asgi_state: Mapping[str, Any] | None = None,
) -> None:
    """Make ``broker``'s tasks get a ``Request`` (and ``HTTPConnection``) of ``app``,
    whose ``.state`` is a copy of ``asgi_state`` (what the app's lifespan yielded): what
    a worker does at startup, and what a test on ``InMemoryBroker`` calls itself.

    They go in ``broker.dependency_overrides``, so ``TaskiqDepends(Request)`` and
    ``request: Request = TaskiqDepends()`` both get them. There is no HTTP request behind
    a task: ``GET /``, no headers, no client (docs/fastapi.md).
    """
    state = dict(asgi_state or {})

    def request() -> Request:
        return synthetic_request(app, state)

    broker.dependency_overrides[Request] = request
    broker.dependency_overrides[HTTPConnection] = request


def _application(app_or_path: PathOrAppOrFactory) -> Starlette:
    """The app: imported from its path, called if a factory, and checked."""
    found: Any = _load(app_or_path) if isinstance(app_or_path, str) else app_or_path
    if not isinstance(found, Starlette) and callable(found):
        found = found()
    if not isinstance(found, Starlette):
        raise ConfigurationError(f"{app_or_path!r} is not a FastAPI application")
    return found
