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
    conveyor demo
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conveyor.app import Conveyor
from conveyor.brokers import redact_url
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from rich.table import Table

    from conveyor.scheduler import Schedule, ScheduleInfo
    from conveyor.scheduler.schedule import MissedPolicy

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


def _task_modules(
    modules: Sequence[str], fs_discover: bool, tasks_patterns: Sequence[str]
) -> list[str]:
    if tasks_patterns and not fs_discover:
        raise click.UsageError("--tasks-pattern needs --fs-discover")
    found = discover_modules(tasks_patterns or ["tasks.py"]) if fs_discover else []
    return [*modules, *(name for name in found if name not in modules)]


_discovery_options = (
    click.option(
        "-fsd",
        "--fs-discover",
        is_flag=True,
        help="Also import every tasks.py under the current directory (see --tasks-pattern).",
    ),
    click.option(
        "-tp",
        "--tasks-pattern",
        "tasks_patterns",
        multiple=True,
        help="With --fs-discover: glob of the files to import (default tasks.py; repeatable).",
    ),
)


def _with_discovery(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_discovery_options):
        command = option(command)
    return command


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


_log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, with task_id, task and attempt inside tasks.",
)


@main.command()
@click.argument("app")
@click.argument("modules", nargs=-1)
@click.option(
    "--skip-first-run",
    is_flag=True,
    help="Fire nothing due before this scheduler started, not even a tick within grace.",
)
@_with_discovery
@click.option("--log-level", default="INFO", show_default=True)
@_log_format_option
def scheduler(
    app: str,
    modules: tuple[str, ...],
    skip_first_run: bool,
    fs_discover: bool,
    tasks_patterns: tuple[str, ...],
    log_level: str,
    log_format: str,
) -> None:
    """Run the scheduler for APP. Safe to run several: each tick is enqueued once."""
    from conveyor.scheduler import Scheduler

    configure_logging(log_level, log_format)
    conveyor = import_app(app, _task_modules(modules, fs_discover, tasks_patterns))
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
@click.option(
    "--grace",
    "--wait-tasks-timeout",
    "--shutdown-timeout",
    "grace",
    type=float,
    default=None,
    help="Seconds in-flight tasks get on shutdown.",
)
@click.option("-r", "--reload", is_flag=True, help="Restart workers when Python files change.")
@click.option(
    "--reload-dir",
    "reload_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="With --reload: a directory to watch (repeatable; default the current one).",
)
@_with_discovery
@click.option(
    "--with-scheduler",
    is_flag=True,
    help="Also run one scheduler process (safe next to other schedulers).",
)
@click.option(
    "--skip-first-run",
    is_flag=True,
    help="With --with-scheduler: fire nothing due before the scheduler started.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus /metrics on this port: every process's task metrics, summed, "
    "and the broker's (needs the metrics extra).",
)
@click.option(
    "--metrics-host", default="0.0.0.0", show_default=True, help="Address of --metrics-port."
)
@click.option("--log-level", default="INFO", show_default=True)
@_log_format_option
def worker(
    app: str,
    modules: tuple[str, ...],
    workers: int,
    concurrency: int | None,
    queues: str | None,
    max_tasks_per_child: int | None,
    grace: float | None,
    reload: bool,
    reload_dirs: tuple[Path, ...],
    fs_discover: bool,
    tasks_patterns: tuple[str, ...],
    with_scheduler: bool,
    skip_first_run: bool,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: str,
) -> None:
    """Run workers for APP (``pkg.module:app``), importing task MODULES too."""
    from conveyor.worker.supervisor import SchedulerSpec, Supervisor, WorkerSpec

    if skip_first_run and not with_scheduler:
        raise click.UsageError("--skip-first-run needs --with-scheduler")
    if reload_dirs and not reload:
        raise click.UsageError("--reload-dir needs --reload")
    configure_logging(log_level, log_format)
    modules = tuple(_task_modules(modules, fs_discover, tasks_patterns))
    conveyor = import_app(app, modules)  # fail fast, in the parent, on a bad import path
    spec = WorkerSpec(
        app=app,
        modules=list(modules),
        concurrency=concurrency,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        grace=grace,
        max_tasks=max_tasks_per_child,
        log_level=log_level,
        log_format=log_format,
        metrics=metrics_port is not None,
    )
    scheduler_spec = None
    if with_scheduler:
        scheduler_spec = SchedulerSpec(
            app=app,
            modules=list(modules),
            skip_first_run=skip_first_run,
            log_level=log_level,
            log_format=log_format,
            metrics=metrics_port is not None,
        )
    metrics = None
    if metrics_port is not None:
        try:
            from conveyor.observability.metrics import MultiprocessMetrics
        except ImportError as exc:
            raise click.UsageError(
                f"--metrics-port needs prometheus-client ({exc}); "
                "pip install 'conveyor-tasks[metrics]'"
            ) from exc
        try:
            metrics = MultiprocessMetrics(conveyor, metrics_port, metrics_host)
        except OSError as exc:
            raise click.UsageError(
                f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}"
            ) from exc
        logging.getLogger("conveyor.supervisor").info(
            "serving metrics on http://%s:%d/metrics", metrics_host, metrics.port
        )
    effective_grace = grace if grace is not None else conveyor.settings.grace
    supervisor = Supervisor(
        spec,
        workers,
        reload=reload,
        reload_dirs=list(reload_dirs) or None,
        stop_timeout=effective_grace + 10,
        scheduler=scheduler_spec,
        child_env=metrics.child_env if metrics is not None else None,
        on_child_exit=metrics.process_exited if metrics is not None else None,
    )
    try:
        code = supervisor.run()
    finally:
        if metrics is not None:
            metrics.close()
    sys.exit(code)


@main.command()
@click.argument("app")
def status(app: str) -> None:
    """Show queues, depths, live workers and schedulers, and the schedules."""
    from rich.console import Console
    from rich.table import Table

    conveyor = import_app(app)

    async def collect(c: Conveyor) -> tuple[Any, Any, list[ScheduleInfo]]:
        return await c.broker.queue_depths(), await c.broker.workers(), await c.schedules.list()

    depths, heartbeats, schedule_infos = _run(conveyor, collect)
    workers = [w for w in heartbeats if w.role != "scheduler"]
    schedulers = [w for w in heartbeats if w.role == "scheduler"]
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
        table.add_row(
            w.worker_id,
            ",".join(w.queues),
            str(w.running),
            str(w.concurrency),
            str(w.processed),
            _clock_time(w.last_seen),
        )
    console.print(table)
    if not workers:
        console.print("no live workers")
    if schedulers:
        running = Table("scheduler", "enqueued", "started", "last seen", title="Schedulers")
        for w in schedulers:
            running.add_row(
                w.worker_id, str(w.processed), _clock_time(w.started_at), _clock_time(w.last_seen)
            )
        console.print(running)
    if schedule_infos:
        console.print(_schedules_table([(i.schedule, _runs(i)) for i in schedule_infos]))
        if not schedulers and any(not i.schedule.paused for i in schedule_infos):
            console.print(
                "no live scheduler: schedules fire only while `conveyor scheduler` or "
                "`conveyor worker --with-scheduler` runs"
            )


def _clock_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S")


def _runs(info: ScheduleInfo) -> list[datetime]:
    return [] if info.next_run is None else [info.next_run]


def _schedules_table(rows: Sequence[tuple[Schedule, list[datetime]]]) -> Table:
    from rich.table import Table

    from conveyor.scheduler import CatchUp

    table = Table("id", "task", "trigger", "missed", "paused", "origin", "next run (UTC)")
    table.title = "Schedules"
    for schedule, runs in rows:
        missed = (
            f"catch_up({timedelta(seconds=schedule.missed.within)})"
            if isinstance(schedule.missed, CatchUp)
            else "skip"
        )
        if schedule.paused:
            upcoming = "-"
        elif not runs:
            upcoming = "never again"
        else:
            upcoming = "\n".join(_fire_time(schedule, run) for run in runs)
        table.add_row(
            schedule.id,
            schedule.task,
            schedule.describe(),
            missed,
            "yes" if schedule.paused else "no",
            schedule.origin,
            upcoming,
        )
    return table


def _fire_time(schedule: Schedule, run: datetime) -> str:
    """``2026-03-09 11:00:00``, plus the wall time in the schedule's zone for a zoned cron."""
    from zoneinfo import ZoneInfo

    from conveyor.scheduler.triggers import Cron

    shown = run.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(schedule.trigger, Cron) and schedule.trigger.tz != "UTC":
        local = run.astimezone(ZoneInfo(schedule.trigger.tz))
        shown += f" ({local:%H:%M:%S %Z})"
    return shown


@main.group()
@click.argument("app")
@click.option(
    "-m",
    "--module",
    "modules",
    multiple=True,
    help="Another module to import, so its tasks register (repeatable; before APP).",
)
@click.pass_context
def schedules(ctx: click.Context, app: str, modules: tuple[str, ...]) -> None:
    """List and change the schedules of APP: those in code and the dynamic ones kept in
    the broker. Running schedulers pick changes up within schedule_refresh seconds."""
    ctx.obj = _AppPath(app, modules)  # imported by the subcommand, so --help needs no app


@dataclass(frozen=True)
class _AppPath:
    path: str
    modules: tuple[str, ...]

    def load(self) -> Conveyor:
        return import_app(self.path, self.modules)


@schedules.command("list")
@click.option(
    "--next",
    "count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many upcoming fire times to show per schedule.",
)
@click.pass_obj
def schedules_list(where: _AppPath, count: int) -> None:
    """Show every schedule with its next fire time(s)."""
    from rich.console import Console

    app = where.load()
    loaded = _run(app, lambda c: c.schedules.load())
    if not loaded:
        click.echo("no schedules")
        return
    now = app.settings.clock.now()
    rows = [(s, [] if s.paused else s.next_runs(now, count)) for s in loaded]
    Console().print(_schedules_table(rows))


@schedules.command("add")
@click.argument("schedule_id")
@click.argument("task")
@click.option("--cron", "cron_expr", default=None, help="Cron expression (5 fields, or 6).")
@click.option("--tz", default=None, help="IANA time zone of --cron (default UTC).")
@click.option(
    "--every", "interval", type=float, default=None, help="Interval in seconds (epoch-aligned)."
)
@click.option("--at", "when", default=None, help="One run at an ISO 8601 time (UTC if naive).")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option(
    "--catch-up",
    type=float,
    default=None,
    help="Run missed ticks up to SECONDS late (default: skip them).",
)
@click.option("--paused", is_flag=True, help="Store it paused; `resume` starts it.")
@click.pass_obj
def schedules_add(
    where: _AppPath,
    schedule_id: str,
    task: str,
    cron_expr: str | None,
    tz: str | None,
    interval: float | None,
    when: str | None,
    args_json: str,
    kwargs_json: str,
    catch_up: float | None,
    paused: bool,
) -> None:
    """Create or replace the dynamic schedule SCHEDULE_ID running TASK (its registered
    name, or the function name if that is unambiguous)."""
    from conveyor.scheduler import catch_up as catch_up_policy

    if sum(option is not None for option in (cron_expr, interval, when)) != 1:
        raise click.UsageError("give exactly one of --cron, --every or --at")
    if tz is not None and cron_expr is None:
        raise click.UsageError("--tz applies to --cron only")
    at_time = None
    if when is not None:
        try:
            at_time = datetime.fromisoformat(when)
        except ValueError:
            raise click.BadParameter(
                f"{when!r} is not an ISO 8601 time such as 2026-07-01T09:30:00+02:00",
                param_hint="--at",
            ) from None
    args = _json_option(args_json, list, "--args", "a JSON list, such as '[1, \"a\"]'")
    kwargs = _json_option(kwargs_json, dict, "--kwargs", "a JSON object, such as '{\"n\": 1}'")
    app = where.load()

    async def add(c: Conveyor) -> Schedule:
        missed: MissedPolicy = "skip" if catch_up is None else catch_up_policy(catch_up)
        try:
            return await c.schedules.add(
                schedule_id,
                _task_name(c, task),
                cron=cron_expr,
                every=interval,
                at=at_time,
                tz=tz or "UTC",
                args=args,
                kwargs=kwargs,
                missed=missed,
                paused=paused,
            )
        except TypeError as exc:  # arguments that do not fit the task
            raise click.ClickException(str(exc)) from exc

    added = _run(app, add)
    runs = added.next_runs(app.settings.clock.now(), 1)
    upcoming = _fire_time(added, runs[0]) if runs else "never (the time has passed)"
    state = "paused; next run would be (UTC)" if added.paused else "next run (UTC)"
    click.echo(f"added {added.id!r}: {added.task} {added.describe()}; {state} {upcoming}")


@schedules.command("remove")
@click.argument("schedule_id")
@click.pass_obj
def schedules_remove(where: _AppPath, schedule_id: str) -> None:
    """Delete a dynamic schedule (code schedules can only be paused)."""
    app = where.load()
    if not _run(app, lambda c: c.schedules.remove(schedule_id)):
        raise click.ClickException(f"no dynamic schedule with id {schedule_id!r}")
    click.echo(f"removed {schedule_id!r}")


@schedules.command("pause")
@click.argument("schedule_id")
@click.pass_obj
def schedules_pause(where: _AppPath, schedule_id: str) -> None:
    """Stop firing a schedule until `resume`; ticks while paused are skipped."""
    app = where.load()
    _run(app, lambda c: c.schedules.pause(schedule_id))
    click.echo(f"paused {schedule_id!r}")


@schedules.command("resume")
@click.argument("schedule_id")
@click.pass_obj
def schedules_resume(where: _AppPath, schedule_id: str) -> None:
    """Fire a paused schedule again, from its next tick."""
    app = where.load()
    _run(app, lambda c: c.schedules.resume(schedule_id))
    click.echo(f"resumed {schedule_id!r}")


@schedules.command("run-now")
@click.argument("schedule_id")
@click.pass_obj
def schedules_run_now(where: _AppPath, schedule_id: str) -> None:
    """Enqueue a schedule's task with its arguments now, outside its ticks."""
    app = where.load()
    handle = _run(app, lambda c: c.schedules.run_now(schedule_id))
    click.echo(f"enqueued {handle.task_id} for {schedule_id!r}")


def _json_option(raw: str, kind: type, option: str, expected: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        message = f"not valid JSON ({exc}); give {expected}"
        raise click.BadParameter(message, param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"{raw!r} is not {expected}", param_hint=option)
    return value


def _task_name(app: Conveyor, name: str) -> str:
    """``name`` as registered: a full name, or a function name that only one task has."""
    if name in app.tasks:
        return name
    matches = [full for full in app.tasks if full.rpartition(":")[2] == name]
    if len(matches) > 1:
        raise click.ClickException(f"task name {name!r} is ambiguous: {', '.join(matches)}")
    return matches[0] if matches else name  # unknown: the library's error names it


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


_ABORTED = {
    "dequeued": "it was waiting: removed, it never runs",
    "signalled": "running: its worker cancels it",
    "finished": "it had already ended: nothing changed",
    "unknown": "no such task, or its result expired",
}


@main.command()
@click.argument("app")
@click.argument("task_ids", nargs=-1, required=True)
def abort(app: str, task_ids: tuple[str, ...]) -> None:
    """Abort tasks of APP by id: queued ones never run, running ones are cancelled by
    their worker, and they end with status aborted (docs/aborting.md). Exits with 1 if
    an id is unknown."""

    async def abort_all(c: Conveyor) -> list[str]:
        return [(await c.abort(task_id)).value for task_id in task_ids]

    outcomes = _run(import_app(app), abort_all)
    for task_id, outcome in zip(task_ids, outcomes, strict=True):
        click.echo(f"{task_id}: {outcome} ({_ABORTED[outcome]})")
    if "unknown" in outcomes:
        sys.exit(1)


@main.command()
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--token",
    envvar="CONVEYOR_DASHBOARD_TOKEN",
    default=None,
    help="Access token (Bearer header or login); prefer the variable CONVEYOR_DASHBOARD_TOKEN.",
)
@click.option(
    "--basic-auth",
    envvar="CONVEYOR_DASHBOARD_BASIC_AUTH",
    default=None,
    metavar="USER:PASSWORD",
    help="HTTP basic auth (or CONVEYOR_DASHBOARD_BASIC_AUTH).",
)
@click.option("--read-only", is_flag=True, help="Hide the actions and refuse them (403).")
@click.option("--root-path", default="", help="URL prefix when served behind a proxy.")
@click.option("--log-level", default="INFO", show_default=True)
def dashboard(
    app: str,
    host: str,
    port: int,
    token: str | None,
    basic_auth: str | None,
    read_only: bool,
    root_path: str,
    log_level: str,
) -> None:
    """Serve the web dashboard of APP, and /metrics (docs/dashboard.md). On any address
    but a loopback one it refuses to start without --token or --basic-auth."""
    try:
        import uvicorn

        from conveyor.dashboard import create_dashboard
        from conveyor.dashboard.auth import is_loopback
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'conveyor-tasks[dashboard]' ({exc})"
        ) from None
    loopback = is_loopback(host)
    try:
        web = create_dashboard(
            import_app(app),
            token=token,
            basic_auth=basic_auth,
            read_only=read_only,
            require_auth=not loopback,
            # an open dashboard on 127.0.0.1 answers only to local names (DNS rebinding)
            allowed_hosts=(
                ["localhost", "127.0.0.1", "::1", host.strip("[]")]
                if loopback and not (token or basic_auth)
                else None
            ),
        )
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(log_level)
    shown = f"[{host}]" if ":" in host else host
    auth = "token" if token else "basic auth" if basic_auth else "none (loopback only)"
    click.echo(f"dashboard on http://{shown}:{port}{root_path}/ (auth: {auth})", err=True)
    uvicorn.run(web, host=host, port=port, root_path=root_path, log_level=log_level.lower())


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
