"""The SQLite broker's workflows (``Capability.WORKFLOWS``): records, barriers and their
slots, in the tables of ``schema.sql``, through the named statements of ``queries.sql``.

Every function here runs on the database thread, inside a transaction its caller holds:
a settlement's :class:`~conveyor.brokers.base.Follow` is applied in the settlement's own
``BEGIN IMMEDIATE`` transaction, so the ack, what it publishes, the barrier's count and
the callback it fires commit together or not at all.

A join is counted only if its slot was empty (``join_slot`` inserts nothing over a taken
one), and a barrier fires only on the ``fired = 0 -> 1`` update, which one transaction
makes: a crash at any point neither loses the callback nor publishes it twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from conveyor.brokers.base import (
    Barrier,
    BarrierState,
    Follow,
    Join,
    Outgoing,
    StoredResult,
    WorkflowRecord,
)
from conveyor.brokers.sqlite.connection import as_bytes, snapshot, transaction
from conveyor.brokers.sqlite.queries import QUERIES

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

Publish = Callable[[sqlite3.Connection, Sequence[Outgoing], float, set[str]], list[str]]
"""The broker's publish inside a transaction: ``publish(conn, batch, now, touched)``
inserts the messages (keys honoured) and adds the queues it made work ready in."""


def apply_follow(
    conn: sqlite3.Connection,
    follow: Follow,
    now: float,
    publish: Publish,
    touched: set[str],
    results: list[StoredResult],
) -> None:
    """Apply ``follow`` in the caller's transaction; its results go to ``results`` (the
    caller stores them with its own)."""
    aborted = _state(conn, follow.workflow, now) == "aborted"
    if not aborted:
        for barrier in follow.opens:
            _open_barrier(conn, barrier, now, publish, touched)
        if follow.publish:
            publish(conn, follow.publish, now, touched)
    if follow.join is not None:
        _join(conn, follow.join, now, publish, touched)
    if aborted:
        return  # its tasks' outcomes stay as the abort left them
    results.extend(follow.results)
    if follow.finish is not None:
        params = {
            "workflow_id": follow.workflow,
            "state": follow.finish,
            "failed_task": follow.failed_task,
            "now": now,
        }
        conn.execute(QUERIES.finish_workflow, params)


def open_workflow(
    conn: sqlite3.Connection,
    record: WorkflowRecord | None,
    barriers: Sequence[Barrier],
    now: float,
    publish: Publish,
    touched: set[str],
) -> None:
    with transaction(conn):
        if record is not None:
            conn.execute(
                QUERIES.save_workflow,
                {
                    "workflow_id": record.workflow_id,
                    "state": record.state,
                    "created_at": record.created_at,
                    "finished_at": record.finished_at,
                    "ttl": record.ttl,
                    "info": record.info,
                    "failed_task": record.failed_task,
                    "expires_at": (record.finished_at or record.created_at) + record.ttl,
                },
            )
        for barrier in barriers:
            _open_barrier(conn, barrier, now, publish, touched)


def seal_barrier(
    conn: sqlite3.Connection,
    barrier_id: str,
    size: int,
    now: float,
    publish: Publish,
    touched: set[str],
) -> None:
    with transaction(conn):
        params = {"barrier_id": barrier_id, "size": size, "now": now}
        if conn.execute(QUERIES.seal_barrier, params).rowcount:
            _fire(conn, barrier_id, now, publish, touched)


def follow_alone(
    conn: sqlite3.Connection,
    follow: Follow,
    now: float,
    publish: Publish,
    touched: set[str],
) -> list[StoredResult]:
    """:func:`apply_follow` in a transaction of its own (``Workflows.apply_follow``)."""
    results: list[StoredResult] = []
    with transaction(conn):
        apply_follow(conn, follow, now, publish, touched, results)
        if results:
            from conveyor.brokers.sqlite.results import store_results

            store_results(conn, results, now)
    return results


def barrier_state(conn: sqlite3.Connection, barrier_id: str, now: float) -> BarrierState | None:
    row = conn.execute(QUERIES.get_barrier, {"barrier_id": barrier_id, "now": now}).fetchone()
    if row is None:
        return None
    workflow, size, joined, failed, first_failure, fired, partial = row
    return BarrierState(
        barrier_id, workflow, size, joined, failed, first_failure, bool(fired), bool(partial)
    )


def barrier_results(
    conn: sqlite3.Connection, barrier_id: str, start: int, stop: int, now: float
) -> list[bytes | None]:
    params = {"barrier_id": barrier_id, "start": start, "stop": stop, "now": now}
    found = {idx: as_bytes(data) for idx, data in conn.execute(QUERIES.barrier_results, params)}
    return [found.get(index) for index in range(start, stop)]


def abort_workflow(
    conn: sqlite3.Connection, workflow_id: str, now: float
) -> tuple[WorkflowRecord | None, list[str]]:
    with transaction(conn):
        record = _record(conn, workflow_id, now)
        if record is None or record.state != "running":
            return record, []
        conn.execute(QUERIES.abort_workflow, {"workflow_id": workflow_id, "now": now})
        rows = conn.execute(QUERIES.workflow_tasks, {"workflow_id": workflow_id}).fetchall()
    return record, [str(row[0]) for row in rows]


def get_workflow(conn: sqlite3.Connection, workflow_id: str, now: float) -> WorkflowRecord | None:
    return _record(conn, workflow_id, now)


def list_workflows(
    conn: sqlite3.Connection, state: str | None, limit: int, offset: int, now: float
) -> list[WorkflowRecord]:
    params = {"state": state, "limit": limit, "offset": offset, "now": now}
    return [_row_record(row) for row in conn.execute(QUERIES.list_workflows, params)]


def count_workflows(conn: sqlite3.Connection, now: float) -> dict[str, int]:
    with snapshot(conn):
        return {str(state): n for state, n in conn.execute(QUERIES.count_workflows, {"now": now})}


def _state(conn: sqlite3.Connection, workflow_id: str, now: float) -> str | None:
    row = conn.execute(QUERIES.workflow_state, {"workflow_id": workflow_id, "now": now}).fetchone()
    return None if row is None else str(row[0])


def _open_barrier(
    conn: sqlite3.Connection, barrier: Barrier, now: float, publish: Publish, touched: set[str]
) -> None:
    callback = barrier.callback
    params = {
        "barrier_id": barrier.barrier_id,
        "workflow": barrier.workflow,
        "size": barrier.size,
        "partial": int(barrier.partial),
        "ttl": barrier.ttl,
        "now": now,
        "callback_id": callback.task_id,
        "callback_queue": callback.queue,
        "callback_body": callback.body,
        "callback_priority": callback.priority,
        "callback_key": callback.key,
        "callback_key_ttl": callback.key_ttl,
    }
    if conn.execute(QUERIES.open_barrier, params).rowcount:
        _fire(conn, barrier.barrier_id, now, publish, touched)  # a size of 0 fires at once


def _join(
    conn: sqlite3.Connection, join: Join, now: float, publish: Publish, touched: set[str]
) -> None:
    slot = {"barrier_id": join.barrier_id, "idx": join.index, "data": join.data, "now": now}
    if conn.execute(QUERIES.join_slot, slot).rowcount != 1:
        return  # that member joined before, or the barrier is gone
    count = {"barrier_id": join.barrier_id, "idx": join.index, "failed": int(join.failed)}
    conn.execute(QUERIES.count_join, {**count, "now": now})
    _fire(conn, join.barrier_id, now, publish, touched)


def _fire(
    conn: sqlite3.Connection, barrier_id: str, now: float, publish: Publish, touched: set[str]
) -> None:
    row = conn.execute(QUERIES.fire_barrier, {"barrier_id": barrier_id, "now": now}).fetchone()
    if row is None:
        return  # not complete yet, or fired before
    workflow, task_id, queue, body, priority, key, key_ttl = row
    if _state(conn, workflow, now) == "aborted":
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
    publish(conn, [callback], now, touched)


def _record(conn: sqlite3.Connection, workflow_id: str, now: float) -> WorkflowRecord | None:
    row = conn.execute(QUERIES.get_workflow, {"workflow_id": workflow_id, "now": now}).fetchone()
    return None if row is None else _row_record(row)


def _row_record(row: Sequence[object]) -> WorkflowRecord:
    workflow_id, state, created_at, finished_at, ttl, info, failed_task = row
    return WorkflowRecord(
        workflow_id=str(workflow_id),
        state=str(state),
        created_at=float(created_at),  # type: ignore[arg-type]
        finished_at=float(finished_at),  # type: ignore[arg-type]
        ttl=float(ttl),  # type: ignore[arg-type]
        info=as_bytes(info),
        failed_task=str(failed_task),
    )
