"""The RabbitMQ broker: messages in RabbitMQ, task records in Redis.

============  ================================================================
transition    RabbitMQ, then (or before) the records (``lua/``)
============  ================================================================
publish       register.lua admits, then a persistent, mandatory, confirmed
              publish (to the delay cascade when due later)
fetch         consumers push into the inbox; claim.lua starts the attempts
ack           settle.lua (result stored, record finished), then basic.ack
retry         publish the next copy (delayed), settle.lua, then basic.ack; an
              uncharged one (a flow-control deferral) gives the attempt back
dead_letter   publish to ``<queue>.dlq`` with the reason, settle.lua, basic.ack
release       settle.lua (attempt taken back), then basic.nack(requeue)
extend_lease  this process's lease clock (RabbitMQ holds the message for us)
reap          basic.nack(requeue) of our deliveries whose lease ran out
abort         abort.lua (a waiting task's message is dropped when it surfaces)
workflows     settle.lua applies a Follow with the record's change: what comes
              next is registered and put in an outbox, then published (a copy
              never confirmed is sent again by reap, republish.lua)
flow control  token buckets, leased semaphores and marks in the Redis store, by
              the Redis broker's own scripts (``FLOW``; not in the ledger mode)
============  ================================================================

Leases. RabbitMQ keeps a delivered message for its consumer until the consumer's
channel dies (a killed or frozen worker: socket closed, heartbeat missed), then requeues
it: that is the lease between processes. Within a process, a lease that is not renewed
runs out on the worker's clock, and :meth:`RabbitMQBroker.reap` hands the message back.
Every attempt gets a token in its record; a settlement whose token is stale changes
nothing (fencing), and a redelivered copy of a finished, dead or aborted task is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiormq
from pamqp import commands as spec

from conveyor.brokers import redact_url
from conveyor.brokers.base import (
    AbortResult,
    Ack,
    Barrier,
    BarrierState,
    BrokerOptions,
    Capability,
    DeadLetter,
    DeadLetterEntry,
    Delivery,
    Follow,
    Outgoing,
    QueueDepth,
    Release,
    Retry,
    Settlement,
    TaskCounts,
    TaskLocation,
    WorkerInfo,
    WorkflowRecord,
)
from conveyor.brokers.rabbitmq.connection import Link, Session, unavailable
from conveyor.brokers.rabbitmq.consume import Consumers, Inbox, Incoming
from conveyor.brokers.rabbitmq.ledger import (
    FINISHED_KEEP,
    Ledger,
    LedgerRecords,
    LedgerStatusStore,
)
from conveyor.brokers.rabbitmq.records import (
    NoRecords,
    Pending,
    Records,
    RedisRecords,
    Settle,
    due_ms,
)
from conveyor.brokers.rabbitmq.settings import AmqpSettings
from conveyor.brokers.rabbitmq.topology import TARGET, Names, Topology, delay_headers
from conveyor.clock import FaultPause
from conveyor.errors import BrokerUnavailable, ConfigurationError, PartialPublish
from conveyor.result import AbortOutcome

if TYPE_CHECKING:
    from conveyor.brokers.redis import RedisBroker, RedisResultStore
    from conveyor.brokers.redis.events import RedisEventStore
    from conveyor.brokers.redis.schedules import RedisScheduleStore

__all__ = ["RabbitMQBroker", "RabbitMQResultStore"]

log = logging.getLogger("conveyor.rabbitmq")

# headers Conveyor writes on every message
COPY, QUEUE, PRIORITY, ATTEMPTS, DUE = (
    "x-conveyor-copy",
    "x-conveyor-queue",
    "x-conveyor-priority",
    "x-conveyor-attempts",
    "x-conveyor-due",
)
# and on dead letters
REASON, FAILED_AT = "x-conveyor-reason", "x-conveyor-failed-at"
# a message that surfaces more than this before its due time is delayed again
EARLY_MS = 50
# per-queue consumer timeouts arrived in RabbitMQ 3.12
CONSUMER_TIMEOUT_SINCE = (3, 12)
# a workflow message registered by a settlement and not confirmed by RabbitMQ this long
# after is published again by a reap (its worker died between the two steps)
OUTBOX_GRACE = 30.0
_RECORDS_SCHEMES = ("redis", "rediss")

_ALL = frozenset(
    {
        Capability.QUEUE,
        Capability.ABORT,
        Capability.ADMIN,
        Capability.RESULTS,
        Capability.SCHEDULES,
        Capability.EVENTS,
        Capability.COUNTS,
        Capability.WORKFLOWS,
        Capability.FLOW,
    }
)


@dataclass(eq=False, slots=True)
class Held:
    """A delivery this process holds: its message, the record's token and copy, and
    when its lease runs out (the worker's monotonic clock)."""

    incoming: Incoming
    token: int
    copy: int
    expires: float


class RabbitMQBroker:
    """RabbitMQ broker: ``Conveyor("amqp://guest:guest@localhost:5672/",
    results="redis://localhost:6379/0")``.

    With a Redis store for task records (the app's ``results=``, or ``?results=`` in the
    URL) it has every capability but ``PRIORITY`` (RabbitMQ favours priorities on classic
    queues, it does not order strictly); flow control keeps its state in that store.
    Without one it keeps its records in the ledger, a RabbitMQ stream (``ledger.py``):
    status reads and abort work (``QUEUE``, ``ABORT``), results are not kept, and there
    is no flow control (docs/flow-control.md); ``?ledger=false`` leaves plain
    fire-and-forget.
    """

    capabilities: frozenset[Capability] = _ALL

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        self.url = url
        self._options = options = options or BrokerOptions()
        self.settings = settings = AmqpSettings.from_url(url, options.result_url)
        self._shown = redact_url(url)
        self.names = Names(settings.prefix)
        self._topology = Topology(
            self.names,
            settings.quorum,
            settings.delivery_limit,
            settings.max_priority,
            consumer_timeout_ms=None,
        )
        pause = FaultPause(options.clock, first=options.fault_pause, cap=options.fault_pause_max)
        self._link = Link(settings.server_url, url, self._shown, pause)
        self._inbox = Inbox()
        self._consumers = Consumers(self._inbox)
        self._held: set[Held] = set()
        self.declared_queues: set[str] = set()
        self._lock = threading.Lock()  # _held and lease expiries: the lease thread renews
        self._side: RedisBroker | None = None  # records, results, heartbeats, schedules
        self._records: Records = NoRecords()
        self._results: RedisResultStore | None = None
        store = settings.result_url
        if store is not None and urlsplit(store).scheme.lower() in _RECORDS_SCHEMES:
            from conveyor.brokers.redis import RedisBroker, RedisResultStore

            self._side = RedisBroker(
                _with_prefix(store, settings.prefix), replace(options, queues=())
            )
            # results live where results= says (its own ?prefix=), on the side's
            # connection: the app uses this store as the broker's own, and the
            # settlement scripts store results with the records, in one step
            self._results = RedisResultStore(store, options, broker=self._side)
        elif settings.ledger:
            self.capabilities = frozenset({Capability.QUEUE, Capability.ABORT})
            self._records = LedgerRecords(
                Ledger(
                    self._link,
                    self.names.ledger,
                    max_age=settings.ledger_max_age,
                    keep_finished=FINISHED_KEEP,
                    timeout=settings.publish_timeout,
                    url=url,
                    shown=self._shown,
                )
            )
        else:
            self.capabilities = frozenset({Capability.QUEUE})

    def __repr__(self) -> str:
        return f"<RabbitMQBroker {self._shown}>"

    # -- lifecycle -----------------------------------------------------------------

    @property
    def records_or_none(self) -> RedisRecords | None:
        """The task records in Redis, if the broker has a store for them."""
        return self._records if isinstance(self._records, RedisRecords) else None

    @property
    def records(self) -> RedisRecords:
        if not isinstance(self._records, RedisRecords):
            raise ConfigurationError(
                f"the amqp:// broker {self._shown} keeps no task records: give it a Redis "
                "store with results='redis://...'"
            )
        return self._records

    async def connect(self) -> None:
        session = await self._link.session()
        self._check_server(session)
        if self._side is not None and not isinstance(self._records, RedisRecords):
            await self._side.connect()
            assert self._results is not None
            self._records = RedisRecords(
                self._side.client, self.settings.prefix, self._results.keys.prefix
            )
        for queue in self._options.queues:
            await self.declare(session, queue)

    def _check_server(self, session: Session) -> None:
        if session.server_version >= CONSUMER_TIMEOUT_SINCE:
            self._topology.consumer_timeout_ms = int(self.settings.consumer_timeout * 1000)

    def _warn_consumer_timeout(self, session: Session) -> None:
        """Said once per process and server, by the first fetch: only consumers meet it."""
        version = session.server_version
        if version < CONSUMER_TIMEOUT_SINCE and _first_time(
            "consumer-timeout", self.settings.server_url
        ):
            log.warning(
                "RabbitMQ %s at %s has no per-queue consumer timeout (3.12+): a task that "
                "runs longer than the server's consumer_timeout (rabbitmq.conf, 30 min by "
                "default) is requeued and runs again; raise consumer_timeout there "
                "(docs/rabbitmq.md)",
                ".".join(map(str, version)),
                self._shown,
            )

    async def close(self) -> None:
        self._inbox.interrupt()
        self._inbox.drain()
        with self._lock:
            self._held.clear()
        await self._link.close()
        if self._side is not None:
            if self._results is not None:
                await self._results.close()
            await self._side.close()
            self._records = NoRecords()

    def clone(self) -> RabbitMQBroker:
        return RabbitMQBroker(self.url, self._options)

    def status_store(self) -> LedgerStatusStore | None:
        """Where the app keeps terminal statuses when it has no result store: the
        ledger's (None with a Redis store, or ``?ledger=false``)."""
        if isinstance(self._records, LedgerRecords):
            return LedgerStatusStore(self.url, self._options)
        return None

    def result_store(self) -> RedisResultStore:
        self._need_side()
        assert self._results is not None
        return self._results

    def schedule_store(self) -> RedisScheduleStore:
        return self._need_side().schedule_store()

    def event_store(self) -> RedisEventStore:
        return self._need_side().event_store()

    def _need_side(self) -> RedisBroker:
        if self._side is None:
            raise ConfigurationError(
                f"the amqp:// broker {self._shown} keeps no results, schedules or events "
                "of its own: give it a Redis store with results='redis://...'"
            )
        return self._side

    def bands(self, queue: str) -> list[str]:
        """The AMQP work queues of ``queue``, the one consumers take first first."""
        return self._topology.bands(queue)

    async def declare(self, session: Session, queue: str) -> None:
        """Declare ``queue``'s work queue and DLQ (once per process)."""
        try:
            await self._topology.queue(session.channel, queue)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            self._link.drop(session)
            raise ConfigurationError(
                f"RabbitMQ at {self._shown} already has queue {self.names.work(queue)!r} "
                f"with other arguments ({exc}); delete it, or use another prefix= or "
                "queue_type="
            ) from None
        self.declared_queues.add(queue)

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        if not batch:
            return []
        session = await self._link.session()
        for queue in {item.queue for item in batch}:
            await self._guard(session, self.declare(session, queue))
        admitted = await self._records.register(batch)
        sends = [(item, copy) for item, (_, copy) in zip(batch, admitted, strict=True) if copy]
        results = await asyncio.gather(
            *(
                self._send(
                    session,
                    item.queue,
                    item.task_id,
                    item.body,
                    item.priority,
                    copy,
                    due=due_ms(item.not_before),
                )
                for item, copy in sends
            ),
            return_exceptions=True,
        )
        failed = [(item, r) for (item, _), r in zip(sends, results, strict=True) if r is not None]
        if failed:
            failures = {item.task_id for item, _ in failed}
            await self._records.unregister(
                [(item.task_id, copy) for item, copy in sends if item.task_id in failures]
            )
            error = self._publish_error(session, failed[0][1], len(failed), len(batch))
            if len(failures) < len(batch) and isinstance(error, Exception):
                # the others are published: their callers must not hear "failed" and retry
                raise PartialPublish(
                    str(error),
                    [
                        error if item.task_id in failures else task_id
                        for item, (task_id, _) in zip(batch, admitted, strict=True)
                    ],
                ) from error
            raise error
        return [task_id for task_id, _ in admitted]

    def _publish_error(
        self, session: Session, exc: BaseException, failed: int, total: int
    ) -> BaseException:
        if isinstance(exc, BrokerUnavailable | ConfigurationError):
            return exc
        if not isinstance(exc, Exception):
            return exc
        if isinstance(exc, TimeoutError):
            self._link.drop(session)
            reason = (
                f"no publisher confirm within {self.settings.publish_timeout:g} s (is the "
                "server blocking publishers on a memory or disk alarm?)"
            )
            return BrokerUnavailable(
                f"{failed} of {total} message(s) not published to RabbitMQ at "
                f"{self._shown}: {reason}"
            )
        if not isinstance(exc, aiormq.exceptions.PublishError | aiormq.exceptions.DeliveryError):
            self._link.drop(session)
        return unavailable(
            f"{failed} of {total} message(s) not published (unroutable, refused or lost) to",
            exc,
            self.url,
            self._shown,
        )

    async def _send(
        self,
        session: Session,
        queue: str,
        task_id: str,
        body: bytes,
        priority: int,
        copy: int,
        *,
        due: int = 0,
        attempts: int = 0,
        dead: tuple[str, int] | None = None,
    ) -> None:
        """Publish one copy of a task: to its work queue, to the delay cascade when
        ``due`` (ms) is ahead, or to its DLQ with ``dead`` (reason, attempts). Returns
        once RabbitMQ confirmed it; raises when it was refused or unroutable."""
        headers: dict[str, Any] = {COPY: copy, QUEUE: queue}
        if priority:
            headers[PRIORITY] = priority
        if attempts:
            headers[ATTEMPTS] = attempts
        exchange, routing_key = "", self._topology.route(queue, priority)
        if dead is not None:
            reason, tries = dead
            headers |= {REASON: reason, ATTEMPTS: tries, FAILED_AT: int(time.time() * 1000)}
            routing_key = self.names.dlq(queue)
        else:
            delay = due - int(time.time() * 1000)
            if delay > 0:
                top, bits = delay_headers(delay)
                await self._topology.delay_level(session.channel, top)
                headers |= bits
                headers[DUE] = due
                headers[TARGET] = routing_key
                exchange, routing_key = self.names.delay(top), ""
        properties = spec.Basic.Properties(
            message_id=task_id,
            delivery_mode=2,
            headers=headers,
            priority=None if self.settings.quorum else min(max(priority, 0), 255),
        )
        await session.publisher.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=properties,
            mandatory=True,
            timeout=self.settings.publish_timeout,
        )

    async def _guard(self, session: Session, step: Any) -> Any:
        """Await ``step``; an AMQP or socket error ends the session and raises
        :class:`BrokerUnavailable`."""
        try:
            return await step
        except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            self._link.drop(session)
            raise unavailable("lost", exc, self.url, self._shown) from None

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        session = await self._link.session()
        with self._lock:
            held = len(self._held)
        sources: dict[str, str] = {}  # AMQP queue -> Conveyor queue, taken in this order
        for queue in queues:
            await self._guard(session, self.declare(session, queue))
            sources |= dict.fromkeys(self._topology.bands(queue), queue)
        await self._guard(session, self._consumers.ensure(session, sources, count + held))
        self._warn_consumer_timeout(session)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        order = list(sources)
        while True:
            taken = self._inbox.take(order, count)
            if taken:
                out = await self._admit(taken)
                if out:
                    return out
                continue
            if self._inbox.take_interrupt() or not session.alive:
                return []
            left = deadline - loop.time()
            if left <= 0:
                return []
            await self._inbox.wait(left)

    def interrupt_fetch(self) -> None:
        self._inbox.interrupt()

    async def _admit(self, taken: Sequence[Incoming]) -> list[Delivery]:
        """Claim what the consumers delivered: run it, or drop what must not run."""
        rows: list[tuple[str, str, int, int, int]] = []
        kept: list[Incoming] = []
        now = int(time.time() * 1000)
        for item in taken:
            properties = item.message.header.properties
            headers = dict(properties.headers or {})
            task_id = properties.message_id
            if not task_id:
                await self._dead_on_arrival(item)
                continue
            due = header_int(headers.get(DUE))
            if due - now > EARLY_MS:  # beyond the cascade's reach (or a clock ahead)
                await self._delay_again(item, headers, due)
                continue
            rows.append(
                (
                    task_id,
                    item.queue,
                    header_int(headers.get(COPY)),
                    header_int(headers.get(ATTEMPTS)) + header_int(headers.get("x-delivery-count")),
                    header_int(headers.get(PRIORITY)),
                )
            )
            kept.append(item)
        if not rows:
            return []
        try:
            claims = await self._records.claim(rows)
        except BaseException:
            for item in kept:  # nobody will settle these: hand them back
                await _settle_amqp(item, ack=False)
            raise
        out: list[Delivery] = []
        expires = self._options.clock.monotonic() + self._options.lease
        for item, row, claim in zip(kept, rows, claims, strict=True):
            if not claim.run:
                await _settle_amqp(item, ack=True)  # a stale copy, or an ended task
                continue
            held = Held(item, claim.token, claim.copy, expires)
            with self._lock:
                self._held.add(held)
            delivery = Delivery(
                self,
                item.queue,
                row[0],
                item.message.body,
                claim.attempt,
                held,
                crashes=claim.crashes,
                abort_requested=claim.aborted,
            )
            item.session.deliveries.add(delivery)
            if not item.session.alive:  # its channel died during the claim
                delivery.lease_until = float("-inf")
            out.append(delivery)
        return out

    async def _dead_on_arrival(self, item: Incoming) -> None:
        """A message without a message id was not published by Conveyor: to the DLQ,
        byte-identical, under a new id."""
        task_id = f"amqp-{uuid.uuid4().hex}"
        reason = "malformed message: no message id (not published by Conveyor)"
        log.error("dead-lettering a message of queue %s as %s: %s", item.queue, task_id, reason)
        await self._send(
            item.session, item.queue, task_id, item.message.body, 0, 0, dead=(reason, 0)
        )
        await _settle_amqp(item, ack=True)

    async def _delay_again(self, item: Incoming, headers: dict[str, Any], due: int) -> None:
        properties = item.message.header.properties
        assert properties.message_id is not None
        await self._send(
            item.session,
            item.queue,
            properties.message_id,
            item.message.body,
            header_int(headers.get(PRIORITY)),
            header_int(headers.get(COPY)),
            due=due,
            attempts=header_int(headers.get(ATTEMPTS)),
        )
        await _settle_amqp(item, ack=True)

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        """Fence locally (a delivery this process still holds), publish what must exist
        before the records change (a retry's next copy, a dead letter), change the
        records (fenced by token), then ack or nack on RabbitMQ."""
        out = [False] * len(batch)
        with self._lock:
            live = [(i, d, o) for i, (d, o) in enumerate(batch) if d.token in self._held]
        if not live:
            return out
        live_now: list[tuple[int, Delivery, Any, Held]] = []
        first = []
        for i, delivery, outcome in live:
            held: Held = delivery.token
            current = held.incoming.session.alive
            if not current and isinstance(outcome, Retry | DeadLetter):
                # its message was requeued with its channel: it runs again (G2)
                with self._lock:
                    self._held.discard(held)
                continue
            live_now.append((i, delivery, outcome, held))
            if current and isinstance(outcome, Retry | DeadLetter):
                first.append((i, delivery, outcome, held))
        published = await asyncio.gather(
            *(self._publish_next(d, o, h) for _, d, o, h in first), return_exceptions=True
        )
        refused = {i for (i, *_), error in zip(first, published, strict=True) if error is not None}
        for (_, _, _, held), error in zip(first, published, strict=True):
            if error is not None:
                log.warning(
                    "could not publish a settlement's copy (%s); the task runs again", error
                )
                await _settle_amqp(held.incoming, ack=False)
        changes = [
            (i, delivery, outcome, held)
            for i, delivery, outcome, held in live_now
            if i not in refused
        ]
        settles = [_record_change(d, o, h) for _, d, o, h in changes]
        pending: list[Pending] = []
        if isinstance(self._records, RedisRecords):
            answers, pending = await self._records.settle_with(settles)
        else:
            answers = await self._records.settle(settles)
        if pending:  # what the settlements' workflow follows registered
            await self._publish_pending(pending)
        with self._lock:
            for _, _, _, held in live_now:
                self._held.discard(held)
        for (i, _, outcome, held), ok in zip(changes, answers, strict=True):
            out[i] = ok
            if held.incoming.session.alive:
                if isinstance(outcome, Release) and ok:
                    await self._release(held)
                else:  # done, or owned elsewhere: this copy goes
                    await _settle_amqp(held.incoming, ack=True)
        return out

    async def _publish_pending(self, pending: Sequence[Pending]) -> None:
        """Publish workflow messages a script registered, then take the confirmed ones out
        of the outbox; one that fails stays there, and a reap sends it again."""
        session = await self._link.session()
        for queue in {p.queue for p in pending} - self.declared_queues:
            await self._guard(session, self.declare(session, queue))
        sent = await asyncio.gather(
            *(
                self._send(session, p.queue, p.task_id, p.body, p.priority, p.copy, due=p.due)
                for p in pending
            ),
            return_exceptions=True,
        )
        confirmed = [p for p, error in zip(pending, sent, strict=True) if error is None]
        for p, error in zip(pending, sent, strict=True):
            if error is not None:
                log.warning(
                    "could not publish workflow task %s (%s); a reap sends it again",
                    p.task_id,
                    error,
                )
        await self.records.confirm(confirmed)

    async def _publish_next(self, delivery: Delivery, outcome: Any, held: Held) -> None:
        """A retry's next copy, or a dead letter's copy in the DLQ."""
        session = held.incoming.session
        priority = header_int((held.incoming.message.header.properties.headers or {}).get(PRIORITY))
        if isinstance(outcome, Retry):
            due = int(time.time() * 1000) + math.ceil(max(outcome.delay, 0.0) * 1000)
            await self._send(
                session,
                delivery.queue,
                delivery.task_id,
                delivery.body,
                priority,
                held.copy + 1,
                due=due,
                # an uncharged retry gives the attempt back (the headers count it for a
                # task the records do not know)
                attempts=delivery.attempt if outcome.charge else max(delivery.attempt - 1, 0),
            )
        else:
            await self._send(
                session,
                delivery.queue,
                delivery.task_id,
                delivery.body,
                priority,
                held.copy,
                dead=(outcome.reason, delivery.attempt),
            )

    async def _release(self, held: Held) -> None:
        if isinstance(self._records, RedisRecords | LedgerRecords):
            await _settle_amqp(held.incoming, ack=False)  # in its old place
            return
        # no records: RabbitMQ would count the return as a delivery; a copy that says
        # one attempt fewer goes back instead (at the tail)
        item = held.incoming
        properties = item.message.header.properties
        headers = dict(properties.headers or {})
        attempts = header_int(headers.get(ATTEMPTS)) + header_int(headers.get("x-delivery-count"))
        assert properties.message_id is not None
        await self._send(
            item.session,
            item.queue,
            properties.message_id,
            item.message.body,
            header_int(headers.get(PRIORITY)),
            held.copy,
            attempts=attempts,
        )
        await _settle_amqp(item, ack=True)

    # -- leases --------------------------------------------------------------------

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Push the leases of deliveries this process holds (thread-safe). One whose
        channel died is not held any more: RabbitMQ has requeued its message."""
        until = self._options.clock.monotonic() + seconds
        out = []
        with self._lock:
            for delivery in deliveries:
                held = delivery.token
                if held in self._held and held.incoming.session.alive:
                    held.expires = until
                    out.append(True)
                else:
                    out.append(False)
        return out

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        return self.renew(deliveries, seconds)

    def lease_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(self)

    async def reap(self) -> int:
        """Hand back the deliveries of this process whose lease ran out (their worker
        stopped renewing): RabbitMQ redelivers them, and the next claim counts a crash.
        Then mark dead the tasks RabbitMQ dead-lettered itself (``dead.intake``)."""
        now = self._options.clock.monotonic()
        with self._lock:
            expired = [held for held in self._held if held.expires <= now]
            self._held.difference_update(expired)
        for held in expired:
            await _settle_amqp(held.incoming, ack=False)
        if self.records_or_none is not None and self.declared_queues:
            from conveyor.brokers.rabbitmq.admin import bury_dead

            session = await self._link.session()
            await self._guard(session, bury_dead(self))
        records = self.records_or_none
        if records is not None:  # workflow messages whose publish was never confirmed
            cutoff = int(time.time() * 1000) - int(OUTBOX_GRACE * 1000)
            lost = await records.republish(cutoff)
            if lost:
                log.warning("publishing %d workflow task(s) again (never confirmed)", len(lost))
                await self._publish_pending(lost)
        return len(expired)

    # -- abort and status ----------------------------------------------------------

    async def locate(self, task_id: str) -> TaskLocation | None:
        if not isinstance(self._records, RedisRecords | LedgerRecords):
            return None
        return await self._records.locate(task_id)

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        if isinstance(self._records, LedgerRecords):
            return await self._records.abort(task_id, result)
        return await self.records.abort(task_id, result)

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        if not deliveries:
            return []
        if isinstance(self._records, LedgerRecords):
            return self._records.marks([d.task_id for d in deliveries])
        return await self.records.marks([d.task_id for d in deliveries])

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        if isinstance(self._records, LedgerRecords):
            return await self._records.ledger.wait_signal(timeout)
        return await self._need_side().wait_abort_signal(timeout)

    # -- workflows (records.py, lua/) ------------------------------------------------

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        pending = await self.records.open_workflow(record, barriers)
        if pending:
            await self._publish_pending(pending)

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        pending = await self.records.seal_barrier(barrier_id, size)
        if pending:
            await self._publish_pending(pending)

    async def apply_follow(self, follow: Follow) -> None:
        pending = await self.records.follow(follow)
        if pending:
            await self._publish_pending(pending)

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        return await self.records.workflows.barrier(barrier_id)

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        return await self.records.workflows.results(barrier_id, start, stop)

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        return await self.records.abort_workflow(workflow_id)

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        return await self.records.workflows.get(workflow_id)

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        return await self.records.workflows.listed(state, limit, offset)

    async def workflow_counts(self) -> dict[str, int]:
        return await self.records.workflows.counts()

    # -- flow control (the Redis broker's own methods and scripts, in the store) -------

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        return await self._need_side().take_token(key, rate, burst)

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        return await self._need_side().acquire_permit(key, limit, holder, lease)

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        await self._need_side().renew_permits(permits, lease)

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        await self._need_side().release_permits(permits)

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        await self._need_side().put_marks(marks, ttl)

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        return await self._need_side().get_marks(names)

    # -- admin ---------------------------------------------------------------------

    async def queue_depths(self) -> list[QueueDepth]:
        from conveyor.brokers.rabbitmq.admin import queue_depths

        return await queue_depths(self)

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        from conveyor.brokers.rabbitmq.admin import dead_letters

        return await dead_letters(self, queue, limit, offset)

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        from conveyor.brokers.rabbitmq.admin import dead_letters

        found = [e for e in await dead_letters(self, None, 10**9, 0) if e.id == entry_id]
        return found[0] if found else None

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        from conveyor.brokers.rabbitmq.admin import requeue_dead

        return await requeue_dead(self, entry_ids)

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        from conveyor.brokers.rabbitmq.admin import delete_dead

        return await delete_dead(self, entry_ids, queue)

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        await self._need_side().heartbeat(info, ttl)

    async def workers(self) -> list[WorkerInfo]:
        return await self._need_side().workers()

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        await self._need_side().record_counts(counts)  # in Redis, beside the heartbeats

    async def counts(self, since: float) -> TaskCounts:
        return await self._need_side().counts(since)

    # for admin.py: the session, the names, and sending a copy
    async def session(self) -> Session:
        return await self._link.session()

    async def send(
        self, session: Session, queue: str, task_id: str, body: bytes, priority: int, copy: int
    ) -> None:
        if isinstance(self._records, LedgerRecords):
            copy = await self._records.requeue(task_id, queue)
            if not copy:
                return
        await self._send(session, queue, task_id, body, priority, copy)


class LeaseKeeper:
    """The lease thread's renewer: leases are this process's own clock, so it renews
    them in place, under the broker's lock."""

    def __init__(self, broker: RabbitMQBroker) -> None:
        self._broker = broker

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        return self._broker.renew(deliveries, seconds)

    def close(self) -> None:
        pass


class RabbitMQResultStore:
    """``results="amqp://..."`` is refused: RabbitMQ keeps no results."""

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        raise ConfigurationError(
            f"RabbitMQ keeps no results ({redact_url(url)}): give results= a Redis URL "
            "(results='redis://localhost:6379/0')"
        )


def _record_change(delivery: Delivery, outcome: Any, held: Held) -> Settle:
    task_id, token = delivery.task_id, held.token
    if isinstance(outcome, Ack):
        return Settle(task_id, token, "ack", result=outcome.result, follow=outcome.follow)
    if isinstance(outcome, Retry):
        delay = math.ceil(max(outcome.delay, 0.0) * 1000)
        kind = "retry" if outcome.charge else "defer"
        return Settle(task_id, token, kind, held.copy + 1, delivery.body, delay)
    if isinstance(outcome, DeadLetter):
        return Settle(
            task_id, token, "dead", arg=outcome.reason, result=outcome.result, follow=outcome.follow
        )
    return Settle(task_id, token, "release", body=delivery.body)


async def _settle_amqp(item: Incoming, *, ack: bool) -> None:
    """basic.ack, or basic.nack with requeue (``ack=False``), on the channel that delivered
    ``item``; nothing when that channel is gone (RabbitMQ requeued the message with it)."""
    if not item.session.alive:
        return
    channel = item.session.consumer
    try:
        if ack:
            await channel.basic_ack(item.delivery_tag)
        else:
            await channel.basic_nack(item.delivery_tag, requeue=True)
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        # ChannelInvalidStateError: the channel died meanwhile; its messages are requeued
        log.info("could not settle a delivery on a channel that closed: %s", exc)


def header_int(value: Any) -> int:
    """A header's integer value (0 for a missing or foreign one)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _with_prefix(url: str, prefix: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "prefix"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("prefix", prefix)])))


_WARNED: set[tuple[str, str]] = set()


def _first_time(warning: str, server_url: str) -> bool:
    parts = urlsplit(server_url)
    key = (warning, f"{parts.hostname}:{parts.port}")
    if key in _WARNED:
        return False
    _WARNED.add(key)
    return True
