"""``conveyor worker`` and ``conveyor scheduler``: the long-running processes, and the
options they share (task module discovery, log format, waiting for the broker).

Both end at once when the broker or result store cannot be reached at start, with one
line and exit code 69 (sysexits' EX_UNAVAILABLE), unless ``--wait-for-broker SECONDS``
asks to retry it; a configuration error ends them with 78 (EX_CONFIG). For ``conveyor
worker`` it is the worker processes that connect (the supervisor never does, so that it
can fork them safely) and tell the supervisor why they could not start, with those same
codes (:mod:`conveyor.worker.supervisor`); the command prints the first reason.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from conveyor.app import Conveyor
from conveyor.cli import (
    configure_logging,
    discover_modules,
    import_app,
    log_level_option,
    main,
    shown_url,
)
from conveyor.errors import BrokerUnavailable, ConveyorError
from conveyor.settings import MAX_CONCURRENCY
from conveyor.worker.supervisor import (
    BROKER_UNAVAILABLE_EXIT_CODE,
    STARTUP_FAILED_EXIT_CODE,
    connect_waiting,
    unreachable_reason,
)

__all__ = ["connect_waiting", "scheduler", "worker"]

log = logging.getLogger("conveyor.cli")


class StartupFailed(click.ClickException):
    """The command could not start: one ``Error:`` line, exit code 78 (EX_CONFIG)."""

    exit_code = STARTUP_FAILED_EXIT_CODE


class BrokerUnreachable(StartupFailed):
    """The broker or result store could not be reached: exit code 69 (EX_UNAVAILABLE)."""

    exit_code = BROKER_UNAVAILABLE_EXIT_CODE


def _startup_failed(exc: ConveyorError, wait: float) -> StartupFailed:
    if isinstance(exc, BrokerUnavailable):
        return BrokerUnreachable(unreachable_reason(exc, wait))
    return StartupFailed(str(exc))


def _where(app: Conveyor) -> str:
    """The broker (and result store) of ``app``, for the start-up line."""
    results = app.settings.result_url
    shown = shown_url(app.settings.broker_url)
    return shown if results is None else f"{shown} (results: {shown_url(results)})"


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


_wait_for_broker_option = click.option(
    "--wait-for-broker",
    "wait_for_broker",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    envvar="CONVEYOR_WAIT_FOR_BROKER",
    show_envvar=True,
    metavar="SECONDS",
    help="At start, retry an unreachable broker or result store for up to SECONDS "
    "(backoff 0.5 s doubling to 10 s, one log line per attempt); 0: exit at once "
    "with code 69.",
)

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
@_wait_for_broker_option
@log_level_option
@_log_format_option
def scheduler(
    app: str,
    modules: tuple[str, ...],
    skip_first_run: bool,
    fs_discover: bool,
    tasks_patterns: tuple[str, ...],
    wait_for_broker: float,
    log_level: str,
    log_format: str,
) -> None:
    """Run the scheduler for APP. Safe to run several: each tick is enqueued once."""
    from conveyor.scheduler import Scheduler

    configure_logging(log_level, log_format)
    conveyor = import_app(app, _task_modules(modules, fs_discover, tasks_patterns))

    async def serve() -> None:
        try:
            await connect_waiting(conveyor.connect, conveyor.settings.broker_url, wait_for_broker)
        except ConveyorError as exc:
            raise _startup_failed(exc, wait_for_broker) from None
        log.info("starting the scheduler on %s", _where(conveyor))
        await Scheduler(conveyor, skip_first_run=skip_first_run).serve()  # closes the app

    try:
        asyncio.run(serve())
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # Ctrl-C while waiting for the broker
        raise click.Abort() from None


@main.command()
@click.argument("app")
@click.argument("modules", nargs=-1)
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (at least 1).",
)
@click.option(
    "-c",
    "--concurrency",
    "--max-async-tasks",
    type=click.IntRange(min=1, max=MAX_CONCURRENCY),
    default=None,
    help=f"Tasks run at once per process, 1 to {MAX_CONCURRENCY} "
    "(default: CONVEYOR_CONCURRENCY or 10).",
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
    type=click.FloatRange(min=0, max=86400),
    default=None,
    help="Seconds in-flight tasks get on shutdown (0 to 86400).",
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
    "and the broker's, read at most once a second (needs the metrics extra).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of --metrics-port. It has no authentication: 0.0.0.0 opens it to "
    "every machine that can reach this one.",
)
@_wait_for_broker_option
@log_level_option
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
    wait_for_broker: float,
    log_level: str,
    log_format: str,
) -> None:
    """Run workers for APP (pkg.module:app), importing task MODULES too.

    A process that cannot start (a configuration error, an unreachable broker, a
    startup handler that raises) stops them all, with exit code 78 (69 for the broker);
    one that crashes after a good start is restarted."""
    from conveyor.worker.supervisor import SchedulerSpec, Supervisor, WorkerSpec

    if skip_first_run and not with_scheduler:
        raise click.UsageError("--skip-first-run needs --with-scheduler")
    if reload_dirs and not reload:
        raise click.UsageError("--reload-dir needs --reload")
    configure_logging(log_level, log_format)
    modules = tuple(_task_modules(modules, fs_discover, tasks_patterns))
    # fail fast, here, on a bad import path; and the children are forked from this import
    conveyor = import_app(app, modules)
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
        shown_host = f"[{metrics_host}]" if ":" in metrics_host else metrics_host
        logging.getLogger("conveyor.supervisor").info(
            "serving metrics on http://%s:%d/metrics", shown_host, metrics.port
        )
    effective_grace = grace if grace is not None else conveyor.settings.grace
    supervisor = Supervisor(
        spec,
        workers,
        app=conveyor,
        wait_for_broker=wait_for_broker,
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
    if supervisor.failure is not None:  # the children could not start: their one line
        failed = BrokerUnreachable if code == BROKER_UNAVAILABLE_EXIT_CODE else StartupFailed
        raise failed(supervisor.failure)
    sys.exit(code)
