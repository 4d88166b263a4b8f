"""Results, taskiq's way: the ``AsyncTaskiqTask`` handle ``kiq()`` returns, and the result
backends (``AsyncResultBackend``, taskiq-redis's ``RedisAsyncResultBackend``).

>>> handle = await add.kiq(1, 2)                                        # doctest: +SKIP
>>> (await handle.wait_result(timeout=5)).return_value                  # doctest: +SKIP
3

``TaskiqResult`` is :class:`conveyor.Result`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.app import Conveyor
from conveyor.compat.taskiq._options import _note_ignored
from conveyor.compat.taskiq.errors import ResultGetError
from conveyor.errors import ConfigurationError, ResultMissing, ResultTimeout
from conveyor.result import Result
from conveyor.task import Seconds, TaskHandle, seconds

if TYPE_CHECKING:
    from conveyor.compat.taskiq.brokers import AsyncBroker

__all__ = ["AsyncResultBackend", "AsyncTaskiqTask", "RedisAsyncResultBackend", "TaskiqResult"]

R = TypeVar("R")

TaskiqResult = Result

# seconds per wait while waiting without a limit (taskiq's wait_result(timeout=-1))
_UNBOUNDED_WAIT_STEP = 3600.0


class AsyncTaskiqTask(TaskHandle[R]):
    """What ``kiq()`` returns: a :class:`~conveyor.TaskHandle` with taskiq's methods and
    defaults (``wait_result()`` waits without a limit unless given ``timeout``)."""

    __slots__ = ()

    async def wait_result(
        self,
        timeout: Seconds = -1,
        *,
        check_interval: float | None = None,
        with_logs: bool = False,
    ) -> Result[R]:
        """The task's :class:`~conveyor.Result`; ``timeout=-1`` (taskiq's default) waits
        without a limit, otherwise :class:`~conveyor.ResultTimeout`
        (``TaskiqResultTimeoutError``) is raised after ``timeout`` seconds.

        ``check_interval`` and ``with_logs`` are accepted and ignored: results are pushed
        to waiters, not polled, and task output is not captured.
        """
        limit = seconds(timeout)
        if limit is not None and limit >= 0:
            return await super().wait_result(limit)
        while True:
            try:
                return await super().wait_result(_UNBOUNDED_WAIT_STEP)
            except ResultTimeout:
                continue

    async def is_ready(self) -> bool:
        """True once the task's result is stored."""
        try:
            await self.result()
        except ResultMissing:
            return False
        return True

    async def get_result(self, with_logs: bool = False) -> Result[R]:
        """The stored result now; raises ``ResultGetError`` (ResultMissing) if none yet."""
        return await self.result()


class AsyncResultBackend:
    """Reads results of the broker it is attached to. Every compat broker has one:
    Conveyor always stores results (taskiq's default backend stores none)."""

    def __init__(self) -> None:
        self._broker: AsyncBroker | None = None

    def _attach(self, broker: AsyncBroker) -> None:
        if self._broker is not None and self._broker is not broker:
            raise ConfigurationError(
                f"{type(self).__name__} is already attached to {self._broker!r}; give each "
                "broker its own result backend"
            )
        self._broker = broker

    def _app(self) -> Conveyor:
        if self._broker is None:
            raise ConfigurationError(
                f"{type(self).__name__} is not attached to a broker: "
                "use broker.with_result_backend(backend)"
            )
        return self._broker.conveyor

    async def startup(self) -> None:
        """Nothing to do: the broker's ``startup()`` connects the result store."""

    async def shutdown(self) -> None:
        """Nothing to do: the broker's ``shutdown()`` closes the result store."""

    async def is_result_ready(self, task_id: str) -> bool:
        """True once ``task_id`` has a stored result."""
        return await self._app().result_store.get(task_id) is not None

    async def get_result(self, task_id: str, with_logs: bool = False) -> Result[Any]:
        """The stored result of ``task_id``; raises ``ResultGetError`` if there is none."""
        try:
            return await self._app().handle(task_id).result()
        except ResultMissing:
            raise ResultGetError(
                f"no result stored for task {task_id} (not finished, or expired)"
            ) from None


class RedisAsyncResultBackend(AsyncResultBackend):
    """taskiq-redis's result backend: results are kept on ``redis_url`` for
    ``result_ex_time`` seconds (``result_px_time`` ms), else Conveyor's ``result_ttl``.

    When ``redis_url`` is the broker's server and database, the broker's own result store
    (and key prefix) is used. ``keep_results=False`` is ignored: results expire by TTL.
    """

    def __init__(
        self,
        redis_url: str,
        keep_results: bool = True,
        result_ex_time: int | None = None,
        result_px_time: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if result_ex_time is not None and result_px_time is not None:
            raise ConfigurationError("give result_ex_time or result_px_time, not both")
        self.redis_url = redis_url
        self.keep_results = keep_results
        self.result_ttl: float | None = (
            float(result_ex_time)
            if result_ex_time is not None
            else (result_px_time / 1000 if result_px_time is not None else None)
        )
        _note_ignored(type(self).__name__, options)
