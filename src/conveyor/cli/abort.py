"""``conveyor abort APP TASK_ID...``: abort tasks by id, printing each outcome;
``--workflow``: the ids are workflows'."""

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
@click.option(
    "--workflow",
    is_flag=True,
    help="The ids are workflows': abort each and every task of it (docs/workflows.md).",
)
def abort(app: str, task_ids: tuple[str, ...], workflow: bool) -> None:
    """Abort tasks of APP by id: queued ones never run, running ones are cancelled by
    their worker, and they end with status aborted (docs/aborting.md). With --workflow,
    abort workflows: their tasks, and everything that would have followed them. Exits
    with 1 if an id is unknown."""
    if workflow:
        _abort_workflows(app, task_ids)
        return

    async def abort_all(c: Conveyor) -> list[str]:
        return [(await c.abort(task_id)).value for task_id in task_ids]

    # a database that does not exist holds no task to abort: it is not created
    outcomes = _run(import_app(app), abort_all, read_only=True)
    for task_id, outcome in zip(task_ids, outcomes, strict=True):
        click.echo(f"{task_id}: {outcome} ({_ABORTED[outcome]})")
    if "unknown" in outcomes:
        sys.exit(1)


def _abort_workflows(app: str, workflow_ids: tuple[str, ...]) -> None:
    from conveyor.errors import TaskNotFound

    async def abort_all(c: Conveyor) -> list[str]:
        said = []
        for workflow_id in workflow_ids:
            handle = c.workflow(workflow_id)
            try:
                state = await handle.status(tasks=0)
            except TaskNotFound:
                said.append("unknown (no such workflow, or its record expired)")
                continue
            if state.status != "running":
                said.append(f"{state.status.value}: it had already ended, nothing changed")
                continue
            stopped = await handle.abort()
            said.append(f"aborted: {stopped} of its task(s) stopped, nothing more of it runs")
        return said

    outcomes = _run(import_app(app), abort_all, read_only=True)
    for workflow_id, outcome in zip(workflow_ids, outcomes, strict=True):
        click.echo(f"{workflow_id}: {outcome}")
    if any(outcome.startswith("unknown") for outcome in outcomes):
        sys.exit(1)
