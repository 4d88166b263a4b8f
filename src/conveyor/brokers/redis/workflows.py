"""The Redis broker's workflows (``Capability.WORKFLOWS``). The key layout and every
change of state are in ``lua/workflows.lua`` (prepended to every script): a settlement's
:class:`~conveyor.brokers.base.Follow` is applied by ``ack.lua`` or ``dead_letter.lua``
in the same script as the settlement, so a member's ack, its barrier's count and the
callback it fires are one atomic step. This module encodes a Follow for those scripts
(:func:`follow_args`, shared with the RabbitMQ broker's records) and reads records and
barriers back.

Fan-in costs O(1) per member: an ``HSETNX`` of its outcome, an ``HINCRBY``, and the
fire check (an ``HMGET``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.brokers.base import (
    WORKFLOW_STATES,
    Barrier,
    BarrierState,
    Follow,
    Outgoing,
    WorkflowRecord,
)

if TYPE_CHECKING:
    from conveyor.brokers.redis import RedisBroker

__all__ = [
    "RedisWorkflows",
    "WorkflowReads",
    "abort_answer",
    "barrier_args",
    "follow_args",
    "message_args",
    "record_args",
    "record_of",
]


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def message_args(item: Outgoing) -> list[Any]:
    """A message as the 9 values workflows.lua reads."""
    due = math.ceil(item.not_before * 1000) if item.not_before > 0 else 0
    return [
        item.task_id,
        item.queue,
        item.body,
        item.priority,
        due,
        item.key or "",
        int(item.key_ttl * 1000),
        1 if item.reused_id else 0,
        item.workflow or "",
    ]


def barrier_args(barrier: Barrier) -> list[Any]:
    """A barrier to open as the 14 values workflows.lua reads."""
    size = -1 if barrier.size is None else barrier.size
    return [
        barrier.barrier_id,
        barrier.workflow,
        size,
        int(barrier.partial),
        _ms(barrier.ttl),
        *message_args(barrier.callback),
    ]


def follow_args(follow: Follow | None) -> list[Any]:
    """A follow as workflows.lua reads it from ARGV: a count, then its values."""
    if follow is None:
        return [0]
    join = follow.join
    values: list[Any] = [
        follow.workflow,
        follow.finish or "",
        follow.failed_task,
        len(follow.opens),
        len(follow.publish),
        0 if join is None else 1,
        len(follow.results),
    ]
    for barrier in follow.opens:
        values += barrier_args(barrier)
    for item in follow.publish:
        values += message_args(item)
    if join is not None:
        values += [join.barrier_id, join.index, join.data, int(join.failed)]
    for result in follow.results:
        values += [result.task_id, result.data, -1 if result.ttl is None else _ms(result.ttl)]
    return [len(values), *values]


def record_args(record: WorkflowRecord | None) -> list[Any]:
    """A record to save as the 7 values open_workflow.lua reads (``['']``: none)."""
    if record is None:
        return [""]
    return [
        record.workflow_id,
        record.state,
        repr(record.created_at),
        repr(record.finished_at),
        repr(record.ttl),
        record.info,
        record.failed_task,
    ]


def record_of(workflow_id: str, fields: Sequence[Any]) -> WorkflowRecord | None:
    """A record from its hash's (s, c, f, t, i, x), or None when it has none."""
    state, created, finished, ttl, info, failed = fields
    if state is None:
        return None
    return WorkflowRecord(
        workflow_id=workflow_id,
        state=_text(state),
        created_at=float(created or 0),
        finished_at=float(finished or 0),
        ttl=float(ttl or 0),
        info=bytes(info or b""),
        failed_task=_text(failed or b""),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WorkflowReads:
    """Reads of the workflow keys under ``prefix`` (workflows.lua), on ``client``: the
    Redis broker's, and a RabbitMQ broker's side Redis."""

    def __init__(self, client: Callable[[], Any], prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        key = f"{self._prefix}:wf:{workflow_id}"
        fields = await self._client().hmget(key, ["s", "c", "f", "t", "i", "x"])
        return record_of(workflow_id, fields)

    async def _trimmed(self, states: Sequence[str], take: int) -> list[Any]:
        """Per state, the ids of its newest ``take`` records (0: their number), after
        dropping the index entries of expired records."""
        now_ms = int(time.time() * 1000)
        async with self._client().pipeline(transaction=False) as pipe:
            for state in states:
                key = f"{self._prefix}:workflows:{state}"
                pipe.zremrangebyscore(key, "-inf", now_ms)
                if take:
                    pipe.zrevrange(key, 0, take - 1)
                else:
                    pipe.zcard(key)
            answers = await pipe.execute()
        return list(answers[1::2])

    async def listed(self, state: str | None, limit: int, offset: int) -> list[WorkflowRecord]:
        states = [state] if state else list(WORKFLOW_STATES)
        found = await self._trimmed(states, offset + limit)
        ids = [_text(workflow_id) for ids in found for workflow_id in ids]
        if not ids:
            return []
        async with self._client().pipeline(transaction=False) as pipe:
            for workflow_id in ids:
                pipe.hmget(f"{self._prefix}:wf:{workflow_id}", ["s", "c", "f", "t", "i", "x"])
            rows = await pipe.execute()
        records = [r for i, f in zip(ids, rows, strict=True) if (r := record_of(i, f)) is not None]
        records.sort(key=lambda r: (-r.created_at, r.workflow_id))
        return records[offset : offset + limit]

    async def counts(self) -> dict[str, int]:
        found = await self._trimmed(WORKFLOW_STATES, 0)
        return {state: int(n) for state, n in zip(WORKFLOW_STATES, found, strict=True) if n}

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        key = f"{self._prefix}:bar:{barrier_id}"
        fields = ["w", "n", "j", "f", "ff", "x", "pt"]
        workflow, size, joined, failed, first, fired, partial = await self._client().hmget(
            key, fields
        )
        if workflow is None:
            return None
        return BarrierState(
            barrier_id=barrier_id,
            workflow=_text(workflow),
            size=None if size is None else int(size),
            joined=int(joined or 0),
            failed=int(failed or 0),
            first_failure=None if first is None else int(first),
            fired=fired == b"1",
            partial=partial == b"1",
        )

    async def results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        if stop <= start:
            return []
        key = f"{self._prefix}:bar:{barrier_id}:r"
        found = await self._client().hmget(key, [str(i) for i in range(start, stop)])
        return [None if data is None else bytes(data) for data in found]


def abort_answer(
    workflow_id: str, answer: Sequence[Any]
) -> tuple[WorkflowRecord | None, list[str]]:
    """What abort_workflow.lua returned: the record before, and the tasks still held."""
    if not answer:
        return None, []
    return record_of(workflow_id, answer[:6]), sorted(_text(task_id) for task_id in answer[6:])


class RedisWorkflows(WorkflowReads):
    """The :class:`~conveyor.brokers.base.Workflows` of a :class:`RedisBroker`."""

    def __init__(self, broker: RedisBroker) -> None:
        super().__init__(lambda: broker.client, broker.keys.prefix)
        self._broker = broker

    async def _script(self, name: str, args: list[Any]) -> Any:
        keys = self._broker.keys
        return await self._broker.scripts.call(name, f"{{{keys.prefix}}}", [keys.group, *args])

    async def open(self, record: WorkflowRecord | None, barriers: Sequence[Barrier]) -> None:
        args = [self._prefix, *record_args(record)]
        for barrier in barriers:
            args += barrier_args(barrier)
        await self._script("open_workflow", args)

    async def seal(self, barrier_id: str, size: int) -> None:
        await self._script("seal_barrier", [self._prefix, barrier_id, size])

    async def follow(self, follow: Follow) -> None:
        await self._script("follow", [self._prefix, *follow_args(follow)])

    async def abort(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        keys = self._broker.keys
        answer = await self._broker.scripts.call(
            "abort_workflow", f"{{{keys.prefix}}}", [keys.prefix, workflow_id]
        )
        return abort_answer(workflow_id, answer)
