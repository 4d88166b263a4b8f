"""The job record: what JetStream cannot say about a message, kept in the ``jobs`` KV
bucket under the task id, and changed only by compare-and-set on its revision.

A stream message has no owner and JetStream accepts an ack for it from any earlier
delivery; the record is what fences. Every transition reads the record, checks the lease
token (stream sequence and delivery count) and writes the new record with
``Nats-Expected-Last-Subject-Sequence``: two workers, or a worker and an abort, that race
on one task cannot both win.

======  ======================================================================
state   meaning
======  ======================================================================
``w``   waiting: ready, delayed (``nb`` in the future) or waiting for a retry
``l``   leased: claimed by the delivery ``(s, t)``
``f``   finishing: its owner acked; the result is being stored (deleted next)
``d``   dead: in the dead-letter stream with reason ``r``
======  ======================================================================

An acked or aborted task's record is deleted; the delete marker tells a late copy of its
message from a message nobody published through Conveyor.
"""

from __future__ import annotations

from typing import Literal

import msgspec
import nats.js.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from conveyor.brokers.nats.names import token

__all__ = ["Jobs", "Record"]

State = Literal["w", "l", "f", "d"]


class Record(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """One task's state (see the module docstring)."""

    q: str
    st: State = "w"
    a: int = 0  # started attempts
    s: int = 0  # stream sequence of its message (0: not known yet)
    t: int = 0  # delivery count of the current lease
    c: int = 0  # leases in a row that expired unsettled
    x: bool = False  # abort mark
    nb: float = 0.0  # not before (Unix time)
    k: str = ""  # idempotency key
    kt: float = 0.0  # key ttl
    p: int = 0  # priority
    e: float = 0.0  # enqueued at
    r: str = ""  # dead: reason
    ft: float = 0.0  # dead: failed at
    w: str = ""  # the workflow it belongs to (abort_workflow lists its tasks by it)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode

# "wrong last sequence": someone else changed the record first
_CONFLICT = (10071, 10164)


class Gone:
    """A deleted record (the task was acked or aborted)."""


GONE = Gone()


class Jobs:
    """Compare-and-set access to job records."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, task_id: str) -> tuple[Record, int] | Gone | None:
        """(record, revision); :data:`GONE` after a delete; None if never written."""
        try:
            entry = await self.kv.get(token(task_id))
        except nats.js.errors.KeyNotFoundError as exc:
            return GONE if getattr(exc, "op", None) in (KV_DEL, KV_PURGE) else None
        if entry.value is None or entry.revision is None:
            return None
        return _decode(entry.value), entry.revision

    async def create(self, task_id: str, record: Record) -> int | None:
        """Write a record where there is none (or a deleted one); None if one exists."""
        try:
            return await self.kv.create(token(task_id), _encode(record))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def update(self, task_id: str, record: Record, revision: int) -> int | None:
        """Replace the record if it is still at ``revision``; None if it moved."""
        try:
            return await self.kv.update(token(task_id), _encode(record), last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    async def delete(self, task_id: str, revision: int | None = None) -> bool:
        """Delete the record (only at ``revision`` when given); False if it moved."""
        try:
            await self.kv.delete(token(task_id), last=revision)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _CONFLICT:
                return False
            raise
        return True
