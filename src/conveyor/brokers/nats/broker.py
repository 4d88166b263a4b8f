"""The NATS JetStream broker.

================  ==================================================================
transition        how (records.py holds the per-task record every step CAS-writes)
================  ==================================================================
publish           key admission (``keys`` KV create) + record create + stream publish
                  (``Nats-Msg-Id``, waits for the JetStream ack) + the sequence noted
fetch             pull requests sized to ``count`` (puller.py), then per message: the
                  record CAS ``w -> l`` (attempt + 1, token = sequence + delivery count)
ack               record ``l -> f``, result stored, AckSync, record deleted
retry             record ``l -> w`` (due time), NAK with the delay
dead_letter       record ``l -> d``, result stored, DLQ stream publish, AckSync
release           record ``l -> w`` (attempt taken back), NAK at once
extend_lease      record checked, ``+WPI`` (lease.py)
reap              nothing to requeue (the server redelivers after AckWait); reconciles
                  messages past MaxDeliver into the DLQ (deadletters.py)
abort             record CAS: waiting -> deleted (+ result); leased -> abort mark,
                  announced on ``<p>.aborts``
workflows         a settlement's Follow, after its record CAS and before its ack, as
                  steps safe to repeat (workflows.py)
================  ==================================================================

Delays: nats-server 2.9 has no scheduled delivery, so a delayed message is stored at
once with its due time in its record; a fetch that meets it early NAKs it with the rest
of the delay, and the server hands it to a waiting fetch when it falls due.

Priorities: a subject and a consumer per priority level of a queue (a *lane*); a fetch
reads the lanes highest first. A publisher notes each level it uses (n != 0) in the
``levels`` bucket before its first message at that level; workers follow that bucket, so
they know every lane. See docs/nats.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from conveyor.brokers import redact_url
from conveyor.brokers.base import (
    AbortResult,
    AbortSignalBuffer,
    Ack,
    Barrier,
    BarrierState,
    BrokerOptions,
    Capability,
    DeadLetter,
    DeadLetterEntry,
    Delivery,
    Follow,
    Outcome,
    Outgoing,
    Place,
    QueueDepth,
    Release,
    Retry,
    Settlement,
    TaskCounts,
    TaskLocation,
    WorkerInfo,
    WorkflowRecord,
)
from conveyor.brokers.nats.connection import (
    TRANSIENT,
    connect,
    ensure_bucket,
    ensure_stream,
    latest_values,
    parse_url,
)
from conveyor.brokers.nats.counts import NatsCounters
from conveyor.brokers.nats.deadletters import DeadLetters
from conveyor.brokers.nats.events import NatsEventStore
from conveyor.brokers.nats.flow import NatsFlow
from conveyor.brokers.nats.lease import Lease, NatsLeaseKeeper, owns, renew_leases
from conveyor.brokers.nats.names import token, untoken
from conveyor.brokers.nats.puller import Puller
from conveyor.brokers.nats.records import GONE, Jobs, Record
from conveyor.brokers.nats.results import NatsResultStore, unwrap, wrap
from conveyor.brokers.nats.schedules import NatsScheduleStore
from conveyor.brokers.nats.workflows import NatsWorkflows
from conveyor.errors import BrokerUnavailable, EnqueueError, PartialPublish
from conveyor.result import AbortOutcome

__all__ = ["NatsBroker"]

log = logging.getLogger("conveyor.nats")

TASK_HEADER = "Conveyor-Task"
_PLACE = {"w": Place.WAITING, "l": Place.LEASED, "f": Place.LEASED, "d": Place.DEAD}
# the longest a fetch waits for messages that are ready now before it lingers instead
PULL_NOW_MAX = 0.25
# how many times a transition re-reads a record that moved under it before giving up
_ROUNDS = 20


class _Key(msgspec.Struct, array_like=True):
    """An idempotency key's holder, and until when it is held (0: while the task lives)."""

    task_id: str
    until: float = 0.0


def _interrupted(record: Record, lease: Lease, outcome: Outcome) -> bool:
    """Whether ``record`` is where this delivery's own ack or dead-lettering left it."""
    if record.s != lease.seq or record.t != lease.delivered:
        return False
    return (record.st == "f" and isinstance(outcome, Ack)) or (
        record.st == "d" and isinstance(outcome, DeadLetter)
    )


class NatsBroker:
    """NATS JetStream broker: ``Conveyor("nats://localhost:4222")``."""

    capabilities = frozenset(
        {
            Capability.QUEUE,
            Capability.PRIORITY,
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

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self.settings = parse_url(url)
        self.names = self.settings.names
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._buckets: dict[str, KeyValue] = {}
        self._jobs: Jobs | None = None
        self._puller: Puller | None = None
        self._lanes: dict[str, str] = {}  # consumer -> queue, registered by this worker
        self._levels: dict[str, set[int]] = {}  # queue -> priority levels n != 0 in use
        self._announced: set[tuple[str, int]] = set()  # levels this process has noted
        self._levels_sub: Subscription | None = None
        self._results = NatsResultStore(url, self._options, broker=self)
        self._schedules = NatsScheduleStore(lambda: self.bucket("schedules"))
        self._events: NatsEventStore | None = None
        self._counters: NatsCounters | None = None
        self._aborts = AbortSignalBuffer()
        self._abort_sub: Subscription | None = None
        self._dead: DeadLetters | None = None
        self._last_reconcile = float("-inf")
        self._workflows = NatsWorkflows(self)
        self._flow = NatsFlow(lambda: self.bucket("flow"))

    def __repr__(self) -> str:
        return f"NatsBroker({redact_url(self.url)!r})"

    # -- lifecycle -----------------------------------------------------------------

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise BrokerUnavailable(f"the NATS broker {redact_url(self.url)} is not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BrokerUnavailable(f"the NATS broker {redact_url(self.url)} is not connected")
        return self._js

    @property
    def jobs(self) -> Jobs:
        assert self._jobs is not None, "connect() first"
        return self._jobs

    @property
    def puller(self) -> Puller:
        assert self._puller is not None, "connect() first"
        return self._puller

    @property
    def dead(self) -> DeadLetters:
        assert self._dead is not None, "connect() first"
        return self._dead

    async def bucket(self, role: str) -> KeyValue:
        """The KV bucket of ``role`` (names.py), created when missing."""
        kv = self._buckets.get(role)
        if kv is None:
            kv = await ensure_bucket(self.js, self.names.bucket(role), self.settings.replicas)
            self._buckets[role] = kv
        return kv

    async def connect(self) -> None:
        if self._nc is not None:
            return
        nc = await connect(
            self.url, self.settings, f"conveyor {self.consumer}", self._on_reconnected
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=10.0)
        try:
            await self._create_layout()
        except BaseException:
            await self.close()
            raise

    async def _create_layout(self) -> None:
        s, names = self.settings, self.names
        await ensure_stream(
            self.js,
            api.StreamConfig(
                name=names.tasks,
                subjects=names.work_subjects,
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                discard=api.DiscardPolicy.NEW,
                max_msgs=s.max_msgs,
                max_bytes=s.max_bytes,
                duplicate_window=s.duplicate_window,
                num_replicas=s.replicas,
            ),
        )
        await ensure_stream(
            self.js,
            api.StreamConfig(
                name=names.dlq,
                subjects=[f"{names.p}.dlq.>"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                duplicate_window=s.duplicate_window,
                num_replicas=s.replicas,
            ),
        )
        await ensure_stream(
            self.js,
            api.StreamConfig(
                name=names.events,
                subjects=[names.events_subject],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                discard=api.DiscardPolicy.OLD,
                max_msgs=self._options.events_max,
                num_replicas=s.replicas,
            ),
        )
        self._jobs = Jobs(await self.bucket("jobs"))
        self._events = NatsEventStore(self.js, names)
        self._counters = NatsCounters(self.js, names, s.replicas, self._options.counts_kept)
        self._puller = Puller(self.nc, names)
        self._dead = DeadLetters(self)
        # no consumer here: AckWait is the lease of the workers that fetch, so only a
        # fetch creates (or updates) a queue's consumer; an enqueue-only client must not
        # impose its own lease setting on them
        await self._follow_levels()
        await self._discover_levels()
        await self.dead.listen()

    async def _follow_levels(self) -> None:
        """Learn the priority levels in use now, and every one noted from now on."""
        bucket = self.names.bucket("levels")
        await self.bucket("levels")
        for key, _ in await latest_values(self.js, bucket):
            self._note_level(key)
        prefix = f"$KV.{bucket}."

        async def on_level(msg: Msg) -> None:
            self._note_level(msg.subject[len(prefix) :])

        # an ordered consumer from the start: it replays what the scan read (harmless)
        # and resumes by itself after a reconnect
        self._levels_sub = await self.js.subscribe(
            f"{prefix}>", cb=on_level, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
        )

    async def _discover_levels(self) -> int:
        """Note the levels that hold messages no client noted (written by hand on
        ``P.q.<queue>.<n>``), so that workers read them; how many were new."""
        info = await self.js.stream_info(self.names.tasks, subjects_filter=f"{self.names.p}.q.*.*")
        found = 0
        for subject in info.state.subjects or {}:
            parts = subject.split(".")
            try:
                queue, level = untoken(parts[2]), int(parts[3])
            except (IndexError, ValueError):
                continue
            if level != 0 and level not in self._levels.get(queue, set()):
                await self._announce(queue, level)  # every client learns it from the bucket
                self._note_level(self.names.level_key(queue, level))
                found += 1
        return found

    def _note_level(self, key: str) -> None:
        try:
            queue, level = self.names.parse_level_key(key)
        except ValueError:
            return
        known = self._levels.setdefault(queue, set())
        if level not in known:
            known.add(level)
            if self._puller is not None:
                self._puller.poke()  # a waiting fetch reads the new lane too

    def _levels_of(self, queue: str) -> list[int]:
        """The queue's priority levels, highest first (0 is always one)."""
        return sorted(self._levels.get(queue, set()) | {0}, reverse=True)

    async def _announce(self, queue: str, priority: int) -> None:
        """Note the level in the ``levels`` bucket before its first message is stored."""
        if priority == 0 or (queue, priority) in self._announced:
            return
        kv = await self.bucket("levels")
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create(self.names.level_key(queue, priority), b"")
        self._announced.add((queue, priority))

    async def _on_reconnected(self) -> None:
        """Wake what waited on the old link: requests and signals may be lost."""
        if self._puller is not None:
            self._puller.forget_requests()
        self._aborts.wake()

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if self._levels_sub is not None:
            with contextlib.suppress(Exception):
                await self._levels_sub.unsubscribe()
            self._levels_sub = None
        if self._dead is not None:
            await self._dead.close()
        if self._puller is not None and nc is not None:
            # prefetched messages nobody claimed: back to the queue at once
            for msg in await self._puller.close():
                with contextlib.suppress(Exception):
                    await nc.publish(msg.reply, b"-NAK")
        self._aborts = AbortSignalBuffer()
        self._abort_sub = None
        await self._results.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
        self._js = self._jobs = self._puller = self._dead = self._events = None
        self._counters = None
        self._buckets.clear()
        self._lanes.clear()
        self._levels.clear()
        self._announced.clear()

    def clone(self) -> NatsBroker:
        return NatsBroker(self.url, self._options)

    def result_store(self) -> NatsResultStore:
        return self._results

    def schedule_store(self) -> NatsScheduleStore:
        return self._schedules

    def event_store(self) -> NatsEventStore:
        if self._events is None:
            raise BrokerUnavailable(f"the NATS broker {redact_url(self.url)} is not connected")
        return self._events

    async def _register_lane(self, queue: str, priority: int) -> str:
        """The durable pull consumer of one priority level of ``queue``, shared by every
        worker (AckWait = lease); returns its name.

        Only a fetch registers a queue: AckWait is one setting of the consumer, so the
        workers' lease must set it, not whichever client connected last. A worker whose
        lease differs from the AckWait it finds sets its own, and says so: every worker
        of a queue should have the same lease."""
        durable = self.names.consumer(queue, priority)
        if durable in self._lanes:
            return durable
        lease = self._options.lease
        with contextlib.suppress(nats.js.errors.NotFoundError):
            found = await self.js.consumer_info(self.names.tasks, durable)
            if found.config.ack_wait is not None and abs(found.config.ack_wait - lease) > 1e-3:
                log.warning(
                    "NATS %s: queue %r had AckWait %.3gs; this worker's lease makes it %.3gs "
                    "(give every worker of a queue the same lease)",
                    redact_url(self.url),
                    queue,
                    found.config.ack_wait,
                    lease,
                )
        config = api.ConsumerConfig(
            durable_name=durable,
            description=queue,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=lease,
            max_deliver=self.settings.max_deliver,
            max_ack_pending=self.settings.max_ack_pending,
            filter_subject=self.names.queue_subject(queue, priority),
        )
        await self.js.add_consumer(self.names.tasks, config)
        self._lanes[durable] = queue
        return durable

    async def known_queues(self) -> list[str]:
        """Every queue with a consumer on the work stream."""
        infos = await self.js.consumers_info(self.names.tasks)
        names = {info.config.description or untoken(info.name) for info in infos}
        return sorted(names | set(self._options.queues))

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        # the stream takes every queue's subject: a consumer created later reads it all
        outcomes = await asyncio.gather(
            *(self._guard(self._publish_one(i)) for i in batch), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if not errors:
            return [str(o) for o in outcomes]
        if len(errors) < len(outcomes) and all(isinstance(e, Exception) for e in errors):
            # the others are published: their callers must not hear "failed" and retry
            raise PartialPublish(
                f"{len(errors)} of {len(batch)} message(s) not published: {errors[0]}",
                outcomes,
            ) from errors[0]
        raise errors[0]

    async def _guard(self, call: Any) -> Any:
        try:
            return await call
        except TRANSIENT as exc:
            raise BrokerUnavailable(
                f"NATS {redact_url(self.url)} did not answer: {type(exc).__name__}"
            ) from exc

    async def publish_one(self, item: Outgoing) -> str:
        """Publish one message; the task id that stands for it (a workflow's follow
        publishes through it)."""
        return await self._publish_one(item)

    async def _publish_one(self, item: Outgoing) -> str:
        if item.key:
            holder = await self._admit_key(item)
            if holder is not None:
                return holder
        record = Record(
            q=item.queue,
            nb=item.not_before,
            k=item.key or "",
            kt=item.key_ttl,
            p=item.priority,
            e=time.time(),
            w=item.workflow or "",
        )
        revision = await self.jobs.create(item.task_id, record)
        if revision is None:
            found = await self.jobs.get(item.task_id)
            if isinstance(found, tuple) and found[0].st != "d":
                return item.task_id  # still waiting or leased: one message, not two
            if isinstance(found, tuple):  # dead: it runs again, from this message
                revision = await self.jobs.update(item.task_id, record, found[1])
                if revision is None:
                    return item.task_id
                await self.dead.remove(found[0].q, item.task_id)
            else:
                revision = await self.jobs.create(item.task_id, record)
                if revision is None:
                    return item.task_id
        try:
            if item.reused_id:
                await self._results.delete(item.task_id)
            await self._announce(item.queue, item.priority)
            seq = await self._store(item.queue, item.task_id, item.body, revision, item.priority)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.jobs.delete(item.task_id, revision)
                if item.key:
                    await self._release_key(item.key, item.task_id)
            raise
        # a claim or abort may have moved the record meanwhile: it knows the sequence then
        await self.jobs.update(item.task_id, msgspec.structs.replace(record, s=seq), revision)
        return item.task_id

    async def _store(
        self, queue: str, task_id: str, body: bytes, revision: int, priority: int = 0
    ) -> int:
        """Publish one message on its priority level's subject and wait for the stream to
        store it; its sequence."""
        headers = {"Nats-Msg-Id": f"{token(task_id)}.{revision}", TASK_HEADER: token(task_id)}
        try:
            ack = await self.js.publish(
                self.names.queue_subject(queue, priority),
                body,
                stream=self.names.tasks,
                headers=headers,
            )
        except nats.js.errors.APIError as exc:
            raise EnqueueError(
                f"NATS stream {self.names.tasks} refused task {task_id} on queue {queue!r}: "
                f"{exc.description} (a full stream refuses new work: raise max_msgs/max_bytes "
                "in the URL, or add workers)"
            ) from exc
        return ack.seq

    async def _admit_key(self, item: Outgoing) -> str | None:
        """Take the idempotency key for this task; the id of its holder if it is held."""
        assert item.key is not None
        kv = await self.bucket("keys")
        name = token(item.key)
        mine = msgspec.msgpack.encode(_Key(item.task_id))
        for _ in range(_ROUNDS):
            try:
                await kv.create(name, mine)
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(name)
            except nats.js.errors.KeyNotFoundError:
                continue
            held = msgspec.msgpack.decode(entry.value or b"", type=_Key)
            if held.task_id == item.task_id or not held.until or held.until > time.time():
                return held.task_id
            try:  # its hold ended: take it over
                await kv.update(name, mine, last=entry.revision)
                return None
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise BrokerUnavailable(f"idempotency key {item.key!r} kept changing; try again")

    async def _end_key(self, record: Record, task_id: str) -> None:
        """The task ended: its key answers for it ``kt`` seconds more."""
        if not record.k:
            return
        kv = await self.bucket("keys")
        held = _Key(task_id, time.time() + max(record.kt, 0.001))
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            entry = await kv.get(token(record.k))
            if msgspec.msgpack.decode(entry.value or b"", type=_Key).task_id == task_id:
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                    await kv.update(
                        token(record.k), msgspec.msgpack.encode(held), last=entry.revision
                    )

    async def _release_key(self, key: str, task_id: str) -> None:
        kv = await self.bucket("keys")
        entry = await kv.get(token(key))
        if msgspec.msgpack.decode(entry.value or b"", type=_Key).task_id == task_id:
            await kv.delete(token(key), last=entry.revision)

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        return list(await self._guard(self._fetch(queues, count, wait)))

    async def _fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        """Queues in the order given, each queue's levels highest first: a lane's
        buffered messages, then (once per fetch) those ready on the server; then one
        waiting request per lane until a message comes or ``wait`` ends."""
        deadline = time.monotonic() + wait
        puller = self.puller
        out: list[Delivery] = []
        pulled: set[str] = set()
        while True:
            lanes: list[str] = []
            for queue in queues:
                for level in self._levels_of(queue):
                    lane = await self._register_lane(queue, level)
                    lanes.append(lane)
                    if len(out) >= count:
                        continue
                    out += await self._claim_buffered([lane], count - len(out))
                    if len(out) < count and lane not in pulled:
                        pulled.add(lane)
                        left = deadline - time.monotonic()
                        await puller.pull_now(lane, count - len(out), min(left, PULL_NOW_MAX))
                        out += await self._claim_buffered([lane], count - len(out))
            if out:
                return out
            left = deadline - time.monotonic()
            if puller.take_interrupt() or left <= 0.001:
                return out
            for lane in lanes:
                await puller.linger(lane, left)
            await puller.wait(lanes, left)

    async def _claim_buffered(self, lanes: Sequence[str], count: int) -> list[Delivery]:
        taken: list[tuple[str, Msg, float]] = []
        for lane in lanes:
            buffer = self.puller.buffer.get(lane)
            while buffer and len(taken) < count:
                msg, received = buffer.popleft()
                taken.append((self._lanes[lane], msg, received))
        claimed = await asyncio.gather(*(self._claim(q, m, r) for q, m, r in taken))
        return [d for d in claimed if d is not None]

    async def _claim(self, queue: str, msg: Msg, received: float) -> Delivery | None:
        """Claim one delivered message through its record, or settle what must not run."""
        meta = msg.metadata
        seq, delivered = meta.sequence.stream, meta.num_delivered
        raw_id = msg.headers.get(TASK_HEADER) if msg.headers else None
        task_id = untoken(raw_id) if raw_id else f"nats-{self.names.tasks}-{seq}"
        for _ in range(_ROUNDS):
            found = await self.jobs.get(task_id)
            if found is GONE:  # acked or aborted: a late copy
                await msg.ack()
                return None
            if found is None:  # written by hand: adopt it, the worker judges the bytes
                record = Record(q=queue, st="l", a=1, s=seq, t=delivered, e=time.time())
                if await self.jobs.create(task_id, record) is None:
                    continue
                return await self._delivery(queue, task_id, msg, record, received)
            assert isinstance(found, tuple)
            record, revision = found
            if record.s and record.s != seq:  # an older message of a task sent again
                await msg.ack()
                return None
            if delivered <= record.t:  # a stale copy: a later delivery owns it
                return None
            if record.st == "d":  # dead-lettered, but its ack was lost: finish the move
                await self.dead.put(task_id, record, msg.data)
                await self._ack_sync(msg.reply)
                return None
            now = time.time()
            if record.st == "w" and record.nb > now + 0.002:
                await msg.nak(delay=record.nb - now)
                return None
            crashed = record.st in ("l", "f")
            claimed = msgspec.structs.replace(
                record,
                st="l",
                a=record.a + 1,
                s=seq,
                t=delivered,
                c=record.c + 1 if crashed else record.c,
            )
            if await self.jobs.update(task_id, claimed, revision) is None:
                continue
            return await self._delivery(queue, task_id, msg, claimed, received)
        return None  # it kept moving: AckWait hands it out again

    async def _delivery(
        self, queue: str, task_id: str, msg: Msg, record: Record, received: float
    ) -> Delivery:
        lease = Lease(record.s, record.t, msg.reply)
        if time.monotonic() - received > self._options.lease / 4:
            # it waited in the buffer: restart its AckWait from now
            await self.nc.publish(msg.reply, b"+WPI")
        return Delivery(
            self,
            queue,
            task_id,
            msg.data,
            record.a,
            lease,
            enqueued_at=record.e,
            crashes=record.c,
            abort_requested=record.x,
        )

    def interrupt_fetch(self) -> None:
        if self._puller is not None:
            self._puller.interrupt()

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        return list(await asyncio.gather(*(self._guard(self._settle(d, o)) for d, o in batch)))

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> bool:
        lease: Lease = delivery.token
        for _ in range(_ROUNDS):
            found = await self.jobs.get(delivery.task_id)
            if not isinstance(found, tuple):
                return False  # settled by another delivery (or aborted)
            record, revision = found
            if _interrupted(record, lease, outcome):
                # this very settlement moved the record, then met a fault (a server
                # restart): its later steps are safe to repeat, so finish them
                await self._apply(delivery, outcome, record, revision)
                return True
            if not owns(record, lease):
                return False  # fenced: another delivery owns the task now
            now = time.time()
            if isinstance(outcome, Ack):
                after = msgspec.structs.replace(record, st="f")
            elif isinstance(outcome, Retry):
                attempts = record.a if outcome.charge else record.a - 1
                after = msgspec.structs.replace(
                    record, st="w", nb=now + outcome.delay, c=0, a=attempts
                )
            elif isinstance(outcome, Release):
                after = msgspec.structs.replace(record, st="w", a=record.a - 1, nb=0.0)
            else:
                assert isinstance(outcome, DeadLetter)
                after = msgspec.structs.replace(record, st="d", r=outcome.reason, ft=now)
            moved = await self.jobs.update(delivery.task_id, after, revision)
            if moved is None:
                continue  # an abort mark landed meanwhile: look again
            await self._apply(delivery, outcome, after, moved)
            return True
        return False

    async def _apply(self, delivery: Delivery, outcome: Outcome, record: Record, rev: int) -> None:
        """The steps after the record said yes (each one safe to repeat after a crash)."""
        lease: Lease = delivery.token
        if isinstance(outcome, Retry):
            delay = max(outcome.delay, 0.0)
            payload = b"-NAK" + (b" " + json.dumps({"delay": int(delay * 1e9)}).encode())
            await self.nc.publish(lease.reply, payload if delay else b"-NAK")
            return
        if isinstance(outcome, Release):
            await self.nc.publish(lease.reply, b"-NAK")
            return
        if outcome.follow is not None:
            # before the ack (a crash here runs the task again, and its follow with it),
            # and before the result, so its waiters find the workflow where it left it
            await self._workflows.follow(outcome.follow)
        if outcome.result is not None:
            await self._results.put([outcome.result])
        if isinstance(outcome, DeadLetter):
            await self.dead.put(delivery.task_id, record, delivery.body)
            await self._ack_sync(lease.reply)
        else:
            await self._ack_sync(lease.reply)
            await self.jobs.delete(delivery.task_id, rev)
        await self._end_key(record, delivery.task_id)

    async def _ack_sync(self, reply: str) -> None:
        """Ack and wait for the server to confirm it (a lost ack would redeliver)."""
        try:
            await self.nc.request(reply, b"+ACK", timeout=2.0)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            # no confirmation: if the ack was lost, the copy delivered again finds the
            # record settled and is acked then
            log.debug("NATS %s: no confirmation of an ack", redact_url(self.url))

    # -- flow control ----------------------------------------------------------------

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        return float(await self._guard(self._flow.take_token(key, rate, burst)))

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        return bool(await self._guard(self._flow.acquire_permit(key, limit, holder, lease)))

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        await self._guard(self._flow.renew_permits(permits, lease))

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        await self._guard(self._flow.release_permits(permits))

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        await self._guard(self._flow.put_marks(marks, ttl))

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        marks: list[str | None] = await self._guard(self._flow.get_marks(names))
        return marks

    # -- leases --------------------------------------------------------------------

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        return list(await self._guard(renew_leases(self.nc, self.jobs, deliveries, seconds)))

    def lease_keeper(self) -> NatsLeaseKeeper:
        return NatsLeaseKeeper(self.url, self.settings)

    async def reap(self) -> int:
        """The server redelivers expired leases itself; this reconciles the messages past
        MaxDeliver into the DLQ (at most once per ``max(reap_interval, 30 s)``)."""
        now = time.monotonic()
        if now - self._last_reconcile < max(self._options.reap_interval, 30.0):
            return 0
        self._last_reconcile = now
        await self._guard(self._discover_levels())
        await self._guard(self._workflows.purge_expired())
        return int(await self._guard(self.dead.reconcile()))

    # -- abort ---------------------------------------------------------------------

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        return AbortOutcome(await self._guard(self._abort(task_id, result)))

    async def _abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        for _ in range(_ROUNDS * 5):
            found = await self.jobs.get(task_id)
            if not isinstance(found, tuple):
                return AbortOutcome.UNKNOWN
            record, revision = found
            if record.st == "d":
                return AbortOutcome.FINISHED
            if record.st in ("l", "f"):
                if not record.x:
                    marked = msgspec.structs.replace(record, x=True)
                    if await self.jobs.update(task_id, marked, revision) is None:
                        continue
                await self.nc.publish(self.names.aborts, task_id.encode())
                return AbortOutcome.SIGNALLED
            if not record.s:  # its publisher is noting the sequence
                await asyncio.sleep(0.01)  # sleep: a round trip of the publisher
                continue
            try:
                body = (await self.js.get_msg(self.names.tasks, record.s)).data or b""
            except nats.js.errors.NotFoundError:
                continue  # claimed and settled meanwhile: the record says so now
            stored = result(body, record.a)
            if not await self.jobs.delete(task_id, revision):
                continue
            if stored is not None:
                await self._results.put([stored])
            await self._end_key(record, task_id)
            with contextlib.suppress(nats.js.errors.APIError, *TRANSIENT):
                await self.js.delete_msg(self.names.tasks, record.s)
            return AbortOutcome.DEQUEUED
        raise BrokerUnavailable(f"could not abort task {task_id}: it kept moving; try again")

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        found = await asyncio.gather(*(self.jobs.get(d.task_id) for d in deliveries))
        return [isinstance(f, tuple) and f[0].x for f in found]

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        if self._abort_sub is None:

            async def on_abort(msg: Msg) -> None:
                self._aborts.add([msg.data.decode(errors="replace")])

            self._abort_sub = await self.nc.subscribe(self.names.aborts, cb=on_abort)
        return await self._aborts.take(timeout)

    # -- inspection ----------------------------------------------------------------

    async def locate(self, task_id: str) -> TaskLocation | None:
        found = await self._guard(self.jobs.get(task_id))
        if not isinstance(found, tuple):
            return None
        return TaskLocation(_PLACE[found[0].st], found[0].a)

    async def records(self) -> list[tuple[str, Record]]:
        """Every job record (an admin scan: one ordered consumer over the bucket)."""
        pairs = await latest_values(self.js, self.names.bucket("jobs"))
        return [(untoken(k), msgspec.msgpack.decode(v, type=Record)) for k, v in pairs]

    async def queue_depths(self) -> list[QueueDepth]:
        counts = {q: [0, 0, 0, 0] for q in await self.known_queues()}
        now = time.time()
        for _, record in await self.records():
            row = counts.setdefault(record.q, [0, 0, 0, 0])
            if record.st == "w":
                row[1 if record.nb > now else 0] += 1
            elif record.st == "d":
                row[3] += 1
            else:
                row[2] += 1
        return [QueueDepth(q, *row) for q, row in sorted(counts.items())]

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        return list(await self.dead.entries(queue, limit, offset))

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        found = await self.jobs.get(entry_id)
        if not isinstance(found, tuple) or found[0].st != "d":
            return None
        return await self.dead.entry(found[0].q, entry_id)

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        moved = 0
        for task_id in entry_ids:
            found = await self.jobs.get(task_id)
            if not isinstance(found, tuple) or found[0].st != "d":
                continue
            record, revision = found
            entry = await self.dead.entry(record.q, task_id)
            if entry is None:
                continue
            fresh = Record(q=record.q, k=record.k, kt=record.kt, p=record.p, e=time.time())
            rev = await self.jobs.update(task_id, fresh, revision)
            if rev is None:
                continue
            await self._announce(record.q, record.p)
            seq = await self._store(record.q, task_id, entry.body, rev, record.p)
            await self.jobs.update(task_id, msgspec.structs.replace(fresh, s=seq), rev)
            await self.dead.remove(record.q, task_id)
            moved += 1
        return moved

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        if entry_ids is None:
            entry_ids = [e.id for e in await self.dead.entries(queue, 1 << 30, 0)]
        deleted = 0
        for task_id in entry_ids:
            found = await self.jobs.get(task_id)
            if not isinstance(found, tuple) or found[0].st != "d":
                continue
            if queue is not None and found[0].q != queue:
                continue
            await self.dead.remove(found[0].q, task_id)
            if await self.jobs.delete(task_id, found[1]):
                deleted += 1
        return deleted

    # -- workers -------------------------------------------------------------------

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        from conveyor.message import encode_value

        kv = await self.bucket("workers")
        if ttl < 0:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await kv.purge(token(info.worker_id))
            return
        await kv.put(token(info.worker_id), wrap(encode_value(info), ttl))

    async def workers(self) -> list[WorkerInfo]:
        kv = await self.bucket("workers")
        alive: list[WorkerInfo] = []
        expired: list[str] = []
        for key, value in await latest_values(self.js, self.names.bucket("workers")):
            data = unwrap(value)
            if data is None:
                expired.append(key)
            else:
                alive.append(msgspec.msgpack.decode(data, type=WorkerInfo))
        for key in expired:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await kv.purge(key)
        return alive

    # -- workflows (workflows.py) ----------------------------------------------------

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        await self._guard(self._workflows.open(record, barriers))

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        await self._guard(self._workflows.seal(barrier_id, size))

    async def apply_follow(self, follow: Follow) -> None:
        await self._guard(self._workflows.follow(follow))

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        state: BarrierState | None = await self._guard(self._workflows.state_of(barrier_id))
        return state

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        return list(await self._guard(self._workflows.results(barrier_id, start, stop)))

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        before, held = await self._guard(self._workflows.abort(workflow_id))
        return before, held

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        record: WorkflowRecord | None = await self._guard(self._workflows.get(workflow_id))
        return record

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        return list(await self._guard(self._workflows.listed(state, limit, offset)))

    async def workflow_counts(self) -> dict[str, int]:
        return dict(await self._guard(self._workflows.counts()))

    # -- counts (counts.py) ----------------------------------------------------------

    @property
    def counters(self) -> NatsCounters:
        if self._counters is None:
            raise BrokerUnavailable(f"the NATS broker {redact_url(self.url)} is not connected")
        return self._counters

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        await self._guard(self.counters.record(counts, self._options.clock.now()))

    async def counts(self, since: float) -> TaskCounts:
        counts: TaskCounts = await self._guard(self.counters.read(since, self._options.clock.now()))
        return counts
