"""The dead-letter stream ``<p>_dlq``: one message per dead task, on the subject
``<p>.dlq.<queue>.<task>``, holding the raw bytes it arrived as and, in headers, the
reason, the attempts and when it failed.

Messages past MaxDeliver (a task that cannot even be claimed: the server stops handing
it out) stay in the work stream. The server announces each one with a core-NATS
advisory, which we follow; since an advisory may be missed (no listener, a reconnect),
:meth:`DeadLetters.reconcile` also scans for them on start and from ``reap()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING

import msgspec
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from conveyor.brokers import redact_url
from conveyor.brokers.base import DeadLetterEntry
from conveyor.brokers.nats.names import token, untoken
from conveyor.brokers.nats.records import GONE, Record

if TYPE_CHECKING:
    from conveyor.brokers.nats.broker import NatsBroker

__all__ = ["DeadLetters"]

log = logging.getLogger("conveyor.nats")

_REASON, _ATTEMPTS, _AT, _QUEUE, _TASK = (
    "Conveyor-Reason",
    "Conveyor-Attempts",
    "Conveyor-Failed-At",
    "Conveyor-Queue",
    "Conveyor-Task",
)


def _header_safe(text: str) -> str:
    return " ".join(text.splitlines())


class DeadLetters:
    """Reads and writes the dead-letter stream of one broker."""

    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker
        self._sub: Subscription | None = None
        self._moves: set[asyncio.Task[None]] = set()

    async def listen(self) -> None:
        """Follow the MaxDeliver advisories of the work stream, and reconcile once."""

        async def on_advisory(msg: Msg) -> None:
            try:
                seq = int(json.loads(msg.data)["stream_seq"])
            except (ValueError, KeyError, TypeError):
                return
            task = asyncio.create_task(self._move_logged(seq))
            self._moves.add(task)
            task.add_done_callback(self._moves.discard)

        self._sub = await self._broker.nc.subscribe(self._broker.names.advisories(), cb=on_advisory)
        await self.reconcile()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        for task in list(self._moves):
            task.cancel()
        await asyncio.gather(*self._moves, return_exceptions=True)

    async def put(self, task_id: str, record: Record, body: bytes) -> None:
        """Publish the dead letter (deduplicated: a repeat after a crash is dropped)."""
        names = self._broker.names
        headers = {
            "Nats-Msg-Id": f"dlq.{token(task_id)}.{record.s}.{record.t}",
            _TASK: token(task_id),
            _QUEUE: token(record.q),
            _REASON: _header_safe(record.r) or "-",
            _ATTEMPTS: str(record.a),
            _AT: repr(record.ft or time.time()),
        }
        await self._broker.js.publish(
            names.dlq_subject(record.q, task_id), body, stream=names.dlq, headers=headers
        )

    async def _last(self, queue: str, task_id: str) -> api.RawStreamMsg | None:
        names = self._broker.names
        try:
            return await self._broker.js.get_last_msg(names.dlq, names.dlq_subject(queue, task_id))
        except nats.js.errors.NotFoundError:
            return None

    async def entry(self, queue: str, task_id: str) -> DeadLetterEntry | None:
        msg = await self._last(queue, task_id)
        return None if msg is None else _entry(msg)

    async def remove(self, queue: str, task_id: str) -> None:
        """Delete the task's dead letters."""
        for _ in range(100):
            msg = await self._last(queue, task_id)
            if msg is None or msg.seq is None:
                return
            await self._broker.js.delete_msg(self._broker.names.dlq, msg.seq)

    async def entries(self, queue: str | None, limit: int, offset: int) -> list[DeadLetterEntry]:
        """Newest first, read backwards from the end of the stream."""
        js, names = self._broker.js, self._broker.names
        info = await js.stream_info(names.dlq)
        out: list[DeadLetterEntry] = []
        seq, first = info.state.last_seq, info.state.first_seq
        wanted = token(queue) if queue else None
        while seq >= max(first, 1) and len(out) < offset + limit:
            try:
                msg = await js.get_msg(names.dlq, seq)
            except nats.js.errors.NotFoundError:
                seq -= 1
                continue
            seq -= 1
            if wanted is None or (msg.headers or {}).get(_QUEUE) == wanted:
                out.append(_entry(msg))
        return out[offset : offset + limit]

    async def _move_logged(self, seq: int) -> None:
        try:
            await self.move_exhausted(seq)
        except Exception:
            log.exception(
                "NATS %s: could not dead-letter message %d past MaxDeliver; the next "
                "reconciliation retries",
                redact_url(self._broker.url),
                seq,
            )

    async def move_exhausted(self, seq: int) -> bool:
        """Move the work message ``seq``, past MaxDeliver, to the dead-letter stream."""
        broker = self._broker
        try:
            msg = await broker.js.get_msg(broker.names.tasks, seq)
        except nats.js.errors.NotFoundError:
            return False
        raw = (msg.headers or {}).get(_TASK)
        task_id = untoken(raw) if raw else f"nats-{broker.names.tasks}-{seq}"
        queue = broker.names.queue_of_subject(msg.subject or "")
        reason = f"delivered {broker.settings.max_deliver} times (MaxDeliver) without settling"
        found = await broker.jobs.get(task_id)
        if found is GONE or (isinstance(found, tuple) and found[0].s not in (0, seq)):
            # the task was settled (or sent again as another message): this is a leftover
            # copy, e.g. an acked message a killed server had not removed yet
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await broker.js.delete_msg(broker.names.tasks, seq)
            return False
        if isinstance(found, tuple):
            record, revision = found
            if record.st != "d":
                dead = msgspec.structs.replace(record, st="d", r=reason, ft=time.time(), s=seq)
                if await broker.jobs.update(task_id, dead, revision) is None:
                    return False  # it moved: settled or claimed meanwhile
                record = dead
        else:
            record = Record(q=queue, st="d", s=seq, r=reason, ft=time.time())
            await broker.jobs.create(task_id, record)
        await self.put(task_id, record, msg.data or b"")
        await broker.js.delete_msg(broker.names.tasks, seq)
        log.error("NATS %s: task %s dead-lettered: %s", redact_url(broker.url), task_id, reason)
        return True

    async def reconcile(self, limit: int = 1000) -> int:
        """Dead-letter the messages each queue's consumer has passed (its ack floor) but
        that are still in the work stream: the ones past MaxDeliver."""
        broker = self._broker
        moved = 0
        for info in await broker.js.consumers_info(broker.names.tasks):
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            subject = info.config.filter_subject
            seq = 1
            while floor and seq <= floor and moved < limit:
                try:
                    msg = await broker.js.get_msg(
                        broker.names.tasks, seq=seq, next=True, subject=subject
                    )
                except nats.js.errors.NotFoundError:
                    break
                if msg.seq is None or msg.seq > floor:
                    break
                if await self.move_exhausted(msg.seq):
                    moved += 1
                seq = msg.seq + 1
        return moved


def _entry(msg: api.RawStreamMsg) -> DeadLetterEntry:
    headers = msg.headers or {}
    return DeadLetterEntry(
        id=untoken(headers.get(_TASK, "")),
        queue=untoken(headers.get(_QUEUE, "")),
        body=msg.data or b"",
        reason=headers.get(_REASON, ""),
        attempts=int(headers.get(_ATTEMPTS, "0")),
        failed_at=float(headers.get(_AT, "0")),
    )
