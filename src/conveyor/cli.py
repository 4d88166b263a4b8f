"""The ``conveyor`` command.

::

    conveyor worker  pkg.tasks:app [more.modules ...] --workers 2 --concurrency 100 \\
                     --queues default,reports --max-tasks-per-child 1000 --grace 30 --reload
    conveyor scheduler pkg.tasks:app [--skip-first-run]
    conveyor status  pkg.tasks:app
    conveyor dlq     pkg.tasks:app list|show|requeue|purge
    conveyor demo
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from conveyor.app import Conveyor
from conveyor.brokers import redact_url
from conveyor.errors import ConveyorError

__all__ = ["configure_logging", "import_app", "main"]

T = TypeVar("T")


def configure_logging(level: str) -> None:
    """Plain, timestamped log lines on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def import_app(path: str, modules: Sequence[str] = ()) -> Conveyor:
    """Import ``module:attribute`` (or a module holding one Conveyor app) and the extra
    task ``modules``, the way taskiq's worker does. The current directory is importable."""
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
    if not isinstance(app, Conveyor):
        raise click.UsageError(f"{path!r} is a {type(app).__name__}, not a Conveyor app")
    for extra in modules:
        try:
            importlib.import_module(extra)
        except ImportError as exc:
            raise click.UsageError(f"cannot import task module {extra!r}: {exc}") from exc
    return app


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


@main.command()
@click.argument("app")
@click.argument("modules", nargs=-1)
@click.option(
    "--skip-first-run",
    is_flag=True,
    help="Fire nothing due before this scheduler started, not even a tick within grace.",
)
@click.option("--log-level", default="INFO", show_default=True)
def scheduler(app: str, modules: tuple[str, ...], skip_first_run: bool, log_level: str) -> None:
    """Run the scheduler for APP. Safe to run several: each tick is enqueued once."""
    from conveyor.scheduler import Scheduler

    configure_logging(log_level)
    conveyor = import_app(app, modules)
    try:
        asyncio.run(Scheduler(conveyor, skip_first_run=skip_first_run).serve())
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("app")
@click.argument("modules", nargs=-1)
@click.option("-w", "--workers", default=1, show_default=True, help="Worker processes.")
@click.option(
    "-c",
    "--concurrency",
    "--max-async-tasks",
    type=int,
    default=None,
    help="Tasks run at once per process (default: CONVEYOR_CONCURRENCY or 10).",
)
@click.option("-q", "--queues", default=None, help="Comma-separated queues to serve.")
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    help="Recycle a process after M tasks.",
)
@click.option("--grace", type=float, default=None, help="Seconds in-flight tasks get on shutdown.")
@click.option("--reload", is_flag=True, help="Restart workers when Python files change.")
@click.option("--log-level", default="INFO", show_default=True)
def worker(
    app: str,
    modules: tuple[str, ...],
    workers: int,
    concurrency: int | None,
    queues: str | None,
    max_tasks_per_child: int | None,
    grace: float | None,
    reload: bool,
    log_level: str,
) -> None:
    """Run workers for APP (``pkg.module:app``), importing task MODULES too."""
    from conveyor.worker.supervisor import Supervisor, WorkerSpec

    configure_logging(log_level)
    conveyor = import_app(app, modules)  # fail fast, in the parent, on a bad import path
    spec = WorkerSpec(
        app=app,
        modules=list(modules),
        concurrency=concurrency,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        grace=grace,
        max_tasks=max_tasks_per_child,
        log_level=log_level,
    )
    effective_grace = grace if grace is not None else conveyor.settings.grace
    sys.exit(Supervisor(spec, workers, reload=reload, stop_timeout=effective_grace + 10).run())


@main.command()
@click.argument("app")
def status(app: str) -> None:
    """Show queues, depths and live workers."""
    from rich.console import Console
    from rich.table import Table

    conveyor = import_app(app)

    async def collect(c: Conveyor) -> tuple[Any, Any]:
        return await c.broker.queue_depths(), await c.broker.workers()

    depths, workers = _run(conveyor, collect)
    console = Console()
    console.print(f"broker: {redact_url(conveyor.settings.broker_url)}")
    queues = Table("queue", "ready", "delayed", "running", "dead", title="Queues")
    for depth in depths:
        queues.add_row(
            depth.queue, str(depth.ready), str(depth.delayed), str(depth.running), str(depth.dead)
        )
    console.print(queues)
    table = Table(
        "worker", "queues", "running", "concurrency", "processed", "last seen", title="Workers"
    )
    for w in workers:
        seen = datetime.fromtimestamp(w.last_seen, UTC).strftime("%H:%M:%S")
        table.add_row(
            w.worker_id,
            ",".join(w.queues),
            str(w.running),
            str(w.concurrency),
            str(w.processed),
            seen,
        )
    console.print(table)
    if not workers:
        console.print("no live workers")


@main.group()
@click.argument("app")
@click.pass_context
def dlq(ctx: click.Context, app: str) -> None:
    """Inspect and act on the dead-letter queue of APP."""
    ctx.obj = import_app(app)


@dlq.command("list")
@click.option("--queue", default=None)
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def dlq_list(app: Conveyor, queue: str | None, limit: int) -> None:
    """List dead letters, newest first."""
    entries = _run(app, lambda c: c.broker.dead_letters(queue, limit))
    if not entries:
        click.echo("the dead-letter queue is empty")
    for e in entries:
        when = datetime.fromtimestamp(e.failed_at, UTC).isoformat(timespec="seconds")
        click.echo(f"{e.id}  {e.queue}  attempts={e.attempts}  {when}  {e.reason}")


@dlq.command("show")
@click.argument("entry_id")
@click.pass_obj
def dlq_show(app: Conveyor, entry_id: str) -> None:
    """Show one dead letter with its decoded message (or raw bytes)."""
    from conveyor.message import MalformedMessage, decode_message

    entry = _run(app, lambda c: c.broker.dead_letter(entry_id))
    if entry is None:
        raise click.ClickException(f"no dead letter with id {entry_id!r}")
    click.echo(f"id:       {entry.id}\nqueue:    {entry.queue}\nattempts: {entry.attempts}")
    click.echo(f"reason:   {entry.reason}")
    try:
        message = decode_message(entry.body)
        click.echo(
            f"task:     {message.task}\nargs:     {message.args!r}\nkwargs:   {message.kwargs!r}"
        )
    except MalformedMessage:
        click.echo(f"raw:      {entry.body!r}")


@dlq.command("requeue")
@click.argument("entry_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter.")
@click.pass_obj
def dlq_requeue(app: Conveyor, entry_ids: tuple[str, ...], everything: bool) -> None:
    """Put dead letters back on their queue with attempts reset."""

    async def requeue(c: Conveyor) -> int:
        ids = list(entry_ids)
        if everything:
            ids = [e.id for e in await c.broker.dead_letters(limit=1_000_000)]
        return await c.broker.requeue_dead(ids)

    if not entry_ids and not everything:
        raise click.UsageError("name entry ids, or pass --all")
    click.echo(f"requeued {_run(app, requeue)} message(s)")


@dlq.command("purge")
@click.option("--queue", default=None)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def dlq_purge(app: Conveyor, queue: str | None, yes: bool) -> None:
    """Delete dead letters (of one queue, or all)."""
    if not yes:
        click.confirm("delete these dead letters for good?", abort=True)
    click.echo(f"deleted {_run(app, lambda c: c.broker.delete_dead(None, queue))} message(s)")


@main.command()
@click.option("--duration", type=float, default=None, help="Stop after S seconds (default Ctrl-C).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Producer rounds a second.",
)
def demo(duration: float | None, rate: float) -> None:
    """Run a worker, example tasks and a stream of work on the embedded default."""
    import os

    os.environ.setdefault("CONVEYOR_DEMO_URL", "sqlite:///conveyor-demo.db")
    from conveyor.demo import main as run

    run(duration, rate)


if __name__ == "__main__":
    main()
