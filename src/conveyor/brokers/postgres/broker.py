"""The PostgreSQL broker: each Delivery transition is one statement of ``queries.sql``.

============  ================================================================
transition    statement (one round trip, atomic)
============  ================================================================
publish       publish (keyless batch); hold_key + publish per keyed message,
              in one transaction
fetch         fetch per queue: SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE
ack           finish (with results: one statement stores them)
dead_letter   finish with a reason
retry         retry
release       release
extend_lease  extend_lease (and on the lease keeper's own connection)
reap          reap, then purge when due
abort         lock_task, then abort (+ finish_key, put_results) or mark_abort
workflows     a Follow: in the settlement's transaction, after finish (join,
              fire_barrier, publish, finish_workflow; workflows.py)
============  ================================================================

Claims use the server's clock for leases and due times, and stamp every claimed row with a
token from a sequence; every settlement or renewal matches ``state = 'leased' AND
lease_token = <token>``, so a zombie (a paused worker whose lease was reaped and claimed
again) changes nothing and gets False. Statements that make work ready notify
``<prefix>:queue`` in the same statement, delivered at COMMIT; a waiting fetch wakes on it,
and looks again every ``fetch_wait`` in case a notification was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import socket
from collections.abc import Mapping, Sequence

import asyncpg
import msgspec

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
from conveyor.brokers.postgres import workflows
from conveyor.brokers.postgres.connection import Database, as_bytes
from conveyor.brokers.postgres.events import PostgresEventStore
from conveyor.brokers.postgres.lease import PostgresLeaseKeeper, extend_leases
from conveyor.brokers.postgres.migrate import Migration, upgrade
from conveyor.brokers.postgres.queries import Queries
from conveyor.brokers.postgres.results import PostgresResultStore, result_columns
from conveyor.brokers.postgres.schedules import PostgresScheduleStore
from conveyor.brokers.postgres.transaction import driver_connection
from conveyor.errors import SettlementRefused
from conveyor.message import MalformedMessage, decode_message
from conveyor.result import AbortOutcome

__all__ = ["PostgresBroker"]

_Claim = tuple[list[Delivery], float | None]

# PostgreSQL refuses a bytea over 1 GB; a result that large is refused for good
_REFUSED = (asyncpg.exceptions.ProgramLimitExceededError,)


class PostgresBroker:
    """The broker on a PostgreSQL database: ``Conveyor("postgresql://user@host/db")``.

    Everything lives in one schema (``?prefix=``, default ``conveyor``), created and
    upgraded at connect (``?migrate=false`` leaves that to ``conveyor db upgrade``).
    Publishing inside the caller's transaction: :meth:`publish_in`.

    >>> broker = PostgresBroker("postgresql://localhost/app?prefix=jobs")
    """

    capabilities = frozenset(Capability)

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._db = Database(url, self._options)
        self._q: Queries = self._db.queries
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._results = PostgresResultStore(url, self._options, database=self._db)
        self._schedules = PostgresScheduleStore(url, self._options, database=self._db)
        self._events = PostgresEventStore(self._db, self._options.events_max)
        self._interrupted = False

    @property
    def schema(self) -> str:
        """The schema that holds this broker's tables (the URL's ``prefix``)."""
        return self._db.schema

    async def connect(self) -> None:
        """Open the pool and the listener, applying missing migrations first."""
        await self._db.open()

    async def close(self) -> None:
        """Close the pool and listener; unsettled deliveries are left to lease expiry."""
        await self._db.close()

    def clone(self) -> PostgresBroker:
        """An unconnected broker on the same schema, for another event loop."""
        return PostgresBroker(self.url, self._options)

    def result_store(self) -> PostgresResultStore:
        """The result store in the same schema, sharing this broker's pool."""
        return self._results

    def schedule_store(self) -> PostgresScheduleStore:
        """The schedule store in the same schema, sharing this broker's pool."""
        return self._schedules

    def event_store(self) -> PostgresEventStore:
        """The event log in the same schema, sharing this broker's pool."""
        return self._events

    async def upgrade_schema(self) -> list[Migration]:
        """Apply the migrations the schema lacks (``conveyor db upgrade``), on a
        connection of its own: the broker need not be connected."""
        conn = await self._db.target.connect()
        try:
            return await upgrade(conn, self.schema)
        finally:
            await conn.close()

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        """Insert the batch (one statement without keys); durable when this returns."""
        if not batch:
            return []
        return await self._db.run(self._publish, list(batch))

    async def publish_in(self, transaction: object, batch: Sequence[Outgoing]) -> list[str]:
        """Insert the batch through the caller's connection, inside its transaction: the
        tasks become visible to workers (and wake them) when it commits, and vanish if it
        rolls back. ``transaction`` is an asyncpg ``Connection`` or a SQLAlchemy
        ``AsyncSession``/``AsyncConnection`` on the asyncpg driver.

        >>> async with conn.transaction():                       # doctest: +SKIP
        ...     await conn.execute("INSERT INTO emails ...")
        ...     await send_email.with_options(connection=conn).kiq(email_id)
        """
        if not batch:
            return []
        conn = await driver_connection(transaction, self.url)
        return await self._publish(conn, list(batch))

    async def _publish(self, conn: asyncpg.Connection, batch: list[Outgoing]) -> list[str]:
        plain = [item for item in batch if item.key is None]
        keyed = [item for item in batch if item.key is not None]
        if plain:
            await conn.fetch(self._q.publish, *_columns(plain, self._options.clock.now()))
        if not keyed:
            return [item.task_id for item in batch]
        held: dict[str, str] = {}  # key -> the task id that stands for it
        # the key and its task commit together: in a transaction of ours, or the caller's
        outer = conn.is_in_transaction()
        async with contextlib.nullcontext() if outer else conn.transaction():
            for item in keyed:
                assert item.key is not None
                if item.key in held:
                    continue
                owner = await conn.fetchval(self._q.hold_key, item.key, item.task_id)
                if owner is None:  # live: a waiting, leased or recently ended task holds it
                    found = await conn.fetchval(self._q.find_key, item.key)
                    held[item.key] = str(found) if found is not None else item.task_id
                    continue
                await conn.fetch(self._q.publish, *_columns([item], self._options.clock.now()))
                held[item.key] = item.task_id
        return [item.task_id if item.key is None else held[item.key] for item in batch]

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        """Claim up to ``count`` ready messages; wait up to ``wait`` seconds for the first,
        woken by NOTIFY, by the due time of a delayed message, or by a look every
        ``fetch_wait`` (a lost notification costs that much latency, never a task)."""
        if count <= 0 or not queues:
            return []
        names = list(queues)
        claimed, next_due = await self._db.run(self._claim, names, count)
        if claimed or wait <= 0:
            return claimed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with self._db.listener.watch_queues(names) as woken:
            while True:
                woken.clear()
                # watching before this look: a publish it misses is one that wakes us
                claimed, next_due = await self._db.run(self._claim, names, count)
                if claimed:
                    return claimed
                remaining = deadline - loop.time()
                if remaining <= 0 or self._interrupted:
                    self._interrupted = False
                    return []
                pause = min(remaining, max(self._options.fetch_wait, 0.01))
                if next_due is not None:
                    pause = min(pause, max(next_due, 0.005))
                try:
                    async with asyncio.timeout(pause):
                        await woken.wait()
                except TimeoutError:
                    pass

    def interrupt_fetch(self) -> None:
        self._interrupted = True
        self._db.listener.wake_fetchers()

    async def _claim(self, conn: asyncpg.Connection, queues: list[str], count: int) -> _Claim:
        claimed: list[Delivery] = []
        for queue in queues:
            rows = await conn.fetch(
                self._q.fetch, queue, count - len(claimed), self._owner, self._options.lease
            )
            rows.sort(key=lambda r: (-r[8], r[9]))  # RETURNING order is unspecified
            claimed.extend(
                Delivery(
                    self,
                    r[1],
                    r[0],
                    as_bytes(r[2]),
                    r[3],
                    r[4],
                    r[5],
                    crashes=r[6],
                    abort_requested=r[7],
                )
                for r in rows
            )
            if len(claimed) >= count:
                break
        next_due = None if claimed else await conn.fetchval(self._q.next_due, queues)
        return claimed, next_due

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        """Apply the outcomes (one statement per kind of outcome); False where the lease
        was lost. Results of owned acks and dead letters are stored in the same statement."""
        if not batch:
            return []
        try:
            return await self._db.run(self._settle, list(batch))
        except _REFUSED as exc:
            raise SettlementRefused(f"PostgreSQL refused it: {exc}") from exc

    async def _settle(self, conn: asyncpg.Connection, batch: list[Settlement]) -> list[bool]:
        if not any(isinstance(o, Ack | DeadLetter) and o.follow for _, o in batch):
            return await self._settle_in(conn, batch)
        async with conn.transaction():  # workflow steps: their follows commit with them
            return await self._settle_in(conn, batch)

    async def _settle_in(self, conn: asyncpg.Connection, batch: list[Settlement]) -> list[bool]:
        owned: set[tuple[str, object]] = set()
        finishing = [(d, o) for d, o in batch if isinstance(o, Ack | DeadLetter)]
        retrying = [(d, o) for d, o in batch if isinstance(o, Retry)]
        releasing = [d for d, o in batch if isinstance(o, Release)]
        if len(finishing) + len(retrying) + len(releasing) != len(batch):
            unknown = [o for _, o in batch if not isinstance(o, Ack | DeadLetter | Retry | Release)]
            raise TypeError(f"unknown settlement outcome: {unknown[0]!r}")
        if finishing:
            results = [o.result for _, o in finishing if o.result is not None]
            rows = await conn.fetch(
                self._q.finish,
                [d.task_id for d, _ in finishing],
                [d.token for d, _ in finishing],
                [o.reason if isinstance(o, DeadLetter) else None for _, o in finishing],
                *result_columns(results),
            )
            done = {row[0] for row in rows}
            owned |= {(d.task_id, d.token) for d, _ in finishing if d.task_id in done}
            for delivery, outcome in finishing:
                if outcome.follow is not None and delivery.task_id in done:
                    await workflows.apply_follow(conn, self._q, outcome.follow, self._publish)
        if retrying:
            rows = await conn.fetch(
                self._q.retry,
                [d.task_id for d, _ in retrying],
                [d.token for d, _ in retrying],
                [max(float(o.delay), 0.0) for _, o in retrying],
                [0 if o.charge else 1 for _, o in retrying],
            )
            done = {row[0] for row in rows}
            owned |= {(d.task_id, d.token) for d, _ in retrying if d.task_id in done}
        if releasing:
            rows = await conn.fetch(
                self._q.release, [d.task_id for d in releasing], [d.token for d in releasing]
            )
            done = {row[0] for row in rows}
            owned |= {(d.task_id, d.token) for d in releasing if d.task_id in done}
        return [(d.task_id, d.token) in owned for d, _ in batch]

    # -- flow control ----------------------------------------------------------------

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        q = self._q

        async def take(conn: asyncpg.Connection) -> float:
            async with conn.transaction():
                await conn.execute(q.fill_bucket, key, float(burst))
                return float(await conn.fetchval(q.take_token, key, rate, float(burst)))

        return await self._db.run(take)

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        q, lock = self._q, f"{self.schema}:{key}"

        async def acquire(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                await conn.execute(q.lock_permits, lock)
                await conn.execute(q.drop_permits, key)
                return bool(await conn.fetchval(q.acquire_permit, key, limit, holder, lease))

        return await self._db.run(acquire)

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        keys, holders = [k for k, _ in permits], [h for _, h in permits]
        await self._db.run(_execute, self._q.renew_permits, keys, holders, lease)

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        keys, holders = [k for k, _ in permits], [h for _, h in permits]
        await self._db.run(_execute, self._q.release_permits, keys, holders)

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        await self._db.run(_execute, self._q.put_marks, list(marks), list(marks.values()), ttl)

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        rows = await self._db.run(_fetch, self._q.get_marks, list(names))
        found = {row[0]: row[1] for row in rows}
        return [found.get(name) for name in names]

    # -- leases --------------------------------------------------------------------

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Extend leases from the event loop; the worker's lease thread uses
        :meth:`lease_keeper`."""
        if not deliveries:
            return []
        return await self._db.run(extend_leases, self._q, list(deliveries), seconds)

    def lease_keeper(self) -> PostgresLeaseKeeper:
        """A renewer with its own connection, callable from any OS thread."""
        return PostgresLeaseKeeper(self._db.target, self._q)

    async def reap(self) -> int:
        """Requeue expired leases (attempts stay counted, a crash is counted) and purge
        expired rows when due. Idempotent and safe from many workers at once (row locks
        serialise two reapers; the second finds nothing). Delayed messages need no reap:
        they are claimable from their due time on."""
        rows = await self._db.run(_fetch, self._q.reap)
        await self._db.purge_when_due()
        return sum(int(row[1]) for row in rows)

    # -- abort ---------------------------------------------------------------------

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        """Remove a waiting task with its aborted result, or mark a leased one (and
        signal its workers), in one transaction holding the task's row lock."""
        return await self._db.run(self._abort, task_id, result)

    async def _abort(
        self, conn: asyncpg.Connection, task_id: str, result: AbortResult
    ) -> AbortOutcome:
        q = self._q
        async with conn.transaction():
            state = await conn.fetchval(q.lock_task, task_id)
            if state == "waiting":
                row = await conn.fetchrow(q.abort, task_id)
                assert row is not None  # we hold its lock
                body, attempts, key, key_ttl = row
                if key is not None:
                    await conn.execute(q.finish_key, key, task_id, key_ttl)
                stored = result(as_bytes(body), attempts)
                if stored is not None:
                    await conn.execute(q.put_results, *result_columns([stored]))
                return AbortOutcome.DEQUEUED
            if state == "leased":
                await conn.fetch(q.mark_abort, task_id)
                return AbortOutcome.SIGNALLED
            location = await conn.fetchrow(q.locate, task_id)
        return AbortOutcome.FINISHED if location is not None else AbortOutcome.UNKNOWN

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Which deliveries' tasks carry the abort mark, in one query."""
        if not deliveries:
            return []
        rows = await self._db.run(_fetch, self._q.abort_marks, [d.task_id for d in deliveries])
        marked = {row[0] for row in rows}
        return [d.task_id in marked for d in deliveries]

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        """Wait for an abort NOTIFY from any process; the ids it named (hints: a
        notification is lost while the listener reconnects; :meth:`abort_marks` is the
        truth)."""
        return await self._db.listener.aborts.take(timeout)

    # -- inspection ----------------------------------------------------------------

    async def locate(self, task_id: str) -> TaskLocation | None:
        """Where the task is (waiting, leased, dead) while the broker holds it."""
        row = await self._db.run(_fetchrow, self._q.locate, task_id)
        if row is None:
            return None
        place = {"waiting": Place.WAITING, "leased": Place.LEASED}.get(row[0], Place.DEAD)
        return TaskLocation(place, row[1])

    async def queue_depths(self) -> list[QueueDepth]:
        """Ready, delayed, running and dead counts of every queue, sorted by name."""
        rows = await self._db.run(_fetch, self._q.queue_depths)
        return [QueueDepth(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        """The dead-letter queue (of ``queue``, or all), newest first."""
        rows = await self._db.run(_fetch, self._q.list_dead_letters, queue, limit, offset)
        return [_dead_letter(r) for r in rows]

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        """One dead-letter entry by id."""
        row = await self._db.run(_fetchrow, self._q.get_dead_letter, entry_id)
        return None if row is None else _dead_letter(row)

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        """Move entries back to their queues (at the priority their body names) with
        attempts reset, dropping their stored results; an entry whose task id is live
        again stays. Returns how many moved."""
        moved = 0
        for entry_id in entry_ids:
            entry = await self.get_dead_letter(entry_id)
            if entry is None:
                continue
            rows = await self._db.run(
                _fetch, self._q.requeue_dead, entry_id, _priority_of(entry.body)
            )
            moved += len(rows)
        return moved

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        """Delete the given entries, or every entry (of ``queue``) when ids is None."""
        if entry_ids is None:
            status = await self._db.run(_execute, self._q.delete_all_dead, queue)
        else:
            status = await self._db.run(_execute, self._q.delete_dead, list(entry_ids))
        return int(status.rsplit(" ", 1)[-1])

    # -- workers -------------------------------------------------------------------

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Record that a worker is alive for ``ttl`` seconds (server time)."""
        data = msgspec.msgpack.encode(info)
        await self._db.run(_execute, self._q.heartbeat, info.worker_id, data, float(ttl))

    async def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat has not expired."""
        rows = await self._db.run(_fetch, self._q.workers)
        return [msgspec.msgpack.decode(as_bytes(r[0]), type=WorkerInfo) for r in rows]

    # -- workflows (workflows.py) ---------------------------------------------------

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        """Save the record (its state kept when it exists) and open the barriers, in one
        transaction."""
        await self._db.run(workflows.open_workflow, self._q, record, list(barriers), self._publish)

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        """Give the barrier its size, firing its callback if every member joined."""
        await self._db.run(workflows.seal_barrier, self._q, barrier_id, size, self._publish)

    async def apply_follow(self, follow: Follow) -> None:
        """Apply a Follow in a transaction of its own."""
        await self._db.run(workflows.follow_alone, self._q, follow, self._publish)

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        """Where the barrier stands, or None."""
        return await self._db.run(workflows.barrier_state, self._q, barrier_id)

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        """The outcomes in slots ``start`` to ``stop - 1``."""
        return await self._db.run(workflows.barrier_results, self._q, barrier_id, start, stop)

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        """Set a running workflow aborted; its record before, and the tasks still held."""
        return await self._db.run(workflows.abort_workflow, self._q, workflow_id)

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow's record, or None."""
        return await self._db.run(workflows.get_workflow, self._q, workflow_id)

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        """Records (in ``state``, or all), newest first."""
        return await self._db.run(workflows.list_workflows, self._q, state, limit, offset)

    async def workflow_counts(self) -> dict[str, int]:
        """How many workflows are kept, by state."""
        return await self._db.run(workflows.count_workflows, self._q)

    # -- counts --------------------------------------------------------------------

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        """Add counts to their minutes and the totals, in one statement."""
        if not counts:
            return
        keys = list(counts)
        columns = [[key[i] for key in keys] for i in range(4)]
        oldest = math.floor(self._options.clock.now() - self._options.counts_kept)
        await self._db.run(_fetch, self._q.record_counts, *columns, list(counts.values()), oldest)

    async def counts(self, since: float) -> TaskCounts:
        """The totals, and the kept minutes from ``since`` on."""
        first = max(since, self._options.clock.now() - self._options.counts_kept)
        counts = TaskCounts()
        for task, queue, status, n in await self._db.run(_fetch, self._q.count_totals):
            counts.totals[(task, queue, status)] = n
        if math.isfinite(first):
            rows = await self._db.run(_fetch, self._q.count_minutes, math.ceil(first))
            for minute, task, queue, status, n in rows:
                counts.minutes.setdefault(minute, {})[(task, queue, status)] = n
        return counts


def _columns(batch: Sequence[Outgoing], now: float) -> tuple[list[object], ...]:
    """The publish statement's arrays. A due time is turned into a delay from this
    process's clock, and the server adds it to its own: clocks need not agree."""
    return (
        [item.task_id for item in batch],
        [item.queue for item in batch],
        [item.body for item in batch],
        [item.priority for item in batch],
        [max(item.not_before - now, 0.0) if item.not_before else 0.0 for item in batch],
        [item.reused_id for item in batch],
        [item.key for item in batch],
        [float(item.key_ttl) for item in batch],
        [item.workflow for item in batch],
    )


def _dead_letter(row: asyncpg.Record) -> DeadLetterEntry:
    return DeadLetterEntry(
        id=row[0],
        queue=row[1],
        body=as_bytes(row[2]),
        reason=row[3],
        attempts=row[4],
        failed_at=row[5],
    )


def _priority_of(body: bytes) -> int:
    """The priority a dead-lettered message was sent with; 0 for a malformed body."""
    try:
        return decode_message(body).priority
    except MalformedMessage:
        return 0


async def _fetch(conn: asyncpg.Connection, query: str, *args: object) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(query, *args)
    return rows


async def _fetchrow(conn: asyncpg.Connection, query: str, *args: object) -> asyncpg.Record | None:
    return await conn.fetchrow(query, *args)


async def _execute(conn: asyncpg.Connection, query: str, *args: object) -> str:
    status: str = await conn.execute(query, *args)
    return status
