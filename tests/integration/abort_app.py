"""The app the abort integration test runs in a real `conveyor worker` process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conveyor import Context, Conveyor, Depends

app = Conveyor()  # the broker comes from CONVEYOR_BROKER_URL


@app.task(retries=3)
async def long_task(marks: str, ctx: Context = Depends()) -> str:
    """Runs until aborted; leaves a file per milestone in ``marks``."""
    folder = Path(marks)
    (folder / f"started-{ctx.attempt}").touch()
    await ctx.progress(0.5, "half")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        (folder / "cancelled").touch()
        raise
    (folder / "finished").touch()
    return "finished"


@app.task
async def double(n: int) -> int:
    return n * 2
