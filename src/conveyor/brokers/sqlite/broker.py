"""The SQLite broker: each Delivery transition is one BEGIN IMMEDIATE transaction over the
named statements of ``queries.sql``.

============  ==============================================================
transition    statements (one transaction)
============  ==============================================================
publish       take_seq, then per message find_key?, publish, hold_key?
fetch         promote, then per queue fetch (+ spend_lease_token)
ack           ack (+ finish_key, put_result)
retry         take_seq, retry
dead_letter   dead_letter, ack (+ finish_key, put_result)
release       take_seq, release
extend_lease  extend_lease per delivery
reap          reap (+ spend_seq), promote
abort         abort (+ finish_key, put_result), else mark_abort, else dead_status
============  ==============================================================

Every claim counts the attempt and stamps the rows with a lease token larger than any
before it, and every settlement or renewal matches ``state = 'leased' AND lease_token =
:token``: a zombie whose lease was reaped and re-claimed changes nothing and gets False.
After a commit that makes work ready (or delayed, so waiters can re-aim their timers),
the queues it touched are announced through the wake directory (see ``wake.py``); an
abort mark is announced, by task id, to the workers listening in ``<db>.wake/aborts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import msgspec

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
    Place,
    QueueDepth,
    Release,
    Retry,
    Settlement,
    StoredResult,
    TaskCounts,
    TaskLocation,
    WorkerInfo,
    WorkflowRecord,
)
from conveyor.brokers.sqlite import flow, workflows
from conveyor.brokers.sqlite.connection import (
    DEFAULT_URL,
    MOUNTS_FILE,
    Database,
    SqliteTuning,
    as_bytes,
    open_connection,
    snapshot,
    transaction,
    unflushed,
)
from conveyor.brokers.sqlite.events import SqliteEventStore
from conveyor.brokers.sqlite.queries import QUERIES
from conveyor.brokers.sqlite.results import SqliteResultStore, store_results
from conveyor.brokers.sqlite.schedules import SqliteScheduleStore
from conveyor.brokers.sqlite.wake import Subscription
from conveyor.clock import Clock
from conveyor.errors import BrokerUnavailable, SettlementRefused
from conveyor.message import MalformedMessage, decode_message
from conveyor.result import AbortOutcome

__all__ = ["SqliteBroker", "SqliteLeaseKeeper"]

T = TypeVar("T")

_Claim = tuple[list[Delivery], float | None]


class SqliteBroker:
    """The embedded broker on one SQLite file: ``Conveyor("sqlite:///conveyor.db")``.

    Any number of producer and worker processes on one host may share the file (WAL
    mode; a network filesystem is refused). Writes are durable when they return, per
    ``?synchronous=`` in the URL (default FULL). A fetch waiting on an empty queue is woken by
    a publish from any process within milliseconds and uses no CPU while it waits.

    >>> broker = SqliteBroker("sqlite:////var/lib/app/conveyor.db")
    """

    capabilities = frozenset(Capability)

    def __init__(
        self,
        url: str = DEFAULT_URL,
        options: BrokerOptions | None = None,
        *,
        mounts_file: str | os.PathLike[str] = MOUNTS_FILE,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._clock = self._options.clock
        self._mounts_file = mounts_file
        self._environ = environ
        self._db = Database(url, self._options, mounts_file=mounts_file, environ=environ)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._results = SqliteResultStore(url, self._options, database=self._db)
        self._schedules = SqliteScheduleStore(url, self._options, database=self._db)
        self._abort_signals: Subscription | None = None
        self._events = SqliteEventStore(self._db, self._options.events_max)
        self._waiting: set[Subscription] = set()  # fetches waiting for a wake-up
        self._interrupted = False  # interrupt_fetch(): the waiting fetch returns now

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    async def connect(self) -> None:
        """Open the file (creating tables), after checking it is on a local filesystem."""
        await self._db.open()

    async def close(self) -> None:
        """Close the connection; unsettled deliveries are left to lease expiry."""
        if self._abort_signals is not None:
            signals, self._abort_signals = self._abort_signals, None
            signals.__exit__(None, None, None)
        await self._db.close()

    def result_store(self) -> SqliteResultStore:
        """The result store in the same file, sharing this broker's connection."""
        return self._results

    def schedule_store(self) -> SqliteScheduleStore:
        """The schedule store in the same file, sharing this broker's connection."""
        return self._schedules

    def event_store(self) -> SqliteEventStore:
        """The event log in the same file, sharing this broker's connection."""
        return self._events

    def clone(self) -> SqliteBroker:
        """An unconnected broker on the same file, for another event loop."""
        return SqliteBroker(
            self.url, self._options, mounts_file=self._mounts_file, environ=self._environ
        )

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        """Insert the batch in one transaction; it is durable when this returns."""
        if not batch:
            return []
        return await self._db.run(self._publish, list(batch), self._clock.now())

    def _publish(self, conn: sqlite3.Connection, batch: list[Outgoing], now: float) -> list[str]:
        touched: set[str] = set()
        with transaction(conn):
            ids = self._insert(conn, batch, now, touched)
        self._db.queue_wake.notify(touched)
        return ids

    def _insert(
        self, conn: sqlite3.Connection, batch: Sequence[Outgoing], now: float, touched: set[str]
    ) -> list[str]:
        """Insert messages in the caller's transaction; adds the queues it made work
        ready in (or delayed) to ``touched``, for the caller to announce after its commit."""
        ids: list[str] = []
        (last,) = conn.execute(QUERIES.take_seq, {"n": len(batch)}).fetchone()
        for seq, item in enumerate(batch, start=last - len(batch) + 1):
            if item.key is not None:
                row = conn.execute(QUERIES.find_key, {"key": item.key, "now": now}).fetchone()
                if row is not None:
                    ids.append(row[0])
                    continue
            inserted = conn.execute(
                QUERIES.publish,
                {
                    "task_id": item.task_id,
                    "queue": item.queue,
                    "body": item.body,
                    "priority": item.priority,
                    "seq": seq,
                    "available_at": item.not_before,
                    "now": now,
                    "key": item.key,
                    "key_ttl": item.key_ttl,
                    "workflow": item.workflow,
                },
            ).rowcount
            if inserted:
                touched.add(item.queue)
                if item.reused_id:  # its old result must not answer the new run's waiters
                    conn.execute(QUERIES.delete_result, {"task_id": item.task_id})
                    conn.execute(QUERIES.delete_progress, {"task_id": item.task_id})
                if item.key is not None:
                    conn.execute(QUERIES.hold_key, {"key": item.key, "task_id": item.task_id})
            ids.append(item.task_id)
        return ids

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        """Claim up to ``count`` ready messages; wait up to ``wait`` seconds for the first.

        The wait is push-based (a wake-up socket), backed by a poll every ``fetch_wait``
        and a timer for the next delayed message, so a lost wake-up costs bounded latency.
        """
        if count <= 0 or not queues:
            return []
        queues = list(queues)
        claimed, next_due = await self._claim(queues, count)
        if claimed or wait <= 0:
            return claimed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        with self._db.queue_wake.subscribe(queues) as wake:
            self._waiting.add(wake)
            try:
                while True:
                    wake.clear()
                    # Subscribed before this look: a publish it misses is one that wakes us.
                    claimed, next_due = await self._claim(queues, count)
                    if claimed:
                        return claimed
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._interrupted:
                        self._interrupted = False
                        return []
                    pause = min(remaining, self._db.poll_interval)
                    if next_due is not None:
                        pause = min(pause, max(next_due - self._clock.now(), 0.001))
                    await wake.wait(pause)
            finally:
                self._waiting.discard(wake)

    def interrupt_fetch(self) -> None:
        self._interrupted = True
        for wake in self._waiting:
            wake.poke()

    async def _claim(self, queues: list[str], count: int) -> _Claim:
        future = self._db.submit(self._claim_sync, queues, count, self._clock.now())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._release_orphans)
            raise

    def _release_orphans(self, future: Future[_Claim]) -> None:
        """A cancelled fetch's claim committed anyway: hand the messages back at once
        instead of leaving them leased to nobody until the lease expires."""
        if future.cancelled() or future.exception() is not None:
            return
        claimed, _ = future.result()
        if claimed:
            with contextlib.suppress(BrokerUnavailable, RuntimeError):
                self._db.submit(
                    self._settle_sync, [(d, Release()) for d in claimed], self._clock.now()
                )

    def _claim_sync(
        self, conn: sqlite3.Connection, queues: list[str], count: int, now: float
    ) -> _Claim:
        claimed: list[Delivery] = []
        next_due: float | None = None
        with unflushed(conn, self._db.tuning), transaction(conn):
            conn.execute(QUERIES.promote, {"now": now}).fetchall()
            for queue in queues:
                rows = conn.execute(
                    QUERIES.fetch,
                    {
                        "queue": queue,
                        "count": count - len(claimed),
                        "owner": self._owner,
                        "now": now,
                        "lease": self._options.lease,
                    },
                ).fetchall()
                if not rows:
                    continue
                conn.execute(QUERIES.spend_lease_token)
                rows.sort(key=lambda r: (-r[6], r[7]))  # RETURNING order is unspecified
                claimed.extend(
                    Delivery(
                        self, r[1], str(r[0]), as_bytes(r[2]), r[3], r[4], r[5], r[8], bool(r[9])
                    )
                    for r in rows
                )
                if len(claimed) >= count:
                    break
            if not claimed:
                (next_due,) = conn.execute(QUERIES.next_due).fetchone()
        return claimed, next_due

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        """Apply the outcomes in one transaction; False where the lease was lost."""
        if not batch:
            return []
        try:
            return await self._db.run(self._settle_sync, list(batch), self._clock.now())
        except sqlite3.DataError as exc:  # "string or blob too big": SQLITE_MAX_LENGTH
            raise SettlementRefused(f"SQLite refused it: {exc}") from exc

    def _settle_sync(
        self, conn: sqlite3.Connection, batch: list[Settlement], now: float
    ) -> list[bool]:
        done: list[bool] = []
        ready: set[str] = set()
        results: list[StoredResult] = []
        requeues = sum(isinstance(outcome, Retry | Release) for _, outcome in batch)
        with transaction(conn):
            seq = 0
            if requeues:
                (last,) = conn.execute(QUERIES.take_seq, {"n": requeues}).fetchone()
                seq = last - requeues
            for delivery, outcome in batch:
                fence = {"task_id": delivery.task_id, "token": delivery.token, "now": now}
                if isinstance(outcome, Retry):
                    seq += 1
                    available_at = now + max(outcome.delay, 0.0)
                    params = {**fence, "available_at": available_at, "seq": seq}
                    params["uncharge"] = 0 if outcome.charge else 1
                    owned = conn.execute(QUERIES.retry, params).rowcount == 1
                    if owned:
                        ready.add(delivery.queue)
                elif isinstance(outcome, Release):
                    seq += 1
                    owned = conn.execute(QUERIES.release, {**fence, "seq": seq}).rowcount == 1
                    if owned:
                        ready.add(delivery.queue)
                elif isinstance(outcome, DeadLetter):
                    params = {**fence, "reason": outcome.reason}
                    owned = conn.execute(QUERIES.dead_letter, params).rowcount == 1
                    if owned:
                        _finish(conn, fence, now)
                        if outcome.result is not None:
                            results.append(outcome.result)
                elif isinstance(outcome, Ack):
                    owned = _finish(conn, fence, now)
                    if owned and outcome.result is not None:
                        results.append(outcome.result)
                else:
                    raise TypeError(f"unknown settlement outcome: {outcome!r}")
                if owned and isinstance(outcome, Ack | DeadLetter) and outcome.follow:
                    workflows.apply_follow(conn, outcome.follow, now, self._insert, ready, results)
                done.append(owned)
            store_results(conn, results, now)
        self._db.queue_wake.notify(ready)
        self._db.result_wake.notify(result.task_id for result in results)
        return done

    # -- flow control ----------------------------------------------------------------

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        return await self._db.run(flow.take_token, key, rate, burst, self._clock.now())

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        now = self._clock.now()
        return await self._db.run(flow.acquire_permit, key, limit, holder, lease, now)

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        await self._db.run(flow.renew_permits, list(permits), lease, self._clock.now())

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        await self._db.run(flow.release_permits, list(permits))

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        await self._db.run(flow.put_marks, dict(marks), ttl, self._clock.now())

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        return await self._db.run(flow.get_marks, list(names), self._clock.now())

    # -- leases --------------------------------------------------------------------

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Extend leases from the event loop; the worker's lease thread uses
        :meth:`lease_keeper`."""
        if not deliveries:
            return []
        return await self._db.run(_extend_leases, list(deliveries), seconds, self._clock.now())

    def lease_keeper(self) -> SqliteLeaseKeeper:
        """A renewer with its own connection, callable from any OS thread."""
        return SqliteLeaseKeeper(self._db.path, self._db.tuning, self._clock, url=self.url)

    async def reap(self) -> int:
        """Requeue expired leases (attempts stay counted), make due delayed messages ready,
        and run maintenance when it is due. Idempotent; returns how many messages moved."""
        return await self._db.run(self._reap, self._clock.now())

    def _reap(self, conn: sqlite3.Connection, now: float) -> int:
        with transaction(conn):
            reaped = conn.execute(QUERIES.reap, {"now": now}).fetchall()
            if reaped:
                conn.execute(QUERIES.spend_seq)
            promoted = conn.execute(QUERIES.promote, {"now": now}).fetchall()
        self._db.queue_wake.notify(row[0] for row in [*reaped, *promoted])
        self._db.maintain(conn, now)
        return len(reaped) + len(promoted)

    # -- abort ---------------------------------------------------------------------

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        """Remove a queued task with its aborted result, or mark a leased one, in one
        transaction; a mark is announced to the workers of every process."""
        return await self._db.run(self._abort, task_id, result, self._clock.now())

    def _abort(
        self, conn: sqlite3.Connection, task_id: str, result: AbortResult, now: float
    ) -> AbortOutcome:
        params = {"task_id": task_id}
        stored: StoredResult | None = None
        with transaction(conn):
            row = conn.execute(QUERIES.abort, params).fetchone()
            if row is not None:
                body, attempts, key, key_ttl = row
                if key is not None:
                    conn.execute(
                        QUERIES.finish_key,
                        {"key": key, "key_ttl": key_ttl, "task_id": task_id, "now": now},
                    )
                stored = result(as_bytes(body), attempts)
                if stored is not None:
                    store_results(conn, [stored], now)
                outcome = AbortOutcome.DEQUEUED
            elif conn.execute(QUERIES.mark_abort, params).rowcount == 1:
                outcome = AbortOutcome.SIGNALLED
            elif conn.execute(QUERIES.locate_dead, params).fetchone() is not None:
                outcome = AbortOutcome.FINISHED
            else:
                outcome = AbortOutcome.UNKNOWN
        if stored is not None:
            self._db.result_wake.notify([task_id])
        if outcome is AbortOutcome.SIGNALLED:
            self._db.abort_wake.notify([task_id])
        return outcome

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Which deliveries' tasks carry the abort mark, in one query."""
        if not deliveries:
            return []
        ids = msgspec.json.encode([d.task_id for d in deliveries]).decode()
        rows = await self._db.run(_fetch_all, QUERIES.abort_marks, {"task_ids": ids})
        marked = {row[0] for row in rows}
        return [d.task_id in marked for d in deliveries]

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        """Wait for an abort datagram from any process; the ids it named. Datagrams are
        hints (one can be lost when a socket's queue is full): :meth:`abort_marks` is the
        truth."""
        if self._abort_signals is None:
            self._abort_signals = self._db.abort_wake.subscribe(None).__enter__()
        signals = self._abort_signals
        await signals.wait(timeout)
        return signals.take()

    # -- inspection ----------------------------------------------------------------

    async def locate(self, task_id: str) -> TaskLocation | None:
        """Where the task is (waiting, leased, dead) while the broker holds it."""
        return await self._db.run(_locate, task_id)

    async def queue_depths(self) -> list[QueueDepth]:
        """Ready, delayed, running and dead counts of every queue, sorted by name."""
        return await self._db.run(_queue_depths, self._clock.now())

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        """The dead-letter queue (of ``queue``, or all), newest first."""
        params = {"queue": queue, "limit": limit, "offset": offset}
        return await self._db.run(_dead_letter_rows, QUERIES.list_dead_letters, params)

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        """One dead-letter entry by id."""
        rows = await self._db.run(_dead_letter_rows, QUERIES.get_dead_letter, {"id": entry_id})
        return rows[0] if rows else None

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        """Move entries back to their queues with attempts reset, dropping their stored
        results; an entry whose task id is live again stays. Returns how many moved."""
        if not entry_ids:
            return 0
        return await self._db.run(self._requeue_dead, list(entry_ids), self._clock.now())

    def _requeue_dead(self, conn: sqlite3.Connection, entry_ids: list[str], now: float) -> int:
        moved: list[str] = []
        with transaction(conn):
            (last,) = conn.execute(QUERIES.take_seq, {"n": len(entry_ids)}).fetchone()
            for seq, entry_id in enumerate(entry_ids, start=last - len(entry_ids) + 1):
                found = conn.execute(QUERIES.get_dead_letter, {"id": entry_id}).fetchone()
                priority = _priority_of(found[2]) if found else 0
                params = {"id": entry_id, "seq": seq, "now": now, "priority": priority}
                rows = conn.execute(QUERIES.requeue_dead, params).fetchall()
                if not rows:
                    continue
                moved.append(rows[0][0])
                conn.execute(QUERIES.delete_dead, {"id": entry_id})
                conn.execute(QUERIES.delete_result, {"task_id": entry_id})
        self._db.queue_wake.notify(moved)
        return len(moved)

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        """Delete the given entries, or every entry (of ``queue``) when ids is None."""
        return await self._db.run(
            _delete_dead, None if entry_ids is None else list(entry_ids), queue
        )

    # -- workers -------------------------------------------------------------------

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Record that a worker is alive for ``ttl`` seconds."""
        params = {
            "worker_id": info.worker_id,
            "info": msgspec.msgpack.encode(info),
            "expires_at": self._clock.now() + ttl,
        }
        await self._db.run(_execute, QUERIES.heartbeat, params)

    async def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat has not expired."""
        return await self._db.run(_workers, self._clock.now())

    # -- workflows (workflows.py) ---------------------------------------------------

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        """Save the record (its state kept when it exists) and open the barriers, in one
        transaction."""
        await self._changing(workflows.open_workflow, record, list(barriers))

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        """Give the barrier its size, firing its callback if every member joined."""
        await self._changing(workflows.seal_barrier, barrier_id, size)

    async def apply_follow(self, follow: Follow) -> None:
        """Apply a Follow in a transaction of its own."""
        stored = await self._changing(workflows.follow_alone, follow)
        self._db.result_wake.notify(result.task_id for result in stored)

    async def _changing(self, change: Callable[..., T], *args: Any) -> T:
        """Run ``change(conn, *args, now, publish, touched)`` on the database thread and
        announce the queues it published to."""
        touched: set[str] = set()
        now = self._clock.now()

        def run(conn: sqlite3.Connection) -> T:
            return change(conn, *args, now, self._insert, touched)

        done = await self._db.run(run)
        self._db.queue_wake.notify(touched)
        return done

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        """Where the barrier stands, or None."""
        return await self._db.run(workflows.barrier_state, barrier_id, self._clock.now())

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        """The outcomes in slots ``start`` to ``stop - 1``."""
        return await self._db.run(
            workflows.barrier_results, barrier_id, start, stop, self._clock.now()
        )

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        """Set a running workflow aborted; its record before, and the tasks still held."""
        return await self._db.run(workflows.abort_workflow, workflow_id, self._clock.now())

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow's record, or None."""
        return await self._db.run(workflows.get_workflow, workflow_id, self._clock.now())

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        """Records (in ``state``, or all), newest first."""
        return await self._db.run(workflows.list_workflows, state, limit, offset, self._clock.now())

    async def workflow_counts(self) -> dict[str, int]:
        """How many workflows are kept, by state."""
        return await self._db.run(workflows.count_workflows, self._clock.now())

    # -- counts --------------------------------------------------------------------

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        """Add counts to their minutes and the totals, in one transaction."""
        if counts:
            oldest = self._clock.now() - self._options.counts_kept
            await self._db.run(_record_counts, dict(counts), oldest)

    async def counts(self, since: float) -> TaskCounts:
        """The totals, and the kept minutes from ``since`` on."""
        oldest = max(since, self._clock.now() - self._options.counts_kept)
        return await self._db.run(_counts, oldest)


class SqliteLeaseKeeper:
    """Renews leases on a connection of its own, from any OS thread.

    The connection opens on the first :meth:`renew` (on the lease thread, not the event
    loop) and is shared by calls from any thread under a lock.
    """

    def __init__(self, path: Path, tuning: SqliteTuning, clock: Clock, *, url: str) -> None:
        self._path = path
        self._tuning = tuning
        self._clock = clock
        self._url = url
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Extend each lease to ``seconds`` from now; False where it is no longer ours."""
        if not deliveries:
            return []
        with self._lock:
            if self._closed:
                raise BrokerUnavailable(f"the lease keeper of {redact_url(self._url)} is closed")
            try:
                if self._conn is None:
                    self._conn = open_connection(self._path, self._tuning, check_same_thread=False)
                return _extend_leases(self._conn, deliveries, seconds, self._clock.now())
            except sqlite3.OperationalError as exc:
                raise BrokerUnavailable(f"SQLite database {self._path}: {exc}") from exc

    def close(self) -> None:
        """Close the keeper's connection; later renewals raise."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


# -- statements shared by the broker and its lease keeper, run on a given connection ----


def _finish(conn: sqlite3.Connection, fence: Mapping[str, object], now: float) -> bool:
    """Delete a message we own; its idempotency key then lives key_ttl more seconds."""
    rows = conn.execute(QUERIES.ack, fence).fetchall()
    if not rows:
        return False
    key, key_ttl = rows[0]
    if key is not None:
        params = {"key": key, "key_ttl": key_ttl, "task_id": fence["task_id"], "now": now}
        conn.execute(QUERIES.finish_key, params)
    return True


def _extend_leases(
    conn: sqlite3.Connection, deliveries: Sequence[Delivery], seconds: float, now: float
) -> list[bool]:
    with transaction(conn):
        return [
            conn.execute(
                QUERIES.extend_lease,
                {"task_id": d.task_id, "token": d.token, "now": now, "seconds": seconds},
            ).rowcount
            == 1
            for d in deliveries
        ]


def _locate(conn: sqlite3.Connection, task_id: str) -> TaskLocation | None:
    with snapshot(conn):
        row = conn.execute(QUERIES.locate, {"task_id": task_id}).fetchone()
        if row is not None:
            state, attempts = row
            return TaskLocation(Place.LEASED if state == "leased" else Place.WAITING, attempts)
        row = conn.execute(QUERIES.locate_dead, {"task_id": task_id}).fetchone()
        return None if row is None else TaskLocation(Place.DEAD, row[0])


def _queue_depths(conn: sqlite3.Connection, now: float) -> list[QueueDepth]:
    counts: dict[str, list[int]] = {}
    with snapshot(conn):
        for queue, ready, delayed, running in conn.execute(QUERIES.queue_depths, {"now": now}):
            counts[queue] = [ready, delayed, running, 0]
        for queue, dead in conn.execute(QUERIES.dead_depths):
            counts.setdefault(queue, [0, 0, 0, 0])[3] = dead
    return [
        QueueDepth(queue=q, ready=c[0], delayed=c[1], running=c[2], dead=c[3])
        for q, c in sorted(counts.items())
    ]


def _dead_letter_rows(
    conn: sqlite3.Connection, query: str, params: Mapping[str, object]
) -> list[DeadLetterEntry]:
    return [
        DeadLetterEntry(
            id=str(r[0]),
            queue=r[1],
            body=as_bytes(r[2]),
            reason=str(r[3]),
            attempts=r[4],
            failed_at=r[5],
        )
        for r in conn.execute(query, params)
    ]


def _delete_dead(conn: sqlite3.Connection, entry_ids: list[str] | None, queue: str | None) -> int:
    with transaction(conn):
        if entry_ids is None:
            return conn.execute(QUERIES.delete_all_dead, {"queue": queue}).rowcount
        return sum(conn.execute(QUERIES.delete_dead, {"id": i}).rowcount for i in entry_ids)


def _execute(conn: sqlite3.Connection, query: str, params: Mapping[str, object]) -> None:
    conn.execute(query, params)


def _fetch_all(
    conn: sqlite3.Connection, query: str, params: Mapping[str, object]
) -> list[tuple[object, ...]]:
    return conn.execute(query, params).fetchall()


def _record_counts(
    conn: sqlite3.Connection, counts: dict[tuple[int, str, str, str], int], oldest: float
) -> None:
    rows = [
        {"minute": minute, "task": task, "queue": queue, "status": status, "n": n}
        for (minute, task, queue, status), n in counts.items()
    ]
    recent = [row for (minute, *_), row in zip(counts, rows, strict=True) if minute >= oldest]
    with transaction(conn):
        conn.executemany(QUERIES.count_total, rows)
        conn.executemany(QUERIES.count_minute, recent)
        conn.execute(QUERIES.forget_count_minutes, {"oldest": oldest})


def _counts(conn: sqlite3.Connection, since: float) -> TaskCounts:
    counts = TaskCounts()
    for task, queue, status, n in conn.execute(QUERIES.count_totals):
        counts.totals[(task, queue, status)] = n
    if since != float("inf"):
        for minute, task, queue, status, n in conn.execute(QUERIES.count_minutes, {"since": since}):
            counts.minutes.setdefault(minute, {})[(task, queue, status)] = n
    return counts


def _workers(conn: sqlite3.Connection, now: float) -> list[WorkerInfo]:
    rows = conn.execute(QUERIES.workers, {"now": now}).fetchall()
    return [msgspec.msgpack.decode(row[0], type=WorkerInfo) for row in rows]


def _priority_of(body: bytes) -> int:
    """The priority a dead-lettered message was sent with; 0 for a malformed body."""
    try:
        return decode_message(body).priority
    except MalformedMessage:
        return 0
