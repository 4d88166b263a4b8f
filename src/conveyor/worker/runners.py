"""How a worker runs a plain ``def`` task: in a thread pool it owns, sized to its
concurrency so that every slot can run a sync task at once, with the caller's
``contextvars`` (the task context that log records carry) copied in."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["SyncRunner"]

T = TypeVar("T")


class SyncRunner:
    """The worker's pool for sync tasks (threads named ``conveyor-task_N``)."""

    def __init__(self, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="conveyor-task")

    async def __call__(
        self, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in the pool, keeping contextvars."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Stop taking work; a thread still running a timed-out task finishes on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
