"""``run_receiver_task(broker)``: a Conveyor worker for ``broker`` in this event loop, as
taskiq's receiver task. Run it as an asyncio task; cancel the task to stop the worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from conveyor.compat.taskiq._options import _note_ignored
from conveyor.compat.taskiq.brokers import AsyncBroker

__all__ = ["run_receiver_task"]

log = logging.getLogger("conveyor.compat.taskiq")


async def run_receiver_task(
    broker: AsyncBroker,
    receiver_cls: Any = None,
    sync_workers: int | None = None,
    validate_params: bool = True,
    max_async_tasks: int = 100,
    max_async_tasks_jitter: int = 0,
    max_prefetch: int = 0,
    propagate_exceptions: bool = True,
    run_startup: bool = False,
    ack_time: Any = None,
    use_process_pool: bool = False,
) -> None:
    """Run a worker for ``broker``'s tasks until cancelled: ``app.worker()`` started in
    this loop, stopped gracefully (running tasks get ``grace`` seconds) when the asyncio
    task is cancelled, which then raises ``CancelledError`` as taskiq's does.

    ``max_async_tasks`` is the worker's concurrency. The worker runs the
    ``WORKER_STARTUP``/``WORKER_SHUTDOWN`` handlers whatever ``run_startup`` says (taskiq
    runs them only with ``run_startup=True``). ``broker.is_worker_process`` is true while
    it runs. The other arguments are accepted and ignored: Conveyor's worker has one
    executor, acknowledges with the result, and never prefetches.
    """
    if max_prefetch < 0:
        raise ValueError("max_prefetch cannot be negative.")
    _note_ignored(
        "run_receiver_task",
        {
            name: value
            for name, value in (
                ("receiver_cls", receiver_cls),
                ("sync_workers", sync_workers),
                ("ack_time", ack_time),
                ("use_process_pool", use_process_pool or None),
            )
            if value is not None
        },
    )
    was_worker = broker.is_worker_process
    broker.is_worker_process = True
    worker = broker.conveyor.worker(concurrency=max_async_tasks + max(max_async_tasks_jitter, 0))
    try:
        await worker.start()
        try:
            await worker.wait_stopped()  # until cancelled (or stopped by max_tasks)
        except asyncio.CancelledError:
            log.warning("The listening task was cancelled.")
            raise
        finally:
            await worker.stop()
    finally:
        broker.is_worker_process = was_worker
