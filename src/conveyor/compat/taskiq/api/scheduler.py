"""``run_scheduler_task(scheduler)``: Conveyor's scheduler for a ``TaskiqScheduler`` in
this event loop. Run it as an asyncio task; cancel the task to stop it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from conveyor.compat.taskiq.schedules import TaskiqScheduler
from conveyor.scheduler.loop import Scheduler

__all__ = ["run_scheduler_task"]


async def run_scheduler_task(
    scheduler: TaskiqScheduler,
    run_startup: bool = False,
    interval: timedelta | None = None,
    loop_interval: timedelta | None = None,
) -> None:
    """Fire ``scheduler``'s schedules (code ones and those in the broker's store) until
    cancelled, then raise ``CancelledError``, as taskiq's does.

    The sources are started first, then ``scheduler.startup()`` with ``run_startup``;
    without it, a broker that is not connected is connected here and closed on the way
    out. ``interval`` is how often the store is re-read (default: the
    ``schedule_refresh`` setting, 2 s). ``loop_interval`` is accepted and ignored: the
    scheduler sleeps until the next tick is due.

    Any number of schedulers may run (in processes, or as tasks): each tick is enqueued
    once.
    """
    for source in scheduler.sources:
        await source.startup()
    if run_startup:
        await scheduler.startup()
    app = scheduler.conveyor
    owned = not app.is_connected
    if owned:
        await app.connect()
    refresh = None if interval is None else interval.total_seconds()
    loop = Scheduler(app, refresh=refresh)
    running = asyncio.ensure_future(loop.run())
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        loop.stop()
        await running
        raise
    finally:
        if owned:
            await app.close()
