"""taskiq's ``ProgressTracker``: a task declares ``progress: ProgressTracker[T] =
TaskiqDepends()`` and reports ``await progress.set_progress(TaskState.STARTED, meta)``;
callers read ``await handle.get_progress()`` (or ``result_backend.get_progress(id)``).

>>> @broker.task                                                        # doctest: +SKIP
... async def resize(path: str, progress: ProgressTracker[int] = TaskiqDepends()) -> None:
...     await progress.set_progress(TaskState.STARTED, 50)

Reports are kept beside the task's result for ``result_ttl``. They are taskiq's
state-and-meta reports; Conveyor's own progress (``ctx.conveyor.progress(0.5, "half")``,
shown by ``status()`` and the dashboard) is separate.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from conveyor.compat.taskiq import Context, TaskiqDepends
from conveyor.compat.taskiq.results import TaskProgress, TaskState

__all__ = ["ProgressTracker", "TaskProgress", "TaskState"]

P = TypeVar("P")


class ProgressTracker(Generic[P]):
    """Reports the running task's progress to its broker's result backend."""

    def __init__(self, context: Context = TaskiqDepends()) -> None:
        self.context = context

    async def set_progress(self, state: TaskState | str, meta: P | None = None) -> None:
        """Report ``state`` and ``meta`` (None: keep the last report's meta)."""
        if meta is None:
            last = await self.get_progress()
            meta = last.meta if last is not None else None
        backend = self.context.broker.result_backend
        await backend.set_progress(self.context.message.task_id, TaskProgress(state, meta))

    async def get_progress(self) -> TaskProgress[Any] | None:
        """The last report of the running task, or None."""
        backend = self.context.broker.result_backend
        return await backend.get_progress(self.context.message.task_id)
