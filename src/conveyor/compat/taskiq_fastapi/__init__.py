"""taskiq-fastapi on Conveyor: change the import, keep the code.

>>> # import taskiq_fastapi                                     (before)
>>> from conveyor.compat import taskiq_fastapi                  # doctest: +SKIP
>>> taskiq_fastapi.init(broker, "pkg.main:app")                 # doctest: +SKIP

In each ``conveyor worker`` process, :func:`init` imports the FastAPI app (given, by
``"module:attribute"`` path, or as a function returning it) when the worker starts, runs
its lifespan for as long as the worker runs, and gives tasks the API's ``Request`` (and
``HTTPConnection``): ``request: Request = TaskiqDepends()``, ``TaskiqDepends(Request)``,
and the API's own providers, ``TaskiqDepends(get_db)``. Clients, ``InMemoryBroker``
included, do nothing, as in taskiq-fastapi: tests call :func:`populate_dependency_context`.
It runs on :mod:`conveyor.integrations.fastapi`; docs/fastapi.md.
"""

from __future__ import annotations

from conveyor.compat.taskiq_fastapi.initializator import init as init
from conveyor.compat.taskiq_fastapi.initializator import (
    populate_dependency_context as populate_dependency_context,
)

__all__ = ["init", "populate_dependency_context"]
