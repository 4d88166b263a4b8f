"""Ending a worker's blocking read early, so delays are kept to the millisecond and a
stopping worker does not wait out ``fetch_wait``.

An idle worker waits in ``XREADGROUP ... BLOCK`` on its queues' streams, for at most
``fetch_wait`` or until the earliest delayed message is due. The server ends a BLOCK only
on its cron tick (``hz`` 10: up to 100 ms late), so the due time is kept here, with a
timer. A delayed message published (or a retry parked) during the read would otherwise
wait for it to end, up to ``fetch_wait`` late: ``publish.lua`` and ``retry.lua`` announce
on ``<prefix>:delays`` each delayed message that becomes its queue's earliest ("<due ms>
<tag>"), and the worker sets its timer for it. At the due time the worker ends its own
read with ``CLIENT UNBLOCK <id> TIMEOUT`` from its other connection; the read returns
nothing, and the next fetch promotes the message. :meth:`FetchWaker.interrupt` ends the
read at once (a worker stopping).

Announcements are hints: one that is lost (a reconnect, a read not yet blocked on the
server) costs at most ``fetch_wait`` of latency, never a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Set
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from conveyor.brokers.redis.connection import blocked_client_id
from conveyor.brokers.redis.pubsub import ChannelListener

__all__ = ["FetchWaker"]

log = logging.getLogger("conveyor.redis")

# a CLIENT UNBLOCK that finds the read not blocked yet (it is still on its way to the
# server) is tried again this often, this many times
_UNBLOCK_RETRY = 0.002
_UNBLOCK_TRIES = 5


@dataclass(slots=True, eq=False)
class _Block:
    """One blocking read in progress."""

    tags: Set[str]
    ends_at: float  # local wall time at which the read times out by itself
    server_offset: float  # server time minus local time, seconds
    timer: asyncio.TimerHandle | None = None
    timer_at: float = float("inf")
    unblocking: set[asyncio.Task[None]] = field(default_factory=set)


class FetchWaker:
    """The delays listener and the read it may end early, for one broker connection."""

    def __init__(self, client: Callable[[], Any], blocking: Callable[[], Any], channel: str):
        self._client = client
        self._blocking = blocking
        self._listener = ChannelListener(
            "conveyor-redis-delays", client, channel, self._announced, self._resubscribed
        )
        self._block: _Block | None = None
        self._heard: dict[str, int] = {}  # tag -> earliest due (server ms) heard since look()
        self._interrupted = False

    async def start(self) -> None:
        """Listen for announcements (once; before the first look at the delayed sets)."""
        await self._listener.start()

    async def close(self) -> None:
        await self._listener.close()
        self._block = None

    def look(self) -> None:
        """A fetch is about to read the delayed sets: forget what was heard before."""
        self._heard.clear()

    def heard(self, tags: Set[str]) -> int | None:
        """The earliest due time (server ms) announced for ``tags`` since :meth:`look`."""
        dues = [due for tag, due in self._heard.items() if tag in tags]
        return min(dues) if dues else None

    def interrupt(self) -> None:
        """End the read in progress now, or the next one before it starts."""
        self._interrupted = True
        if self._block is not None:
            self._end_at(self._block, time.time())

    @property
    def interrupted(self) -> bool:
        """:meth:`interrupt` was called and not yet taken."""
        return self._interrupted

    def take_interrupt(self) -> bool:
        """True (once) if :meth:`interrupt` was called since the last take."""
        interrupted, self._interrupted = self._interrupted, False
        return interrupted

    @contextmanager
    def blocking(
        self, tags: Set[str], seconds: float, server_offset: float, due_at: float | None
    ) -> Iterator[None]:
        """Around one ``XREADGROUP ... BLOCK`` of ``seconds`` on the streams of ``tags``,
        ended at ``due_at`` (server time) if that comes first."""
        block = _Block(tags, time.time() + seconds, server_offset)
        self._block = block
        if due_at is not None:
            self._end_at(block, due_at - server_offset)
        try:
            yield
        finally:
            self._block = None
            if block.timer is not None:
                block.timer.cancel()

    def _announced(self, payload: bytes) -> None:
        due_text, _, tag = payload.decode().partition(" ")
        due = int(due_text)
        previous = self._heard.get(tag)
        if previous is None or due < previous:
            self._heard[tag] = due
        block = self._block
        if block is not None and tag in block.tags:
            self._end_at(block, due / 1000.0 - block.server_offset)

    async def _resubscribed(self) -> None:
        return None  # a read in progress times out by itself within fetch_wait

    def _end_at(self, block: _Block, when: float) -> None:
        """End ``block`` at local wall time ``when``, if that is before it ends anyway."""
        if when >= block.ends_at - 0.001 or when >= block.timer_at:
            return
        if block.timer is not None:
            block.timer.cancel()
        block.timer_at = when
        loop = asyncio.get_running_loop()
        block.timer = loop.call_later(max(when - time.time(), 0.0), self._unblock_soon, block)

    def _unblock_soon(self, block: _Block) -> None:
        if self._block is not block:
            return
        task = asyncio.create_task(self._unblock(block), name="conveyor-redis-unblock")
        block.unblocking.add(task)
        task.add_done_callback(block.unblocking.discard)

    async def _unblock(self, block: _Block) -> None:
        for _ in range(_UNBLOCK_TRIES):
            client_id = blocked_client_id(self._blocking())
            if self._block is not block:
                return
            if client_id is not None:
                try:
                    ended = await self._client().execute_command(
                        "CLIENT", "UNBLOCK", client_id, "TIMEOUT"
                    )
                except Exception as exc:  # a hint only: the read times out by itself
                    log.debug("CLIENT UNBLOCK failed: %s", exc)
                    return
                if ended:
                    return
            await asyncio.sleep(_UNBLOCK_RETRY)
