"""``conveyor outbox relay APP --dsn URL``: publish the outbox's committed rows to APP's
broker (:mod:`conveyor.outbox`), until SIGTERM or SIGINT. Run one or several."""

from __future__ import annotations

import asyncio

import click

from conveyor.cli import configure_logging, import_app, log_level_option, main
from conveyor.errors import ConveyorError

__all__ = ["outbox"]


@main.group()
def outbox() -> None:
    """The outbox: tasks written in your PostgreSQL transactions, relayed to the broker."""


@outbox.command()
@click.argument("app")
@click.option(
    "--dsn",
    envvar="CONVEYOR_OUTBOX_DSN",
    required=True,
    help="postgresql:// URL of the database holding the outbox [env CONVEYOR_OUTBOX_DSN].",
)
@click.option(
    "--schema",
    default="conveyor_outbox",
    show_default=True,
    help="The schema of the outbox table (Outbox(schema=...)).",
)
@click.option("--batch-size", default=100, show_default=True, help="Rows per transaction.")
@click.option(
    "--poll-interval",
    default=1.0,
    show_default=True,
    help="Seconds between looks when no notification comes.",
)
@click.option(
    "--no-migrate", is_flag=True, help="Do not create or upgrade the outbox table at start."
)
@log_level_option
def relay(
    app: str,
    dsn: str,
    schema: str,
    batch_size: int,
    poll_interval: float,
    no_migrate: bool,
    log_level: str,
) -> None:
    """Relay APP's outbox to its broker until SIGTERM/SIGINT; the batch in flight
    finishes first. Several relays at once are safe (FOR UPDATE SKIP LOCKED)."""
    from conveyor.outbox import Outbox, OutboxRelay

    configure_logging(log_level)
    conveyor = import_app(app)
    try:
        relay = OutboxRelay(
            conveyor,
            dsn,
            Outbox(schema=schema),
            batch_size=batch_size,
            poll_interval=poll_interval,
            migrate=not no_migrate,
        )
        asyncio.run(relay.run())
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
