"""FastAPI integration: the broker connects with the API, and tasks share the API's
``Depends`` providers (``get_db_session``, ``Request``, ``request.app.state``).

>>> conveyor_app = Conveyor()                                       # doctest: +SKIP
>>> api = FastAPI(lifespan=lifespan(conveyor_app, api_lifespan))    # doctest: +SKIP
>>> init(conveyor_app, "pkg.main:api")                              # doctest: +SKIP
>>> @conveyor_app.task                                              # doctest: +SKIP
... async def send_email(user_id: int, db: AsyncSession = Depends(get_db_session)) -> None:
...     ...

In the API process, :func:`lifespan` connects the Conveyor app at startup and closes it
at shutdown. In a worker process, :func:`init` imports the API when the worker starts,
runs the API's lifespan for as long as the worker runs (so ``api.state`` is built as in
the API), and gives tasks that ask for a ``Request`` (or an ``HTTPConnection``) a
synthetic one whose ``.app`` is the API. In the API process the lifespan is already
running, so a worker started there (an embedded ``app.worker()``) does not run it again.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar, overload
from weakref import WeakKeyDictionary

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request

from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError, ConveyorError

__all__ = ["init", "lifespan"]

_App = TypeVar("_App", bound=Starlette)
_State = TypeVar("_State", bound=Mapping[str, Any] | None)


class _Binding:
    """The FastAPI app bound to one Conveyor app, and who runs its lifespan."""

    def __init__(self, conveyor_app: Conveyor) -> None:
        self.source: Starlette | str | None = None  # what init() was given
        self.loaded: Starlette | None = None  # the source, imported
        self.api: Starlette | None = None  # what a task's request.app is
        self.state: dict[str, Any] = {}  # what the API's lifespan yielded: request.state
        self.serving = 0  # lifespan()s running in this process: the API's, or a worker's
        self.workers = 0  # workers running in this process
        self.worker_lifespan: AsyncExitStack | None = None  # entered by init() for workers
        conveyor_app.dependency_providers[Request] = self.request
        conveyor_app.dependency_providers[HTTPConnection] = self.request

    def request(self) -> Request:
        """A fresh request for one task run, as a route would see it: ``.app`` is the API
        and ``.state`` a copy of its lifespan state; there is no client, header or body."""
        api = self.api
        if api is None:
            raise ConveyorError(
                "a task asked for a Request before its FastAPI app was loaded: a worker "
                "loads it at startup (init()), the API process while lifespan() runs"
            )
        return synthetic_request(api, self.state)

    async def worker_started(self) -> None:
        self.workers += 1
        if self.serving or self.workers > 1:
            return  # the API (or another worker) in this process runs the lifespan already
        try:
            assert self.source is not None
            if self.loaded is None:
                self.loaded = _load(self.source)
            api = self.loaded
            stack = AsyncExitStack()
            state = await stack.enter_async_context(api.router.lifespan_context(api))
        except BaseException:
            self.workers -= 1
            raise
        self.worker_lifespan = stack
        self.api = api
        self.state = dict(state or {})

    async def worker_stopped(self) -> None:
        self.workers = max(self.workers - 1, 0)
        if self.workers == 0 and self.worker_lifespan is not None:
            stack, self.worker_lifespan = self.worker_lifespan, None
            await stack.aclose()


def synthetic_request(api: Starlette, state: Mapping[str, Any]) -> Request:
    """A request for a task run, with no HTTP request behind it: ``.app`` is ``api``,
    ``.state`` a copy of ``state`` (what the API's lifespan yielded), ``GET /``."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": None,
        "client": None,
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "app": api,
        "router": api.router,
        "state": dict(state),
    }
    return Request(scope)


_bindings: WeakKeyDictionary[Conveyor, _Binding] = WeakKeyDictionary()


def _binding(conveyor_app: Conveyor) -> _Binding:
    binding = _bindings.get(conveyor_app)
    if binding is None:
        binding = _bindings[conveyor_app] = _Binding(conveyor_app)
    return binding


def _load(source: Starlette | str) -> Starlette:
    if not isinstance(source, str):
        return source
    module_name, _, attribute = source.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"init(): {source!r} should be 'module:attribute', e.g. 'pkg.main:api'"
        )
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"init(): cannot import {module_name!r} ({exc})") from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigurationError(
                f"init(): module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not isinstance(found, Starlette) and callable(found):
        found = found()  # an application factory
    if not isinstance(found, Starlette):
        raise ConfigurationError(
            f"init(): {source!r} is a {type(found).__name__}, not a FastAPI app "
            "(or a function returning one)"
        )
    return found


def init(conveyor_app: Conveyor, api: Starlette | str) -> None:
    """Bind ``conveyor_app``'s workers to a FastAPI app, given or as ``"pkg.main:api"``.

    When a worker starts, the app is imported (lazily, so ``pkg.main`` may import the
    module calling ``init``), its lifespan runs until the worker stops, and tasks can use
    the API's providers, including ones that take a ``Request``:

    >>> init(conveyor_app, "pkg.main:api")                   # doctest: +SKIP
    >>> @conveyor_app.task                                   # doctest: +SKIP
    ... async def count_users(request: Request) -> int:
    ...     return await request.app.state.users.count()

    Where :func:`lifespan` runs (the API process), the worker does not run the API's
    lifespan again. Calling ``init`` again with the same API does nothing.
    """
    binding = _binding(conveyor_app)
    if binding.source is not None:
        if binding.source == api:
            return
        raise ConfigurationError(
            f"init(): {conveyor_app!r} is already bound to {binding.source!r}; one FastAPI "
            "app per Conveyor app"
        )
    binding.source = api
    conveyor_app.on_startup(binding.worker_started)
    conveyor_app.on_shutdown(binding.worker_stopped)


@overload
def lifespan(
    conveyor_app: Conveyor,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]: ...


@overload
def lifespan(
    conveyor_app: Conveyor, wrapped: Callable[[_App], AbstractAsyncContextManager[_State]]
) -> Callable[[_App], AbstractAsyncContextManager[_State]]: ...


def lifespan(
    conveyor_app: Conveyor,
    wrapped: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A FastAPI lifespan that connects ``conveyor_app`` at startup and closes it at
    shutdown, around the API's own lifespan ``wrapped`` (whose state it passes on):

    >>> api = FastAPI(lifespan=lifespan(conveyor_app))             # doctest: +SKIP
    >>> api = FastAPI(lifespan=lifespan(conveyor_app, my_lifespan))  # doctest: +SKIP

    ``wrapped`` starts after the connection, so it can enqueue, and stops before the
    close. Or enter it inside your own: ``async with lifespan(conveyor_app)(api): ...``.
    A connection opened elsewhere (``async with conveyor_app``) is left open; in a worker
    (see :func:`init`) the worker owns the connection and this only runs ``wrapped``.
    """
    binding = _binding(conveyor_app)
    inner = asynccontextmanager(wrapped) if inspect.isasyncgenfunction(wrapped) else wrapped

    @asynccontextmanager
    async def run(api: Starlette) -> AsyncIterator[Any]:
        owns = not conveyor_app.is_connected  # in a worker, the worker connected already
        if owns:
            await conveyor_app.connect()
        binding.serving += 1
        binding.api = api
        try:
            if inner is None:
                yield None
            else:
                async with inner(api) as state:
                    binding.state = dict(state or {})
                    yield state
        finally:
            binding.serving -= 1
            if owns:
                await conveyor_app.close()

    return run
