"""``conveyor dlq APP list|show|requeue|purge``: the dead-letter queue."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from conveyor.app import Conveyor
from conveyor.cli import _run, import_app, main

__all__ = ["dlq"]


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
