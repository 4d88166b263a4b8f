"""The NATS broker's workflows (``Capability.WORKFLOWS``): records, barriers and members'
outcomes in three KV buckets, each value changed by compare-and-set on its revision.

=====================  ===================================================================
bucket (names.py)      holds
=====================  ===================================================================
``KV_P_workflows``     ``<workflow>``: its record (``WorkflowRecord``), wrapped with the
                       time it expires (``results.wrap``)
``KV_P_barriers``      ``<barrier>``: its count, size, failures, fired flag, callback, and
                       ``pend``: the members counted whose outcome is not written yet
``KV_P_slots``         ``<barrier>.<index>``: a member's outcome (an encoded Result)
=====================  ===================================================================

JetStream has no transaction over two keys, so a settlement's Follow is applied after its
record moved (``l -> f`` or ``d``, the fenced step) and before the message is acked, as a
sequence of steps each safe to repeat: if the worker dies half way, the message comes
back, the task runs again, and its settlement applies the Follow again.

- **Publish**: every continuation carries an idempotency key (its task id): published
  again, it is published once.
- **Join** (O(1) per member): one CAS counts the member and puts its index in ``pend``;
  its outcome is written to its slot (created once); a second CAS takes it out of
  ``pend``. A member whose index is not in ``pend`` and whose slot exists was counted
  before, and is not counted again; one in ``pend`` resumes after the count.
- **Fire**: the barrier's callback is published (keyed, so repeating it publishes once)
  when every member is counted and none is pending (or, not partial, the first failure
  is written), then the barrier is marked fired. Members of one barrier serialise on its
  key: fan-in on NATS costs two or three CAS round trips per member.
- **Abort**: ``abort_workflow`` marks the record, then lists the workflow's tasks from the
  job records (a scan, as ``queue_depths`` does). A follow reads the record before it
  publishes and again after: a task it published as the abort landed is aborted by the
  follow itself, so none escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import nats.js.errors
from nats.js.kv import KeyValue

from conveyor.brokers.base import (
    Barrier,
    BarrierState,
    Follow,
    Join,
    Outgoing,
    WorkflowRecord,
)
from conveyor.brokers.nats.connection import latest_values
from conveyor.brokers.nats.names import token
from conveyor.brokers.nats.results import unwrap, wrap
from conveyor.errors import BrokerUnavailable

if TYPE_CHECKING:
    from conveyor.brokers.nats.broker import NatsBroker

__all__ = ["NatsWorkflows"]

# how many times a step re-reads a value that moved under it before giving up
_ROUNDS = 200
# how many slots one read of a barrier's outcomes asks for at once
_AT_ONCE = 200


class _Barrier(msgspec.Struct, array_like=True, omit_defaults=True):
    """A barrier's value: workflow, ttl (s), callback (task id, queue, body, priority,
    key, key ttl), size (-1: not sealed), joined, failed, first failure (-1: none), fired,
    partial, and the indexes counted whose outcome is not written yet."""

    w: str
    t: float
    cb: list[Any]
    n: int = -1
    j: int = 0
    f: int = 0
    ff: int = -1
    x: bool = False
    pt: bool = False
    pend: list[int] = []


_encode_barrier = msgspec.msgpack.Encoder().encode
_decode_barrier = msgspec.msgpack.Decoder(_Barrier).decode
_encode_record = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(WorkflowRecord).decode

_CONFLICT = (nats.js.errors.KeyWrongLastSequenceError,)


class NatsWorkflows:
    """The :class:`~conveyor.brokers.base.Workflows` of a :class:`NatsBroker`."""

    def __init__(self, broker: NatsBroker) -> None:
        self._broker = broker

    async def _kv(self, role: str) -> KeyValue:
        return await self._broker.bucket(role)

    # -- records ---------------------------------------------------------------------

    async def _read_record(self, workflow_id: str) -> tuple[WorkflowRecord, int] | None:
        kv = await self._kv("workflows")
        try:
            entry = await kv.get(token(workflow_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        data = unwrap(entry.value)
        if data is None or entry.revision is None:
            return None
        return _decode_record(data), entry.revision

    async def _change_record(
        self, workflow_id: str, change: Callable[[WorkflowRecord], WorkflowRecord | None]
    ) -> tuple[WorkflowRecord | None, WorkflowRecord | None]:
        """CAS ``change`` into the record; (before, after) — after None when unchanged."""
        kv = await self._kv("workflows")
        for _ in range(_ROUNDS):
            found = await self._read_record(workflow_id)
            if found is None:
                return None, None
            record, revision = found
            after = change(record)
            if after is None:
                return record, None
            with contextlib.suppress(*_CONFLICT):
                await kv.update(token(workflow_id), _wrapped_record(after), last=revision)
                return record, after
        raise BrokerUnavailable(f"workflow {workflow_id} kept changing; try again")

    async def open(self, record: WorkflowRecord | None, barriers: Sequence[Barrier]) -> None:
        if record is not None:
            kv = await self._kv("workflows")
            try:
                await kv.create(token(record.workflow_id), _wrapped_record(record))
            except _CONFLICT:
                await self._change_record(
                    record.workflow_id,
                    lambda old: msgspec.structs.replace(old, info=record.info, ttl=record.ttl),
                )
        for barrier in barriers:
            await self._open_barrier(barrier)

    async def state(self, workflow_id: str) -> str | None:
        found = await self._read_record(workflow_id)
        return None if found is None else found[0].state

    async def end(self, workflow_id: str, state: str, failed_task: str) -> None:
        now = time.time()
        await self._change_record(
            workflow_id,
            lambda r: (
                msgspec.structs.replace(r, state=state, finished_at=now, failed_task=failed_task)
                if r.state == "running"
                else None
            ),
        )

    async def abort(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        now = time.time()
        before, after = await self._change_record(
            workflow_id,
            lambda r: (
                msgspec.structs.replace(r, state="aborted", finished_at=now)
                if r.state == "running"
                else None
            ),
        )
        if before is None or after is None:
            return before, []
        held = [
            task_id
            for task_id, record in await self._broker.records()
            if record.w == workflow_id and record.st in ("w", "l", "f")
        ]
        return before, sorted(held)

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        found = await self._read_record(workflow_id)
        return None if found is None else found[0]

    async def _all(self) -> list[WorkflowRecord]:
        pairs = await latest_values(self._broker.js, self._broker.names.bucket("workflows"))
        live = [unwrap(value) for _, value in pairs]
        return [_decode_record(data) for data in live if data is not None]

    async def listed(self, state: str | None, limit: int, offset: int) -> list[WorkflowRecord]:
        await self._kv("workflows")
        found = [r for r in await self._all() if state in (None, r.state)]
        found.sort(key=lambda r: (-r.created_at, r.workflow_id))
        return found[offset : offset + limit]

    async def counts(self) -> dict[str, int]:
        await self._kv("workflows")
        counts: dict[str, int] = {}
        for record in await self._all():
            counts[record.state] = counts.get(record.state, 0) + 1
        return counts

    # -- barriers --------------------------------------------------------------------

    async def _read_barrier(self, barrier_id: str) -> tuple[_Barrier, int] | None:
        kv = await self._kv("barriers")
        try:
            entry = await kv.get(token(barrier_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        data = unwrap(entry.value)
        if data is None or entry.revision is None:
            return None
        return _decode_barrier(data), entry.revision

    async def _change_barrier(
        self, barrier_id: str, change: Callable[[_Barrier], _Barrier | None]
    ) -> _Barrier | None:
        """CAS ``change`` into the barrier (its ttl restarted); the barrier as it is
        after (unchanged when ``change`` gives None), or None when it is gone."""
        kv = await self._kv("barriers")
        for _ in range(_ROUNDS):
            found = await self._read_barrier(barrier_id)
            if found is None:
                return None
            barrier, revision = found
            after = change(barrier)
            if after is None:
                return barrier
            with contextlib.suppress(*_CONFLICT):
                await kv.update(
                    token(barrier_id), wrap(_encode_barrier(after), after.t), last=revision
                )
                return after
        raise BrokerUnavailable(f"the barrier of group {barrier_id} kept changing; try again")

    async def _open_barrier(self, barrier: Barrier) -> None:
        callback = barrier.callback
        value = _Barrier(
            w=barrier.workflow,
            t=barrier.ttl,
            cb=[
                callback.task_id,
                callback.queue,
                callback.body,
                callback.priority,
                callback.key,
                callback.key_ttl,
            ],
            n=-1 if barrier.size is None else barrier.size,
            pt=barrier.partial,
        )
        kv = await self._kv("barriers")
        with contextlib.suppress(*_CONFLICT):  # opened before: kept as it is
            await kv.create(token(barrier.barrier_id), wrap(_encode_barrier(value), barrier.ttl))
        await self._fire(barrier.barrier_id)  # a size of 0 fires at once

    async def seal(self, barrier_id: str, size: int) -> None:
        await self._change_barrier(barrier_id, lambda b: msgspec.structs.replace(b, n=size))
        await self._fire(barrier_id)

    async def join(self, join: Join) -> None:
        index = join.index
        found = await self._read_barrier(join.barrier_id)
        if found is None:
            return  # gone: its ttl passed
        barrier = found[0]
        slots = await self._kv("slots")
        slot = f"{token(join.barrier_id)}.{index}"
        if index not in barrier.pend:
            if await _exists(slots, slot):
                await self._fire(join.barrier_id)  # counted before; it may not have fired
                return

            def count(b: _Barrier) -> _Barrier | None:
                if index in b.pend:
                    return None
                first = index if join.failed and b.ff < 0 else b.ff
                return msgspec.structs.replace(
                    b, j=b.j + 1, f=b.f + int(join.failed), ff=first, pend=[*b.pend, index]
                )

            if await self._change_barrier(join.barrier_id, count) is None:
                return
        with contextlib.suppress(*_CONFLICT):  # written before: the first outcome stays
            await slots.create(slot, wrap(join.data, barrier.t))
        await self._change_barrier(
            join.barrier_id,
            lambda b: (
                msgspec.structs.replace(b, pend=[i for i in b.pend if i != index])
                if index in b.pend
                else None
            ),
        )
        await self._fire(join.barrier_id)

    async def _fire(self, barrier_id: str) -> None:
        """Publish the callback when the barrier is complete (its outcomes all written),
        or failed (not partial, its first failure written); then mark it fired."""
        found = await self._read_barrier(barrier_id)
        if found is None:
            return
        b = found[0]
        complete = 0 <= b.n <= b.j and not b.pend
        failed = b.f > 0 and not b.pt and b.ff >= 0 and b.ff not in b.pend
        if b.x or not (complete or failed):
            return
        if await self.state(b.w) != "aborted":
            task_id, queue, body, priority, key, key_ttl = b.cb
            callback = Outgoing(
                task_id=task_id,
                queue=queue,
                body=bytes(body),
                priority=priority,
                key=key,
                key_ttl=key_ttl,
                workflow=b.w,
            )
            await self._publish(b.w, [callback])
        await self._change_barrier(
            barrier_id, lambda v: None if v.x else msgspec.structs.replace(v, x=True)
        )

    async def _publish(self, workflow: str, items: Sequence[Outgoing]) -> None:
        """Publish workflow tasks (keyed: repeating it publishes once); a task published
        as the workflow was aborted is aborted here, so the abort's listing cannot miss
        it."""
        published = [await self._broker.publish_one(item) for item in items]
        if await self.state(workflow) == "aborted":
            for task_id in published:
                await self._broker.abort(task_id, lambda body, attempts: None)

    async def state_of(self, barrier_id: str) -> BarrierState | None:
        found = await self._read_barrier(barrier_id)
        if found is None:
            return None
        b = found[0]
        return BarrierState(
            barrier_id=barrier_id,
            workflow=b.w,
            size=None if b.n < 0 else b.n,
            joined=b.j,
            failed=b.f,
            first_failure=None if b.ff < 0 else b.ff,
            fired=b.x,
            partial=b.pt,
        )

    async def results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        if await self._read_barrier(barrier_id) is None:
            return [None] * max(stop - start, 0)
        slots = await self._kv("slots")
        out: list[bytes | None] = []
        for first in range(start, stop, _AT_ONCE):
            last = min(first + _AT_ONCE, stop)
            out += await asyncio.gather(
                *(_value(slots, f"{token(barrier_id)}.{i}") for i in range(first, last))
            )
        return out

    # -- follows ---------------------------------------------------------------------

    async def follow(self, follow: Follow) -> None:
        """Apply ``follow``: each step is safe to repeat (see the module docstring)."""
        aborted = await self.state(follow.workflow) == "aborted"
        if not aborted:
            for barrier in follow.opens:
                await self._open_barrier(barrier)
            if follow.publish:
                await self._publish(follow.workflow, follow.publish)
        if follow.join is not None:
            await self.join(follow.join)
        if aborted:
            return  # its tasks' outcomes stay as the abort left them
        if follow.results:
            await self._broker.result_store().put(list(follow.results))
        if follow.finish is not None:
            await self.end(follow.workflow, follow.finish, follow.failed_task)

    async def purge_expired(self) -> int:
        """Delete expired records and barriers (with their outcomes); how many."""
        names, js = self._broker.names, self._broker.js
        purged = 0
        for role in ("workflows", "barriers"):
            kv = await self._kv(role)
            for key, value in await latest_values(js, names.bucket(role)):
                if unwrap(value) is not None:
                    continue
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await kv.purge(key)
                    purged += 1
                if role == "barriers":
                    await self._kv("slots")
                    with contextlib.suppress(nats.js.errors.APIError):
                        await js.purge_stream(
                            f"KV_{names.bucket('slots')}",
                            subject=f"$KV.{names.bucket('slots')}.{key}.>",
                        )
        return purged


def _wrapped_record(record: WorkflowRecord) -> bytes:
    """A record with the time it expires: ttl after it started, or after it ended."""
    until = (record.finished_at or record.created_at) + record.ttl - time.time()
    return wrap(_encode_record(record), max(until, 0.001))


async def _exists(kv: KeyValue, key: str) -> bool:
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return False
    return entry.value is not None


async def _value(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return unwrap(entry.value)
