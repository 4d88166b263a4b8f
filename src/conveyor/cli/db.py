"""``conveyor db upgrade APP``: apply the schema migrations the app's broker lacks.

PostgreSQL keeps a versioned schema (named SQL files, ``brokers/postgres/migrations``);
a worker applies them at start unless its URL says ``?migrate=false``, and then this
command does, once per deploy. Brokers without migrations have nothing to upgrade.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

import click

from conveyor.brokers import broker_class_for
from conveyor.cli import import_app, main, shown_url
from conveyor.errors import ConveyorError

__all__ = ["db"]


class _Applied(Protocol):
    version: int
    name: str


@runtime_checkable
class _Upgradable(Protocol):
    async def upgrade_schema(self) -> list[_Applied]: ...


@main.group()
def db() -> None:
    """The broker's database schema (PostgreSQL)."""


@db.command()
@click.argument("app")
def upgrade(app: str) -> None:
    """Apply the schema migrations APP's broker lacks, in order, each once (several
    processes running it at once are safe: an advisory lock serialises them)."""
    conveyor = import_app(app)
    url = conveyor.settings.broker_url
    from conveyor.app import broker_options

    broker = broker_class_for(url)(url, broker_options(conveyor.settings))
    if not isinstance(broker, _Upgradable):
        click.echo(f"{shown_url(url)}: this broker has no schema migrations; nothing to do")
        return
    try:
        applied = asyncio.run(broker.upgrade_schema())
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from None
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    click.echo(f"{shown_url(url)}: schema up to date ({len(applied)} migrations applied)")
