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
def demo(duration: float | None, rate: float) -> None:
    """Run a worker, example tasks and a stream of work on the embedded default."""
    import os

    os.environ.setdefault("CONVEYOR_DEMO_URL", "sqlite:///conveyor-demo.db")
    from conveyor.demo import main as run

    run(duration, rate)
