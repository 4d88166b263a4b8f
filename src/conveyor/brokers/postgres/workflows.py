"""The PostgreSQL broker's workflows (``Capability.WORKFLOWS``): records, barriers and
their slots (``migrations/0003_workflows.sql``), through the named statements of
``queries.sql``.

Every function here runs inside a transaction its caller holds: a settlement's
:class:`~conveyor.brokers.base.Follow` is applied in the transaction of the settlement's
own ``finish`` statement, so the ack, what it publishes, the barrier's count and the
callback it fires commit together or not at all.

Under READ COMMITTED, two members finishing at once serialise on their barrier's row
(``join`` updates it): the second counts from the first's committed count, so exactly one
of them sees the barrier complete and fires it (``fire_barrier``, ``fired = false ->
true``). A follow reads its workflow's state ``FOR SHARE``: an abort (which updates that
row) waits for what the follow publishes, and lists it; or the follow sees the abort and
publishes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from conveyor.brokers.base import (
    Barrier,
    BarrierState,
    Follow,
    Join,
    Outgoing,
    WorkflowRecord,
)
from conveyor.brokers.postgres.connection import as_bytes
from conveyor.brokers.postgres.queries import Queries
from conveyor.brokers.postgres.results import result_columns

__all__ = [
    "Publish",
    "abort_workflow",
    "apply_follow",
    "barrier_results",
    "barrier_state",
    "count_workflows",
    "get_workflow",
    "list_workflows",
    "open_workflow",
    "seal_barrier",
]

Publish = Callable[[asyncpg.Connection, list[Outgoing]], Awaitable[list[str]]]
"""The broker's publish on a connection (inside the caller's transaction)."""


async def apply_follow(
    conn: asyncpg.Connection, q: Queries, follow: Follow, publish: Publish
) -> None:
    """Apply ``follow`` in the caller's transaction, results included."""
    aborted = await _state(conn, q, follow.workflow) == "aborted"
    if not aborted:
        for barrier in follow.opens:
            await _open_barrier(conn, q, barrier, publish)
        if follow.publish:
            await publish(conn, list(follow.publish))
    if follow.join is not None:
        await _join(conn, q, follow.join, publish)
    if aborted:
        return  # its tasks' outcomes stay as the abort left them
    if follow.results:
        await conn.fetchval(q.put_results, *result_columns(follow.results))
    if follow.finish is not None:
        await conn.execute(q.finish_workflow, follow.workflow, follow.finish, follow.failed_task)


async def follow_alone(
    conn: asyncpg.Connection, q: Queries, follow: Follow, publish: Publish
) -> None:
    """:func:`apply_follow` in a transaction of its own (``Workflows.apply_follow``)."""
    async with conn.transaction():
        await apply_follow(conn, q, follow, publish)


async def open_workflow(
    conn: asyncpg.Connection,
    q: Queries,
    record: WorkflowRecord | None,
    barriers: Sequence[Barrier],
    publish: Publish,
) -> None:
    async with conn.transaction():
        if record is not None:
            await conn.execute(
                q.save_workflow,
                record.workflow_id,
                record.state,
                record.created_at,
                record.finished_at,
                record.ttl,
                record.info,
                record.failed_task,
            )
        for barrier in barriers:
            await _open_barrier(conn, q, barrier, publish)


async def seal_barrier(
    conn: asyncpg.Connection, q: Queries, barrier_id: str, size: int, publish: Publish
) -> None:
    async with conn.transaction():
        if await conn.fetchval(q.seal_barrier, barrier_id, size) is not None:
            await _fire(conn, q, barrier_id, publish)


async def barrier_state(
    conn: asyncpg.Connection, q: Queries, barrier_id: str
) -> BarrierState | None:
    row = await conn.fetchrow(q.get_barrier, barrier_id)
    if row is None:
        return None
    workflow, size, joined, failed, first_failure, fired, partial = row
    return BarrierState(barrier_id, workflow, size, joined, failed, first_failure, fired, partial)


async def barrier_results(
    conn: asyncpg.Connection, q: Queries, barrier_id: str, start: int, stop: int
) -> list[bytes | None]:
    rows = await conn.fetch(q.barrier_results, barrier_id, start, stop)
    found = {row[0]: as_bytes(row[1]) for row in rows}
    return [found.get(index) for index in range(start, stop)]


async def abort_workflow(
    conn: asyncpg.Connection, q: Queries, workflow_id: str
) -> tuple[WorkflowRecord | None, list[str]]:
    async with conn.transaction():
        row = await conn.fetchrow(q.lock_workflow, workflow_id)
        record = None if row is None else _record(row)
        if record is None or record.state != "running":
            return record, []
        await conn.execute(q.abort_workflow, workflow_id)
        # a statement of its own: it sees what a follow that held the row committed
        rows = await conn.fetch(q.workflow_tasks, workflow_id)
    return record, [row[0] for row in rows]


async def get_workflow(
    conn: asyncpg.Connection, q: Queries, workflow_id: str
) -> WorkflowRecord | None:
    row = await conn.fetchrow(q.get_workflow, workflow_id)
    return None if row is None else _record(row)


async def list_workflows(
    conn: asyncpg.Connection, q: Queries, state: str | None, limit: int, offset: int
) -> list[WorkflowRecord]:
    return [_record(row) for row in await conn.fetch(q.list_workflows, state, limit, offset)]


async def count_workflows(conn: asyncpg.Connection, q: Queries) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in await conn.fetch(q.count_workflows)}


async def _state(conn: asyncpg.Connection, q: Queries, workflow_id: str) -> str | None:
    state: str | None = await conn.fetchval(q.workflow_state, workflow_id)
    return state


async def _open_barrier(
    conn: asyncpg.Connection, q: Queries, barrier: Barrier, publish: Publish
) -> None:
    callback = barrier.callback
    opened = await conn.fetchval(
        q.open_barrier,
        barrier.barrier_id,
        barrier.workflow,
        barrier.size,
        barrier.partial,
        barrier.ttl,
        callback.task_id,
        callback.queue,
        callback.body,
        callback.priority,
        callback.key,
        callback.key_ttl,
    )
    if opened is not None:
        await _fire(conn, q, barrier.barrier_id, publish)  # a size of 0 fires at once


async def _join(conn: asyncpg.Connection, q: Queries, join: Join, publish: Publish) -> None:
    counted = await conn.fetchval(q.join, join.barrier_id, join.index, join.data, join.failed)
    if counted is not None:  # else: that member joined before, or the barrier is gone
        await _fire(conn, q, join.barrier_id, publish)


async def _fire(conn: asyncpg.Connection, q: Queries, barrier_id: str, publish: Publish) -> None:
    row = await conn.fetchrow(q.fire_barrier, barrier_id)
    if row is None:
        return  # not complete yet, or fired before
    workflow, task_id, queue, body, priority, key, key_ttl = row
    if await _state(conn, q, workflow) == "aborted":
        return
    callback = Outgoing(
        task_id=task_id,
        queue=queue,
        body=as_bytes(body),
        priority=priority,
        key=key,
        key_ttl=key_ttl,
        workflow=workflow,
    )
    await publish(conn, [callback])


def _record(row: asyncpg.Record) -> WorkflowRecord:
    workflow_id, state, created_at, finished_at, ttl, info, failed_task = row
    return WorkflowRecord(
        workflow_id=workflow_id,
        state=state,
        created_at=created_at,
        finished_at=finished_at,
        ttl=ttl,
        info=as_bytes(info),
        failed_task=failed_task,
    )
