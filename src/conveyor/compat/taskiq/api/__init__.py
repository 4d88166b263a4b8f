"""``taskiq.api``: run a worker or a scheduler inside your own event loop.

>>> worker = asyncio.create_task(run_receiver_task(broker))           # doctest: +SKIP
>>> scheduler_task = asyncio.create_task(run_scheduler_task(scheduler))  # doctest: +SKIP
>>> worker.cancel()                        # stops gracefully, then raises CancelledError
"""

from conveyor.compat.taskiq.api.receiver import run_receiver_task as run_receiver_task
from conveyor.compat.taskiq.api.scheduler import run_scheduler_task as run_scheduler_task

__all__ = ["run_receiver_task", "run_scheduler_task"]
