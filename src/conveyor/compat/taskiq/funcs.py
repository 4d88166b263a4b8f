"""``taskiq.funcs``: ``gather()``, the results of several tasks at once.

>>> first, second = await gather(await add.kiq(1, 2), await add.kiq(3, 4), timeout=10)
"""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.compat.taskiq.errors import TaskiqResultTimeoutError
from conveyor.compat.taskiq.results import AsyncTaskiqTask, TaskiqResult

__all__ = ["gather"]


async def gather(
    *tasks: AsyncTaskiqTask[Any],
    timeout: float = -1,
    with_logs: bool = False,
    periodicity: float = 0.1,
) -> tuple[TaskiqResult[Any], ...]:
    """Wait for every task's result; returns them in the order the tasks were given.

    ``timeout`` seconds in all (``-1``/``0``: no limit), then
    ``TaskiqResultTimeoutError``. ``periodicity`` is accepted and ignored: results are
    pushed to waiters, not polled.
    """
    waits = asyncio.gather(*(task.wait_result(with_logs=with_logs) for task in tasks))
    try:
        results = await asyncio.wait_for(waits, timeout if timeout > 0 else None)
    except TimeoutError:
        raise TaskiqResultTimeoutError(timeout=timeout) from None
    return tuple(results)
