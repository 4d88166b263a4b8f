"""Pull requests to the queue consumers, and the messages they bring.

Each lane (a queue's consumer for one priority level, named by that consumer) has one
inbox subscription. ``pull_now`` asks a consumer for up to ``n``
messages that are ready now (``no_wait``) and waits for them; ``linger`` leaves one
request of one message waiting on the server, so that a publish, a delay or a retry that
falls due wakes a waiting fetch at once. Messages land in a per-lane buffer that the
broker claims from; an interrupt ends a wait without a message.

A lingering request may bring a message after the fetch that sent it returned: it waits
in the buffer for the next fetch (its lease is renewed when it is claimed), or is handed
back with a NAK when the broker closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from conveyor.brokers.nats.names import Names

__all__ = ["Puller"]

# how long one lingering request waits on the server before it is renewed
LINGER_MAX = 5.0


class Puller:
    """Fetch plumbing for one connection; every method runs on its event loop."""

    def __init__(self, nc: Client, names: Names) -> None:
        self._nc = nc
        self._names = names
        self._subs: dict[str, Subscription] = {}
        self._inbox: dict[str, str] = {}
        self.buffer: dict[str, deque[tuple[Msg, float]]] = {}
        self._changed = asyncio.Event()
        self._ends: dict[str, asyncio.Future[None]] = {}
        self._wants: dict[str, tuple[int, asyncio.Future[None]]] = {}
        self._received: dict[str, int] = {}
        self._lingering: dict[str, tuple[str, float]] = {}  # lane -> (reply, until)
        self._ids = itertools.count()
        self._interrupted = False

    async def _ensure(self, lane: str) -> None:
        if lane in self._subs:
            return
        inbox = self._nc.new_inbox()
        self._inbox[lane] = inbox
        self.buffer[lane] = deque()
        self._received[lane] = 0

        async def on_message(msg: Msg) -> None:
            self._on_message(lane, msg)

        self._subs[lane] = await self._nc.subscribe(f"{inbox}.*", cb=on_message)

    def _on_message(self, lane: str, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None and not msg.reply:
            if status == "100":  # idle heartbeat
                return
            # 404 no messages, 408 request expired, 409 (max waiting...): the request ended
            end = self._ends.pop(msg.subject, None)
            if end is not None and not end.done():
                end.set_result(None)
            lingering = self._lingering.get(lane)
            if lingering is not None and lingering[0] == msg.subject:
                del self._lingering[lane]
            self._changed.set()
            return
        self.buffer[lane].append((msg, time.monotonic()))
        self._received[lane] += 1
        self._lingering.pop(lane, None)  # a one-message request is spent (or a new one is cheap)
        want = self._wants.get(lane)
        if want is not None and self._received[lane] >= want[0] and not want[1].done():
            want[1].set_result(None)
        self._changed.set()

    async def pull_now(self, lane: str, count: int, timeout: float) -> None:
        """Ask for up to ``count`` ready messages and wait until they are in the buffer,
        the server says there are no more, or ``timeout`` passes.

        The request carries ``expires`` too: a server that counts deleted messages as
        pending (2.9 after an interior delete) holds a ``no_wait`` request instead of
        answering 404, and a request without ``expires`` would wait there forever."""
        timeout = max(timeout, 0.02)
        await self._ensure(lane)
        loop = asyncio.get_running_loop()
        end: asyncio.Future[None] = loop.create_future()
        enough: asyncio.Future[None] = loop.create_future()
        reply = f"{self._inbox[lane]}.{next(self._ids)}"
        self._ends[reply] = end
        self._wants[lane] = (self._received[lane] + count, enough)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._names.tasks}.{lane}"
        body = {"batch": count, "no_wait": True, "expires": int(timeout * 1e9)}
        try:
            await self._nc.publish(subject, json.dumps(body).encode(), reply=reply)
            await asyncio.wait(
                {end, enough}, timeout=timeout + 0.05, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._ends.pop(reply, None)
            self._wants.pop(lane, None)
            end.cancel()
            enough.cancel()

    async def linger(self, lane: str, seconds: float) -> None:
        """Leave a request for one message waiting on the server for up to ``seconds``
        (unless one is waiting already)."""
        await self._ensure(lane)
        seconds = min(max(seconds, 0.05), LINGER_MAX)
        now = time.monotonic()
        current = self._lingering.get(lane)
        if current is not None and current[1] > now + 0.05:
            return
        reply = f"{self._inbox[lane]}.{next(self._ids)}"
        self._lingering[lane] = (reply, now + seconds)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._names.tasks}.{lane}"
        body = {"batch": 1, "expires": int(seconds * 1e9)}
        await self._nc.publish(subject, json.dumps(body).encode(), reply=reply)

    async def wait(self, lanes: Sequence[str], timeout: float) -> None:
        """Wait up to ``timeout`` for a message in one of ``lanes``' buffers, the end of
        a request, or an interrupt."""
        if self._interrupted or any(self.buffer.get(q) for q in lanes):
            return
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._changed.wait()

    def interrupt(self) -> None:
        """End the waiting fetch now, or the next one."""
        self._interrupted = True
        self._changed.set()

    def take_interrupt(self) -> bool:
        interrupted, self._interrupted = self._interrupted, False
        return interrupted

    def poke(self) -> None:
        """Wake a waiting fetch to look again (a new lane appeared)."""
        self._changed.set()

    def forget_requests(self) -> None:
        """After a reconnect the server may have lost our waiting requests: renew them."""
        self._lingering.clear()
        self._changed.set()

    async def close(self) -> list[Msg]:
        """Stop listening; returns the buffered messages nobody claimed."""
        left = [msg for buffer in self.buffer.values() for msg, _ in buffer]
        for buffer in self.buffer.values():
            buffer.clear()
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        return left
