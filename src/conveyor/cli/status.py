"""``conveyor status``: queues and their depths, workflows by state, live workers and
schedulers, and the schedules, in one screen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from conveyor.app import Conveyor
from conveyor.brokers.base import WORKFLOW_STATES, Capability
from conveyor.cli import _run, id_column, import_app, main, shown_url
from conveyor.cli.schedules import schedules_table

if TYPE_CHECKING:
    from conveyor.scheduler import ScheduleInfo

__all__ = ["status", "workflow_line"]


@main.command()
@click.argument("app")
def status(app: str) -> None:
    """Show queues, depths, workflows by state, live workers and schedulers, and the
    schedules. A SQLite database is shown by its absolute path; one that does not exist is
    reported empty, with a warning, and not created."""
    from rich.console import Console
    from rich.table import Table

    conveyor = import_app(app)

    async def collect(c: Conveyor) -> tuple[Any, Any, list[ScheduleInfo], dict[str, int] | None]:
        broker = c.broker
        flows = None
        if Capability.WORKFLOWS in broker.capabilities:
            flows = await broker.workflow_counts()
        return await broker.queue_depths(), await broker.workers(), await c.schedules.list(), flows

    depths, heartbeats, schedule_infos, flows = _run(conveyor, collect, read_only=True)
    workers = [w for w in heartbeats if w.role != "scheduler"]
    schedulers = [w for w in heartbeats if w.role == "scheduler"]
    console = Console()
    # plain echo: rich would wrap a long path at the terminal width
    click.echo(f"broker: {shown_url(conveyor.settings.broker_url)}")
    if conveyor.settings.result_url is not None:
        click.echo(f"results: {shown_url(conveyor.settings.result_url)}")
    queues = Table(
        id_column("queue", [d.queue for d in depths]),
        "ready",
        "delayed",
        "running",
        "dead",
        title="Queues",
    )
    for depth in depths:
        queues.add_row(
            depth.queue, str(depth.ready), str(depth.delayed), str(depth.running), str(depth.dead)
        )
    console.print(queues)
    if flows is not None:
        click.echo(workflow_line(flows))
    table = Table(
        id_column("worker", [w.worker_id for w in workers]),
        "queues",
        "running",
        "concurrency",
        "processed",
        "last seen",
        title="Workers",
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
        running = Table(
            id_column("scheduler", [w.worker_id for w in schedulers]),
            "enqueued",
            "started",
            "last seen",
            title="Schedulers",
        )
        for w in schedulers:
            running.add_row(
                w.worker_id, str(w.processed), _clock_time(w.started_at), _clock_time(w.last_seen)
            )
        console.print(running)
    if schedule_infos:
        console.print(schedules_table([(i.schedule, _runs(i)) for i in schedule_infos]))
        if not schedulers and any(not i.schedule.paused for i in schedule_infos):
            console.print(
                "no live scheduler: schedules fire only while `conveyor scheduler` or "
                "`conveyor worker --with-scheduler` runs"
            )


def workflow_line(counts: dict[str, int]) -> str:
    """``workflows: 2 running, 10 succeeded, 1 failed, 0 aborted``: what the broker keeps
    (finished ones for ``workflow_ttl``)."""
    return "workflows: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in WORKFLOW_STATES)


def _clock_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S")


def _runs(info: ScheduleInfo) -> list[datetime]:
    return [] if info.next_run is None else [info.next_run]
