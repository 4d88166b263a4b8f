"""``conveyor abort APP TASK_ID...``: abort tasks by id, printing each outcome."""

from __future__ import annotations

import sys

import click

from conveyor.app import Conveyor
from conveyor.cli import _run, import_app, main

__all__ = ["abort"]


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

    # a database that does not exist holds no task to abort: it is not created
    outcomes = _run(import_app(app), abort_all, read_only=True)
    for task_id, outcome in zip(task_ids, outcomes, strict=True):
        click.echo(f"{task_id}: {outcome} ({_ABORTED[outcome]})")
    if "unknown" in outcomes:
        sys.exit(1)
