"""The ledger: task records kept in RabbitMQ itself, for brokers with no Redis store.

RabbitMQ cannot look a message up by id, so without a record store nobody could say where
a task is, or stop a queued one. The ledger is a RabbitMQ stream (``<prefix>.ledger``, an
append-only, replicated log with a retention age) of every transition: published,
claimed, settled, aborted, and the terminal status and progress the worker reports. Each
process that needs it reads the stream from its start and applies every entry, in stream
order, to the same :class:`LedgerState`; the rules are deterministic, so every process
reaches the same answer for every question, and the stream's order settles every race:

- a claim runs only if its entry lands before any abort of the task (an abort that lands
  first dequeues it, one that lands after signals its worker);
- a settlement counts only if it carries the token of the task's current claim (a worker
  whose message went to another is fenced);
- a claim landing on a task that is still claimed counts a crash (poison isolation, G5);
- a redelivered copy of a finished, dead or aborted task is dropped.

A claim, an abort and a status read wait until their own entry came back through the
stream (a barrier: read your writes); publishing and settling only append. Entries are
kept in memory as long as the stream keeps them (``ledger_max_age``); finished tasks'
records are dropped from a worker's state after :data:`FINISHED_KEEP` (their status stays
in the status store's state for the whole age).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiormq
import msgspec
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from conveyor.brokers.base import (
    AbortResult,
    BrokerOptions,
    Outgoing,
    Place,
    StoredResult,
    TaskLocation,
)
from conveyor.brokers.rabbitmq.connection import Link, Session, unavailable
from conveyor.brokers.rabbitmq.records import Claim, Settle
from conveyor.errors import BrokerUnavailable
from conveyor.result import AbortOutcome

__all__ = [
    "FINISHED_KEEP",
    "Ledger",
    "LedgerRecords",
    "LedgerState",
    "LedgerStatusStore",
    "TaskRecord",
]

log = logging.getLogger("conveyor.rabbitmq")
T = TypeVar("T")

FINISHED_KEEP = 600.0
"""Seconds a finished task's record stays in a worker's state, so that the redelivery of a
message whose ack was lost (a connection cut right after it ended) is dropped."""
TAIL_PREFETCH = 2000

# entry kinds
PUBLISHED, CLAIMED, SETTLED, ABORTED, FORGOTTEN, STATUS, PROGRESS = "pcsxkth"
# places
WAITING, RUNNING, DEAD, FINISHED = "wrdf"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[float, list[list[Any]]])


@dataclass(slots=True)
class TaskRecord:
    """What the ledger knows of one task."""

    place: str = WAITING
    attempts: int = 0
    crashes: int = 0
    copy: int = 1
    token: int = 0
    marked: bool = False
    status: bytes | None = None  # the terminal result, without its value
    progress: bytes | None = None
    touched: float = 0.0
    born: float = 0.0
    key: str = ""
    key_ttl: float = 0.0
    landed: bool = False  # claimed without a publish entry: one reported failed, or aged out


class LedgerState:
    """The records every reader of the ledger builds by applying its entries in order.

    ``keep_finished``: seconds a finished task's record is kept (the status store keeps
    them for the whole retention age, a worker only for :data:`FINISHED_KEEP`)."""

    def __init__(self, max_age: float, keep_finished: float) -> None:
        self.tasks: OrderedDict[str, TaskRecord] = OrderedDict()
        self.max_age = max_age
        self.keep_finished = min(keep_finished, max_age)
        self.keys: dict[str, tuple[str, float | None]] = {}  # key -> task, when it ends
        self.admits: dict[int, tuple[str, int]] = {}
        self.claims: dict[int, Claim] = {}
        self.aborts: dict[str, tuple[AbortOutcome, int]] = {}
        self.signals: list[str] = []
        self.now = 0.0
        self._keys_swept = 1024

    def apply(self, at: float, entries: Sequence[Sequence[Any]], mine: bool) -> None:
        """Apply one stream message's entries, appended at ``at`` (Unix seconds).
        ``mine``: this process appended it, so it keeps the claim and abort answers."""
        self.now = max(self.now, at)
        for entry in entries:
            try:
                self._apply(entry, mine)
            except (IndexError, TypeError, ValueError) as exc:  # a foreign or newer entry
                log.warning("ignoring a ledger entry this version cannot read: %s", exc)
        self._prune()

    def _record(self, task_id: str) -> TaskRecord | None:
        record = self.tasks.get(task_id)
        if record is not None:
            record.touched = self.now
            self.tasks.move_to_end(task_id)
        return record

    def _new(self, task_id: str, record: TaskRecord) -> TaskRecord:
        record.touched = record.born = self.now
        self.tasks[task_id] = record
        self.tasks.move_to_end(task_id)
        return record

    def _apply(self, entry: Sequence[Any], mine: bool) -> None:
        kind, task_id = entry[0], str(entry[1])
        record = self._record(task_id)
        if kind == PUBLISHED:  # [p, id, reused, key, key ttl, token]
            admitted = self._publish(task_id, record, bool(entry[2]), str(entry[3]), entry[4])
            if mine:
                self.admits[int(entry[5])] = admitted
        elif kind == CLAIMED:  # [c, id, copy, attempts before, token]
            copy, before, token = int(entry[2]), int(entry[3]), int(entry[4])
            decision = self._claim(task_id, record, copy, before, token)
            if mine:
                self.claims[token] = decision
        elif kind == SETTLED:  # [s, id, token, kind, copy]
            if record is not None and record.token == int(entry[2]) and record.place == RUNNING:
                self._settle(record, str(entry[3]), int(entry[4]))
                if record.place in (FINISHED, DEAD):
                    self._end_key(task_id, record)
        elif kind == ABORTED:  # [x, id, nonce]
            outcome = self._abort(task_id, record)
            if mine:
                self.aborts[str(entry[2])] = (outcome, record.attempts if record else 0)
        elif kind == FORGOTTEN:  # [k, id]: its publish failed
            if record is not None and record.place == WAITING:
                self._end_key(task_id, record, forget=True)
                del self.tasks[task_id]
            elif record is not None:  # claimed already: it landed after all
                record.landed = True
        elif kind == STATUS:  # [t, id, result without its value]
            (record or self._new(task_id, TaskRecord(place=FINISHED))).status = bytes(entry[2])
        elif kind == PROGRESS:  # [h, id, snapshot]
            (record or self._new(task_id, TaskRecord(place=RUNNING))).progress = bytes(entry[2])

    def _publish(
        self, task_id: str, record: TaskRecord | None, reused: bool, key: str, key_ttl: float
    ) -> tuple[str, int]:
        """Admit one message: (the task id that stands for it, the copy to publish; 0:
        publish nothing). A held key answers with its task; so does a task id that is
        still waiting or running."""
        if key:
            owner = self.keys.get(key)
            if owner is not None and (owner[1] is None or owner[1] > self.now):
                return owner[0], 0
        if record is not None and record.place in (WAITING, RUNNING):
            return task_id, 0
        if record is not None and not reused and record.place in (FINISHED, DEAD):
            return task_id, 0  # a finished task's id, sent again by accident
        if record is not None and record.landed and record.place in (FINISHED, DEAD):
            record.landed = False  # the retry of a publish reported failed that had landed
            return task_id, 0
        copy = record.copy + 1 if record is not None else 1
        self._new(task_id, TaskRecord(copy=copy, key=key, key_ttl=float(key_ttl or 0)))
        if key:
            self.keys[key] = (task_id, None)
        return task_id, copy

    def _end_key(self, task_id: str, record: TaskRecord, forget: bool = False) -> None:
        """The task ended: its key answers for it ``key_ttl`` more seconds (a forgotten
        publish frees it at once)."""
        if record.key and self.keys.get(record.key, ("",))[0] == task_id:
            if forget:
                del self.keys[record.key]
            else:
                self.keys[record.key] = (task_id, self.now + record.key_ttl)

    def _claim(
        self, task_id: str, record: TaskRecord | None, copy: int, before: int, token: int
    ) -> Claim:
        if record is None:  # its publish entry is not (or no longer) in the stream
            record = self._new(task_id, TaskRecord(attempts=before, landed=True))
        if record.place in (FINISHED, DEAD) or (record.marked and record.place == WAITING):
            return Claim(False, token=token, copy=copy)
        if copy and copy < record.copy:  # an older copy than the live one
            return Claim(False, token=token, copy=copy)
        if record.place == RUNNING:  # its last claim never settled: that worker died
            record.crashes += 1
        record.place, record.token = RUNNING, token
        record.attempts += 1
        record.copy = max(record.copy, copy)
        return Claim(True, record.attempts, record.crashes, record.marked, token, copy)

    @staticmethod
    def _settle(record: TaskRecord, kind: str, copy: int) -> None:
        record.token = 0
        if kind == "ack":
            record.place = FINISHED
        elif kind == "dead":
            record.place = DEAD
        elif kind in ("retry", "defer"):
            record.place, record.copy = WAITING, max(record.copy, copy)
            if kind == "defer":  # an uncharged retry: the attempt is given back
                record.attempts = max(record.attempts - 1, 0)
        else:  # release: the attempt is not charged
            record.place = WAITING
            record.attempts = max(record.attempts - 1, 0)

    def _abort(self, task_id: str, record: TaskRecord | None) -> AbortOutcome:
        if record is None:
            return AbortOutcome.UNKNOWN
        if record.place in (FINISHED, DEAD) or (record.marked and record.place == WAITING):
            return AbortOutcome.FINISHED
        record.marked = True
        if record.place == WAITING:
            record.place = FINISHED  # its message is dropped when it surfaces
            self._end_key(task_id, record)
            return AbortOutcome.DEQUEUED
        self.signals.append(task_id)
        return AbortOutcome.SIGNALLED

    def _prune(self) -> None:
        """Drop finished records untouched for ``keep_finished`` and any record older
        than the stream's retention age (its entries are gone from the stream too)."""
        tasks, now = self.tasks, self.now
        if len(self.keys) > self._keys_swept * 2:
            self.keys = {k: v for k, v in self.keys.items() if v[1] is None or v[1] > now}
            self._keys_swept = max(len(self.keys), 1024)
        while tasks:
            task_id, record = next(iter(tasks.items()))
            if now - record.touched < self.keep_finished:
                return
            if record.place in (FINISHED, DEAD) or now - record.born >= self.max_age:
                del tasks[task_id]
            else:  # still waiting or running: look again later
                record.touched = now
                tasks.move_to_end(task_id)


class Ledger:
    """Appends to and reads the ledger stream of one prefix, on a broker's :class:`Link`."""

    def __init__(
        self,
        link: Link,
        stream: str,
        *,
        max_age: float,
        keep_finished: float,
        timeout: float,
        url: str,
        shown: str,
    ) -> None:
        self._link = link
        self.stream = stream
        self.state = LedgerState(max_age, keep_finished)
        self._max_age = max_age
        self._timeout = timeout
        self._url, self._shown = url, shown
        self._tail: tuple[Session, aiormq.abc.AbstractChannel] | None = None
        self._next_offset: int | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._mine = f"{os.getpid()}-{uuid.uuid4().hex[:12]}-"
        self._serial = itertools.count()
        self._signal: asyncio.Event | None = None
        self._declared = False
        self._attach_lock: asyncio.Lock | None = None

    # -- appending -----------------------------------------------------------------

    async def append(self, entries: Sequence[Sequence[Any]], *, wait: bool = False) -> None:
        """Append ``entries`` as one stream message (publisher-confirmed); ``wait``: also
        until this process applied it, so that the state holds its answers."""
        session = await self._link.session()
        await self._attach(session)
        message_id = f"{self._mine}{next(self._serial)}"
        arrived: asyncio.Future[None] | None = None
        if wait:
            arrived = asyncio.get_running_loop().create_future()
            self._waiters[message_id] = arrived
        try:
            await session.publisher.basic_publish(
                _encoder.encode((time.time(), entries)),
                exchange="",
                routing_key=self.stream,
                properties=spec.Basic.Properties(message_id=message_id, delivery_mode=2),
                mandatory=True,
                timeout=self._timeout,
            )
            if arrived is not None:
                await asyncio.wait_for(arrived, self._timeout)
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            self._link.drop(session)
            raise unavailable(
                "could not append to the ledger of", exc, self._url, self._shown
            ) from None
        finally:
            self._waiters.pop(message_id, None)

    async def sync(self) -> None:
        """Wait until this process applied everything appended before now."""
        await self.append([], wait=True)

    def token(self) -> int:
        """A claim token no other claim will carry."""
        return secrets.randbits(62) + 1

    def nonce(self) -> str:
        return f"{self._mine}{next(self._serial)}"

    # -- abort signals ---------------------------------------------------------------

    async def wait_signal(self, timeout: float) -> list[str]:
        """The tasks signalled (aborted while running) since the last call, waiting up to
        ``timeout`` for one."""
        if not self.state.signals and timeout > 0:
            session = await self._link.session()
            await self._attach(session)
            if self._signal is None:
                self._signal = asyncio.Event()
            self._signal.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signal.wait(), timeout)
        out, self.state.signals = self.state.signals, []
        return out

    # -- reading ---------------------------------------------------------------------

    async def _attach(self, session: Session) -> None:
        """Consume the stream on ``session`` (from its first entry, or where the last
        session left off), once per session."""
        tail = self._tail
        if tail is not None and tail[0] is session:
            return
        if self._attach_lock is None:
            self._attach_lock = asyncio.Lock()
        async with self._attach_lock:
            if self._tail is not None and self._tail[0] is session:
                return
            try:
                await self._declare(session)
                channel = await session.connection.channel(publisher_confirms=False)
                underlay = await channel.get_underlay_channel()
                await underlay.basic_qos(prefetch_count=TAIL_PREFETCH)
                offset: int | str = "first" if self._next_offset is None else self._next_offset
                await underlay.basic_consume(
                    self.stream,
                    self._on_message(underlay),
                    arguments={"x-stream-offset": offset},
                )
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                self._link.drop(session)
                raise unavailable(
                    "could not read the ledger of", exc, self._url, self._shown
                ) from None
            channel.close_callbacks.add(self._lost)
            self._tail = (session, underlay)

    async def _declare(self, session: Session) -> None:
        if self._declared:
            return
        await session.channel.declare_queue(
            self.stream,
            durable=True,
            arguments={
                "x-queue-type": "stream",
                "x-max-age": f"{max(int(self._max_age), 1)}s",
                # retention drops whole segments: small ones keep the age close
                "x-stream-max-segment-size-bytes": 8_000_000,
            },
        )
        self._declared = True

    def _lost(self, _sender: Any, exc: BaseException | None = None) -> None:
        self._tail = None
        error = BrokerUnavailable(f"lost the ledger stream of RabbitMQ at {self._shown}")
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)

    def _on_message(self, channel: aiormq.abc.AbstractChannel) -> Callable[[DeliveredMessage], Any]:
        async def deliver(message: DeliveredMessage) -> None:
            headers = message.header.properties.headers or {}
            offset = headers.get("x-stream-offset")
            tag = getattr(message.delivery, "delivery_tag", None)
            if isinstance(offset, int):
                if self._next_offset is not None and offset < self._next_offset:
                    await _ack(channel, tag)
                    return  # already applied before a reconnect
                self._next_offset = offset + 1
            message_id = message.header.properties.message_id or ""
            waiter = self._waiters.get(message_id)
            try:
                at, entries = _decoder.decode(message.body)
            except msgspec.DecodeError:
                log.warning("ignoring an unreadable message in the ledger %s", self.stream)
            else:
                self.state.apply(at, entries, waiter is not None)
                if self.state.signals and self._signal is not None:
                    self._signal.set()
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            await _ack(channel, tag)

        return deliver


async def _ack(channel: aiormq.abc.AbstractChannel, tag: int | None) -> None:
    if tag is None:
        return
    # a closed channel: the next session reads again from the next offset
    with contextlib.suppress(aiormq.exceptions.AMQPError, OSError):
        await channel.basic_ack(tag)


class LedgerRecords:
    """:class:`~conveyor.brokers.rabbitmq.records.Records` kept in the ledger: every
    delivered message is claimed through the stream (one entry per fetch batch, waited
    for), every settlement appended."""

    keeps_attempts = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def register(self, batch: Sequence[Outgoing]) -> list[tuple[str, int]]:
        """Admit ``batch`` through the stream before it is published: its order decides
        which of two messages with one key, or one task id, is published."""
        tokens = [self.ledger.token() for _ in batch]
        await self.ledger.append(
            [
                [PUBLISHED, item.task_id, item.reused_id, item.key or "", item.key_ttl, token]
                for item, token in zip(batch, tokens, strict=True)
            ],
            wait=True,
        )
        admits = self.ledger.state.admits
        return [_answer(admits, token) for token in tokens]

    async def requeue(self, task_id: str, queue: str) -> int:
        """A dead letter about to be published again: queued anew, its dead record
        replaced. Returns the copy to publish (0: the task is queued or running already)."""
        ((_, copy),) = await self.register([Outgoing(task_id, queue, b"", reused_id=True)])
        return copy

    async def unregister(self, published: Sequence[tuple[str, int]]) -> None:
        await self.ledger.append([[FORGOTTEN, task_id] for task_id, _ in published])

    async def claim(self, rows: Sequence[tuple[str, str, int, int, int]]) -> list[Claim]:
        tokens = [self.ledger.token() for _ in rows]
        await self.ledger.append(
            [
                [CLAIMED, task_id, copy, before, token]
                for (task_id, _, copy, before, _), token in zip(rows, tokens, strict=True)
            ],
            wait=True,
        )
        claims = self.ledger.state.claims
        return [_answer(claims, token) for token in tokens]

    async def settle(self, batch: Sequence[Settle]) -> list[bool]:
        await self.ledger.append([[SETTLED, s.task_id, s.token, s.kind, s.copy] for s in batch])
        return [True] * len(batch)

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        """Append the abort; the stream's order says what it found. A queued task is
        dropped when its message surfaces; its result is built from an empty body (the
        message is in RabbitMQ, out of reach)."""
        nonce = self.ledger.nonce()
        await self.ledger.append([[ABORTED, task_id, nonce]], wait=True)
        outcome, attempts = self.ledger.state.aborts.pop(nonce, (AbortOutcome.UNKNOWN, 0))
        if outcome is AbortOutcome.DEQUEUED:
            result(b"", attempts)
        return outcome

    async def locate(self, task_id: str) -> TaskLocation | None:
        await self.ledger.sync()
        record = self.ledger.state.tasks.get(task_id)
        place = _PLACES.get(record.place) if record is not None else None
        return None if place is None or record is None else TaskLocation(place, record.attempts)

    def marks(self, task_ids: Sequence[str]) -> list[bool]:
        tasks = self.ledger.state.tasks
        return [(r := tasks.get(t)) is not None and r.marked for t in task_ids]


def _answer(answers: dict[int, T], token: int) -> T:
    """This process's answer to its own entry. Missing (the entry could not be applied),
    nothing is decided: raising leaves the publish undone and hands deliveries back,
    where a default would drop a message or never publish it."""
    try:
        return answers.pop(token)
    except KeyError:
        raise BrokerUnavailable(
            "the ledger did not answer an entry of this process (unreadable?); try again"
        ) from None


_PLACES = {WAITING: Place.WAITING, RUNNING: Place.LEASED, DEAD: Place.DEAD}


class LedgerStatusStore:
    """The result store of an ``amqp://`` app without ``results=``: it keeps each task's
    terminal status (status, attempts, error, times; not the return value) and progress
    in the ledger, so ``handle.status()`` answers; waiting for a result raises
    :class:`ConfigurationError` saying how to add a store."""

    def __init__(self, url: str, options: BrokerOptions) -> None:
        from conveyor.brokers import redact_url
        from conveyor.brokers.rabbitmq.settings import AmqpSettings

        self.url = url
        self._options = options
        settings = AmqpSettings.from_url(url)
        shown = redact_url(url)
        self._link = Link(settings.server_url, url, shown)
        self.ledger = Ledger(
            self._link,
            f"{settings.prefix}.ledger",
            max_age=settings.ledger_max_age,
            keep_finished=settings.ledger_max_age,
            timeout=settings.publish_timeout,
            url=url,
            shown=shown,
        )

    async def connect(self) -> None:
        pass  # on first use

    async def close(self) -> None:
        await self._link.close()

    def clone(self) -> LedgerStatusStore:
        return LedgerStatusStore(self.url, self._options)

    async def put(self, batch: Sequence[StoredResult]) -> None:
        entries = [[STATUS, item.task_id, _without_value(item.data)] for item in batch]
        if entries:
            await self.ledger.append(entries)

    async def get(self, task_id: str) -> bytes | None:
        return None  # no values are kept

    async def get_status(self, task_id: str) -> bytes | None:
        await self.ledger.sync()
        record = self.ledger.state.tasks.get(task_id)
        return None if record is None else record.status

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        from conveyor.app import missing_result_store

        raise missing_result_store(self.url)

    async def delete(self, task_id: str) -> None:
        pass

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        await self.ledger.append([[PROGRESS, task_id, progress]])

    async def get_progress(self, task_id: str) -> bytes | None:
        await self.ledger.sync()
        record = self.ledger.state.tasks.get(task_id)
        return None if record is None or record.place != RUNNING else record.progress


def _without_value(data: bytes) -> bytes:
    """An encoded result with its return value left out (the ledger keeps statuses)."""
    try:
        fields = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return data
    if isinstance(fields, dict):
        fields.pop("return_value", None)
        return _encoder.encode(fields)
    return data
