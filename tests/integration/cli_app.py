"""The app the CLI tests run in real `conveyor worker` processes (broker from the env)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from conveyor import Context, Conveyor, Depends

app = Conveyor()


@app.task
async def whoami(n: int) -> int:
    # sleep: a task that takes a while, so that every worker process gets some of them
    await asyncio.sleep(0.01)
    return os.getpid()


@app.task(retries=2)
async def crash_once(marker: str, ctx: Context = Depends()) -> int:
    """Kills its worker process the first time it runs (no cleanup, like SIGKILL)."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(ctx.attempt))
        os._exit(1)
    return ctx.attempt


@app.task
async def always_fails() -> None:
    raise RuntimeError("broken on purpose")
