"""Listening to a Redis pub/sub channel, from a task that survives lost connections.

Used for the two push channels of the layout in ``keys.py``: ``<prefix>:results`` (the
result store's waiters) and ``<prefix>:aborts`` (the worker's abort signals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.clock import FaultPause, SystemClock

__all__ = ["ChannelListener"]

log = logging.getLogger("conveyor.redis")


class ChannelListener:
    """Listens to one pub/sub channel from a task that resubscribes after a lost
    connection; ``on_subscribed`` runs after every (re)subscription, to catch up on what
    was published meanwhile (pub/sub keeps nothing for absent listeners)."""

    def __init__(
        self,
        name: str,
        client: Callable[[], Any],
        channel: str,
        on_message: Callable[[bytes], None],
        on_subscribed: Callable[[], Awaitable[None]],
    ) -> None:
        self._name = name
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Start listening (once) and wait until the first subscription holds."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=self._name)
        await asyncio.wait_for(self._subscribed.wait(), 10.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._subscribed = asyncio.Event()

    async def _listen(self) -> None:
        pause = FaultPause(SystemClock(), first=0.05, cap=2.0)
        while True:
            pubsub = self._client().pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                await self._on_subscribed()
                pause.reset()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "listener of %s lost its connection; resubscribing",
                    self._channel,
                    exc_info=True,
                )
                await pause.wait()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
