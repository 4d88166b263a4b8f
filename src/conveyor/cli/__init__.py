"""The ``conveyor`` command.

::

    conveyor worker  pkg.tasks:app [more.modules ...] --workers 2 --concurrency 100 \\
                     --queues default,reports --max-tasks-per-child 1000 --grace 30 --reload \\
                     --with-scheduler [--skip-first-run]
    conveyor scheduler pkg.tasks:app [--skip-first-run] [--wait-for-broker SECONDS]
    conveyor schedules [-m more.modules] pkg.tasks:app list|add|remove|pause|resume|run-now
    conveyor status  pkg.tasks:app
    conveyor dlq     pkg.tasks:app list|show|requeue|purge   (or: conveyor dlq list pkg.tasks:app)
    conveyor abort   pkg.tasks:app TASK_ID [TASK_ID ...]
    conveyor dashboard pkg.tasks:app [--host 127.0.0.1] [--port 8000] [--read-only]
    conveyor db upgrade pkg.tasks:app   (PostgreSQL: apply schema migrations)
    conveyor demo

This module holds the ``main`` group and what every command shares: loading the app
(:func:`import_app`), logging, the app-first command groups, how a broker URL is shown,
and running one job against a connected app (:func:`_run`). Each family
of commands is a module of this package (``worker``, ``schedules``, ``status``, ``dlq``,
``abort``, ``dashboard``, ``db``, ``demo``, ``outbox``) that registers on ``main`` when
imported. ``main`` imports only the one a command line names (:data:`COMMANDS`), so that
``conveyor worker`` does not pay for the others' imports before its first task.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conveyor.app import Conveyor
from conveyor.brokers import redact_url, shown_url, sqlite_path
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from rich.table import Column

__all__ = [
    "COMMANDS",
    "LOG_LEVELS",
    "AppGroup",
    "AppImportError",
    "configure_logging",
    "id_column",
    "import_app",
    "log_level_option",
    "main",
    "missing_database",
    "relative_path_hint",
    "shown_url",
    "user_traceback",
]

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

log_level_option = click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level (any case).",
)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Timestamped log lines on stderr, plain or JSON (one object per line); lines
    written inside a task carry its id, name and attempt (docs/observability.md)."""
    from conveyor.observability.logging import JsonFormatter, TextFormatter, install_task_context

    install_task_context()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])


class AppImportError(click.ClickException):
    """``APP`` or a task module could not be imported: one line, exit code 2 (a wrong
    argument, like click's usage errors)."""

    exit_code = 2


def import_app(path: str, modules: Sequence[str] = ()) -> Conveyor:
    """Import ``module:attribute`` (or a module holding one Conveyor app) and the extra
    task ``modules``, the way taskiq's worker does. The current directory is importable.

    The attribute may also be any object holding its app as ``.conveyor``, such as a
    ``conveyor.compat.taskiq`` broker or scheduler. Raises :class:`AppImportError`, whose
    message names the file and line when the error happened inside the user's module."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module_name, _, attribute = path.partition(":")
    module = _import(module_name, "")
    if attribute:
        app = getattr(module, attribute, None)
        if app is None:
            raise AppImportError(f"module {module_name!r} has no attribute {attribute!r}")
    else:
        found = [v for v in vars(module).values() if isinstance(v, Conveyor)]
        if len(found) != 1:
            raise AppImportError(
                f"{module_name!r} holds {len(found)} Conveyor apps; name one as {module_name}:app"
            )
        app = found[0]
    wrapped = getattr(app, "conveyor", None)
    if not isinstance(app, Conveyor) and isinstance(wrapped, Conveyor):
        app = wrapped
    if not isinstance(app, Conveyor):
        raise AppImportError(f"{path!r} is a {type(app).__name__}, not a Conveyor app")
    for extra in modules:
        _import(extra, "task module ")
    return app


def _import(module_name: str, what: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except (ImportError, SyntaxError, ConveyorError) as exc:
        if _is_missing(exc, module_name):
            raise AppImportError(f"cannot import {what}{module_name!r}: {exc}") from exc
        raise AppImportError(f"cannot import {what}{module_name!r}: {_located(exc)}") from exc
    except Exception as exc:  # a bug in the module: its own frames say where
        raise AppImportError(
            f"cannot import {what}{module_name!r}:\n{user_traceback(exc)}"
        ) from exc


def _is_missing(exc: BaseException, module_name: str) -> bool:
    """Whether ``exc`` says that ``module_name`` (or a package above it) does not exist,
    rather than that something inside it failed."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    return missing is not None and (module_name == missing or module_name.startswith(f"{missing}."))


def _located(exc: BaseException) -> str:
    """``exc``'s message with the file and line where it happened: the user's line for a
    SyntaxError, else the innermost frame outside Conveyor and the import machinery."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.msg} ({_shown_path(exc.filename)}, line {exc.lineno})"
    frames = _user_frames(exc) or [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")
    ]
    if not frames:
        return str(exc)
    last = frames[-1]
    return f"{exc} ({_shown_path(last.filename)}, line {last.lineno})"


_CONVEYOR_DIR = str(Path(__file__).resolve().parents[1]) + os.sep


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback in the user's code: not Conveyor's, not the
    standard library's (asyncio, importlib), not the interpreter's frozen modules."""
    import sysconfig  # 4 ms, for a failure only: not on every command's start-up

    paths = sysconfig.get_paths()
    stdlib_dir = str(Path(paths["stdlib"]).resolve()) + os.sep
    site_dirs = tuple(str(Path(paths[key]).resolve()) + os.sep for key in ("purelib", "platlib"))

    def users(filename: str) -> bool:
        if filename.startswith("<"):
            return False
        path = os.path.realpath(filename)
        if path.startswith(_CONVEYOR_DIR):
            return False
        return not path.startswith(stdlib_dir) or path.startswith(site_dirs)

    return [f for f in traceback.extract_tb(exc.__traceback__) if users(f.filename)]


def user_traceback(exc: BaseException) -> str:
    """A traceback of ``exc`` that shows only the user's frames (all of them when none is
    the user's), ending with the exception line: what a failing startup handler or
    module prints instead of Conveyor's and asyncio's 80 lines of plumbing."""
    frames = _user_frames(exc) or traceback.extract_tb(exc.__traceback__)
    return "".join(
        [
            "Traceback (most recent call last; only your code's frames):\n",
            *traceback.format_list(frames),
            *traceback.format_exception_only(type(exc), exc),
        ]
    ).rstrip("\n")


def _shown_path(filename: str) -> str:
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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


def missing_database(app: Conveyor) -> Path | None:
    """The path of ``app``'s SQLite database when the file does not exist yet (so that
    connecting would create it, empty); None when it exists or the broker is no file."""
    path = sqlite_path(app.settings.broker_url)
    return path if path is not None and not path.exists() else None


def relative_path_hint(app: Conveyor) -> str:
    """What to do about a relative ``sqlite://`` path, or "" for an absolute one."""
    url = app.settings.broker_url
    if url.partition("://")[2].startswith("//"):
        return ""
    return (
        f" The path in {redact_url(url)} is relative to the current directory: run this "
        "where the workers run, or give an absolute path (sqlite:////srv/app/conveyor.db)."
    )


def _empty_stand_in(app: Conveyor) -> Conveyor:
    """``app``'s tasks and settings on an empty ``memory://`` broker: what a reading
    command shows for a database file that does not exist, without creating it."""
    stand_in = Conveyor(settings=app.settings.replace(broker_url="memory://", result_url=None))
    stand_in.tasks = app.tasks
    return stand_in


def _run(app: Conveyor, job: Callable[[Conveyor], Awaitable[T]], *, read_only: bool = False) -> T:
    """Run ``job`` against ``app``, connected; a ConveyorError becomes one ``Error:`` line.

    A ``read_only`` job on a SQLite database that does not exist runs against an empty
    broker instead (the file is not created), with a warning naming the path: a relative
    path from another directory is the usual cause. Any other job that creates the file
    says so."""
    missing = missing_database(app)
    if missing is not None and read_only:
        click.echo(
            f"warning: {missing} does not exist; treating it as an empty database "
            f"(not creating it).{relative_path_hint(app)}",
            err=True,
        )
        app = _empty_stand_in(app)

    async def main() -> T:
        async with app:
            return await job(app)

    try:
        return asyncio.run(main())
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if missing is not None and not read_only and missing.exists():
            click.echo(
                f"note: created a new database at {missing}.{relative_path_hint(app)}",
                err=True,
            )


def id_column(header: str, ids: Iterable[str]) -> Column:
    """A rich table column for ids, which must stay whole and on one line so that they can
    be copied: as wide as the longest id; the other columns shrink instead."""
    from rich.table import Column

    width = max([len(header), *(len(i) for i in ids)])
    return Column(header, no_wrap=True, min_width=width, overflow="ignore")


class AppGroup(click.Group):
    """A command group whose argument is the app: ``conveyor dlq APP list``. The natural
    order, ``conveyor dlq list APP``, works too; an error says which orders work."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.commands and not ctx.resilient_parsing:
            args = self._app_first(ctx, args)
        return super().parse_args(ctx, args)

    def _app_first(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``[command, options..., APP, rest...]`` as ``[group options..., APP, command,
        its options..., rest...]``."""
        name, rest = args[0], args[1:]
        ours = _options(self, ctx)
        theirs = _options(self.commands[name], ctx)
        moved: list[str] = []
        kept: list[str] = []
        index = 0
        while index < len(rest):
            token = rest[index]
            key = token.partition("=")[0]
            option = ours.get(key) or theirs.get(key)
            if option is not None:
                if option.is_eager:  # --help: click shows the group's help, as before
                    return args
                taken = 1 if option.is_flag or "=" in token else 2
                (moved if key in ours else kept).extend(rest[index : index + taken])
                index += taken
            elif token.startswith("-"):  # unknown: click reports it after the move
                kept.append(token)
                index += 1
            else:
                return [*moved, token, name, *kept, *rest[index + 1 :]]
        raise click.UsageError(f"missing APP: give it as {self._orders(name)}", ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            order = self._orders(next(iter(self.commands)))
            raise click.UsageError(
                f"{exc.format_message()} Commands: {', '.join(self.commands)}, as in {order}",
                ctx,
            ) from None

    def _orders(self, command: str) -> str:
        return f"conveyor {self.name} APP {command} (or conveyor {self.name} {command} APP)"


def _options(command: click.Command, ctx: click.Context) -> dict[str, click.Option]:
    return {
        flag: param
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for flag in (*param.opts, *param.secondary_opts)
    }


COMMANDS = {
    "abort": "abort",
    "dashboard": "dashboard",
    "db": "db",
    "demo": "demo",
    "dlq": "dlq",
    "outbox": "outbox",
    "scheduler": "worker",
    "schedules": "schedules",
    "status": "status",
    "worker": "worker",
}
"""Each command of ``main``, and the module of this package that registers it."""


class _LazyGroup(click.Group):
    """``main``: a command's module is imported when the command is looked up (help
    lists them all, so it imports them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"conveyor.cli.{module}")
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="conveyor-tasks")
def main() -> None:
    """Conveyor: an async-first distributed task queue."""
