"""The ``conveyor`` command.

::

    conveyor worker  pkg.tasks:app [more.modules ...] --workers 2 --concurrency 100 \\
                     --queues default,reports --max-tasks-per-child 1000 --grace 30 --reload \\
                     --with-scheduler [--skip-first-run]
    conveyor scheduler pkg.tasks:app [--skip-first-run]
    conveyor schedules [-m more.modules] pkg.tasks:app list|add|remove|pause|resume|run-now
    conveyor status  pkg.tasks:app
    conveyor dlq     pkg.tasks:app list|show|requeue|purge
    conveyor abort   pkg.tasks:app TASK_ID [TASK_ID ...]
    conveyor dashboard pkg.tasks:app [--host 127.0.0.1] [--port 8000] [--read-only]
    conveyor demo

This module holds the ``main`` group and what every command shares: loading the app
(:func:`import_app`), logging, and running one job against a connected app. Each family
of commands is a module of this package (``worker``, ``schedules``, ``status``, ``dlq``,
``abort``, ``dashboard``, ``demo``) that registers on ``main`` when imported, at the end
of this file.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import click

from conveyor.app import Conveyor
from conveyor.errors import ConveyorError

__all__ = ["configure_logging", "import_app", "main"]

T = TypeVar("T")


def configure_logging(level: str, log_format: str = "text") -> None:
    """Timestamped log lines on stderr, plain or JSON (one object per line); lines
    written inside a task carry its id, name and attempt (docs/observability.md)."""
    from conveyor.observability.logging import JsonFormatter, TextFormatter, install_task_context

    install_task_context()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])


def import_app(path: str, modules: Sequence[str] = ()) -> Conveyor:
    """Import ``module:attribute`` (or a module holding one Conveyor app) and the extra
    task ``modules``, the way taskiq's worker does. The current directory is importable.

    The attribute may also be any object holding its app as ``.conveyor``, such as a
    ``conveyor.compat.taskiq`` broker or scheduler."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(f"cannot import {module_name!r}: {exc}") from exc
    if attribute:
        app = getattr(module, attribute, None)
        if app is None:
            raise click.UsageError(f"module {module_name!r} has no attribute {attribute!r}")
    else:
        found = [v for v in vars(module).values() if isinstance(v, Conveyor)]
        if len(found) != 1:
            raise click.UsageError(
                f"{module_name!r} holds {len(found)} Conveyor apps; name one as {module_name}:app"
            )
        app = found[0]
    wrapped = getattr(app, "conveyor", None)
    if not isinstance(app, Conveyor) and isinstance(wrapped, Conveyor):
        app = wrapped
    if not isinstance(app, Conveyor):
        raise click.UsageError(f"{path!r} is a {type(app).__name__}, not a Conveyor app")
    for extra in modules:
        try:
            importlib.import_module(extra)
        except ImportError as exc:
            raise click.UsageError(f"cannot import task module {extra!r}: {exc}") from exc
    return app


def discover_modules(patterns: Sequence[str], root: Path | None = None) -> list[str]:
    """Module names of the files under ``root`` (default: the current directory) that
    match the glob ``patterns``, as taskiq's ``--fs-discover``; a pattern without a ``/``
    matches at any depth. Hidden directories and ``site-packages`` are skipped."""
    base = Path.cwd() if root is None else root
    names: list[str] = []
    for pattern in patterns:
        for path in sorted(base.glob(pattern if "/" in pattern else f"**/{pattern}")):
            parts = path.relative_to(base).with_suffix("").parts
            skipped = any(p.startswith(".") or p in {"site-packages", "__pycache__"} for p in parts)
            if path.suffix != ".py" or skipped:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name and name not in names:
                names.append(name)
    return names


def _run(app: Conveyor, job: Callable[[Conveyor], Awaitable[T]]) -> T:
    async def main() -> T:
        async with app:
            return await job(app)

    try:
        return asyncio.run(main())
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(package_name="conveyor-tasks")
def main() -> None:
    """Conveyor: an async-first distributed task queue."""


# The commands need the helpers above, so their modules are imported last; importing
# one registers its commands on ``main``.
from conveyor.cli import (  # noqa: E402, F401
    abort,
    dashboard,
    demo,
    dlq,
    schedules,
    status,
    worker,
)
