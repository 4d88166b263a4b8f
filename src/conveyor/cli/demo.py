"""``conveyor demo``: a worker, example tasks and a stream of work on the embedded
SQLite broker (the work itself is :mod:`conveyor.demo`).
"""

from __future__ import annotations

import click

from conveyor.cli import main

__all__ = ["demo"]


@main.command()
@click.option("--duration", type=float, default=None, help="Stop after S seconds (default Ctrl-C).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Producer rounds a second.",
)
@click.option(
    "--dashboard-port",
    type=click.IntRange(min=0, max=65535),
    default=8000,
    show_default=True,
    help="Serve the web dashboard on 127.0.0.1 at this port (0: none).",
)
def demo(duration: float | None, rate: float, dashboard_port: int) -> None:
    """Run a worker, a scheduler, example tasks, a stream of work and the dashboard on the
    embedded default."""
    import os

    os.environ.setdefault("CONVEYOR_DEMO_URL", "sqlite:///conveyor-demo.db")
    from conveyor.demo import main as run

    run(duration, rate, dashboard_port)
