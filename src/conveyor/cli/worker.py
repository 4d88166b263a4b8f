"""``conveyor worker`` and ``conveyor scheduler``: the long-running processes, and the
options they share (task module discovery, log format).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from conveyor.cli import configure_logging, discover_modules, import_app, main
from conveyor.errors import ConveyorError

__all__ = ["scheduler", "worker"]


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
