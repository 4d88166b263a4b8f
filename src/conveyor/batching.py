"""Coalesce calls made in one event-loop turn into one broker call.

Under load many tasks finish (or many producers enqueue) in the same turn of the loop;
handing the broker one batch turns N round trips into one pipeline, script call or
transaction. With no concurrency the batch is simply of size one, at no extra latency.
With ``max_in_flight``, items that arrive while that many batches are in flight wait for
one of them to end and go together (group commit): the batches grow with the load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from conveyor.errors import PartialPublish

__all__ = ["Batcher"]

T = TypeVar("T")
U = TypeVar("U")


class Batcher(Generic[T, U]):
    """``await batcher.submit(item)`` returns ``flush([..., item, ...])``'s answer for it."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[U]]],
        max_batch: int = 512,
        max_in_flight: int | None = None,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        # group commit: with this many flushes in flight, new items wait for one to end
        # and then go together, so batches grow with the load instead of the round trips
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[T, asyncio.Future[U]]] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> U:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[U] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        while self._pending:
            if self._max_in_flight is not None and len(self._flushing) >= self._max_in_flight:
                return  # the next flush to end starts these
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if self._pending and not self._scheduled:
            self._start()

    async def _run(self, batch: list[tuple[T, asyncio.Future[U]]]) -> None:
        try:
            answers = await self._flush([item for item, _ in batch])
        except BaseException as exc:
            if isinstance(exc, PartialPublish) and len(exc.outcomes) == len(batch):
                # some items went through: each caller gets its own answer or error
                for (_, future), outcome in zip(batch, exc.outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)  # type: ignore[arg-type]
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                    )
            if not isinstance(exc, Exception):
                raise
            return
        if len(answers) != len(batch):  # a broker bug: fail every caller, leave none pending
            error = RuntimeError(
                f"{getattr(self._flush, '__qualname__', self._flush)!s} answered "
                f"{len(answers)} result(s) for a batch of {len(batch)}"
            )
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def aclose(self) -> None:
        """Wait for batches in flight (their callers are waiting for them too)."""
        while self._flushing or self._pending:
            if self._pending and not self._scheduled:
                self._start()
            await asyncio.gather(*self._flushing, return_exceptions=True)
            if not self._flushing and not self._pending:
                break
            await asyncio.sleep(0)
