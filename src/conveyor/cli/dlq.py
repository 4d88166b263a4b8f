"""``conveyor dlq APP list|show|requeue|purge``: the dead-letter queue (``conveyor dlq
list APP`` works too)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from conveyor.app import Conveyor
from conveyor.cli import AppGroup, _run, import_app, main

__all__ = ["dlq"]


@main.group(cls=AppGroup)
@click.argument("app")
@click.pass_context
def dlq(ctx: click.Context, app: str) -> None:
    """Inspect and act on the dead-letter queue of APP: conveyor dlq APP list, or
    conveyor dlq list APP."""
    ctx.obj = import_app(app)


@dlq.command("list")
@click.option("--queue", default=None, help="Only this queue's dead letters.")
@click.option("--limit", default=50, show_default=True, help="Show at most this many.")
@click.pass_obj
def dlq_list(app: Conveyor, queue: str | None, limit: int) -> None:
    """List dead letters, newest first: id, queue, attempts, when, reason."""
    entries = _run(app, lambda c: c.broker.dead_letters(queue, limit), read_only=True)
    if not entries:
        click.echo("the dead-letter queue is empty")
    for e in entries:
        when = datetime.fromtimestamp(e.failed_at, UTC).isoformat(timespec="seconds")
        click.echo(f"{e.id}  {e.queue}  attempts={e.attempts}  {when}  {e.reason}")


@dlq.command("show")
@click.argument("entry_id")
@click.pass_obj
def dlq_show(app: Conveyor, entry_id: str) -> None:
    """Show one dead letter with its decoded message (or raw bytes). Exits with 1 if there
    is no such dead letter."""
    from conveyor.message import MalformedMessage, decode_message

    entry = _run(app, lambda c: c.broker.get_dead_letter(entry_id), read_only=True)
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
    """Put dead letters back on their queue with attempts reset. Exits with 1 if an id is
    not in the dead-letter queue (never was, or was already requeued or purged)."""

    async def requeue(c: Conveyor) -> tuple[int, list[str]]:
        if everything:
            ids = [e.id for e in await c.broker.dead_letters(limit=1_000_000)]
            return await c.broker.requeue_dead(ids), []
        # one id at a time: each answer says whether that id was there
        unknown = [i for i in entry_ids if not await c.broker.requeue_dead([i])]
        return len(entry_ids) - len(unknown), unknown

    if not entry_ids and not everything:
        raise click.UsageError("name entry ids, or pass --all")
    # nothing to requeue in a database that does not exist: do not create it
    requeued, unknown = _run(app, requeue, read_only=True)
    click.echo(f"requeued {requeued} message(s)")
    for entry_id in unknown:
        click.echo(f"Error: no dead letter with id {entry_id!r}", err=True)
    if unknown:
        sys.exit(1)


@dlq.command("purge")
@click.option("--queue", default=None, help="Only this queue's dead letters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def dlq_purge(app: Conveyor, queue: str | None, yes: bool) -> None:
    """Delete dead letters (of one queue, or all), after saying how many and asking."""

    async def count(c: Conveyor) -> int:
        return sum(d.dead for d in await c.broker.queue_depths() if queue in (None, d.queue))

    found = _run(app, count, read_only=True)
    if not found:
        click.echo(
            "the dead-letter queue is empty"
            if queue is None
            else f"no dead letters in queue {queue!r}"
        )
        return
    where = "" if queue is None else f" of queue {queue!r}"
    if not yes:
        click.confirm(f"delete {found} dead letter(s){where} for good?", abort=True)
    click.echo(f"deleted {_run(app, lambda c: c.broker.delete_dead(None, queue))} message(s)")
