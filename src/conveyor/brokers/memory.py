"""``memory://``: a real broker and result store inside one process.

It keeps the same semantics as the server brokers (leases with fencing, delays,
priorities, attempts, dead letters, idempotency keys, push-based result waiting) and
passes the same conformance suite. It is for tests and single-process apps; nothing
survives the process.

State is guarded by one :class:`threading.Lock`, because the lease thread and
``kiq_sync`` callers on other threads touch it too. Waiters are woken on their own loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from conveyor.brokers.base import (
    AbortResult,
    AbortSignalBuffer,
    Ack,
    Barrier,
    BarrierState,
    BrokerOptions,
    Capability,
    CountKey,
    DeadLetter,
    DeadLetterEntry,
    Delivery,
    Follow,
    Join,
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
from conveyor.flow import take_bucket
from conveyor.result import AbortOutcome

__all__ = ["MemoryBroker", "MemoryEventStore", "MemoryResultStore", "MemoryScheduleStore"]

_READY, _DELAYED, _LEASED = "ready", "delayed", "leased"


@dataclass(slots=True)
class _Job:
    task_id: str
    queue: str
    body: bytes
    priority: int
    seq: int
    available_at: float
    enqueued_at: float
    key: str | None
    key_ttl: float
    state: str = _READY
    attempts: int = 0
    lease_token: int = 0
    lease_expires: float = 0.0
    crashes: int = 0
    abort: bool = False  # the abort mark: set while leased, kept until the task ends
    workflow: str | None = None


@dataclass(slots=True)
class _Barrier:
    """A group's barrier: its members' outcomes by index, and its callback."""

    workflow: str
    callback: Outgoing
    size: int | None
    partial: bool
    ttl: float
    expires: float
    slots: dict[int, bytes] = field(default_factory=dict)
    failed: int = 0
    first_failure: int | None = None
    fired: bool = False


@dataclass(slots=True, eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        # RuntimeError: the waiter's loop is closed; nobody is listening any more
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.event.set)


class MemoryBroker:
    """In-process broker: ``Conveyor("memory://")``."""

    capabilities = frozenset(Capability)

    def __init__(self, url: str = "memory://", options: BrokerOptions | None = None) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._clock = self._options.clock
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._jobs: dict[str, _Job] = {}
        self._ready: dict[str, list[tuple[int, int, str]]] = {}
        self._delayed: list[tuple[float, int, str]] = []
        self._keys: dict[str, tuple[str, float]] = {}
        self._dead: dict[str, DeadLetterEntry] = {}
        self._dead_jobs: dict[str, _Job] = {}
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._totals: dict[CountKey, int] = {}
        self._minutes: dict[int, dict[CountKey, int]] = {}
        self._waiters: set[_Waiter] = set()
        self._interrupted = False  # interrupt_fetch(): the waiting fetch returns now
        # one buffer per event loop whose worker listens (workers on several loops share it)
        self._abort_signals: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AbortSignalBuffer
        ] = weakref.WeakKeyDictionary()
        self._records: dict[str, WorkflowRecord] = {}
        self._barriers: dict[str, _Barrier] = {}
        self._workflow_tasks: dict[str, set[str]] = {}  # workflow -> the tasks it published
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._permits: dict[str, dict[str, float]] = {}  # key -> holder -> lease expiry
        self._marks: dict[str, tuple[str, float]] = {}  # name -> (value, expiry)
        self._results = MemoryResultStore(url, self._options)
        self._schedules = MemoryScheduleStore()
        self._events = MemoryEventStore(self._options.events_max)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def result_store(self) -> MemoryResultStore:
        return self._results

    def schedule_store(self) -> MemoryScheduleStore:
        return self._schedules

    def event_store(self) -> MemoryEventStore:
        return self._events

    def clone(self) -> MemoryBroker:
        return self  # thread-safe, and its state must be shared to mean anything

    # -- publish -------------------------------------------------------------------

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        now = self._clock.now()
        with self._lock:
            ids = [self._publish_one(item, now) for item in batch]
        self._wake_all()
        return ids

    def _publish_one(self, item: Outgoing, now: float) -> str:
        """Publish one message (under the lock); the task id that stands for it."""
        existing = self._existing_for_key(item.key, now)
        if existing is not None:
            return existing
        if item.task_id in self._jobs:
            return item.task_id  # same task id twice: one task
        job = _Job(
            task_id=item.task_id,
            queue=item.queue,
            body=item.body,
            priority=item.priority,
            seq=next(self._seq),
            available_at=item.not_before,
            enqueued_at=now,
            key=item.key,
            key_ttl=item.key_ttl,
            workflow=item.workflow,
        )
        self._jobs[job.task_id] = job
        if item.reused_id:  # the old run's result is gone
            self._results.forget(job.task_id)
        if item.key is not None:
            self._keys[item.key] = (job.task_id, float("inf"))
        if item.workflow is not None:
            self._workflow_tasks.setdefault(item.workflow, set()).add(job.task_id)
        self._schedule(job, now)
        return job.task_id

    def _existing_for_key(self, key: str | None, now: float) -> str | None:
        if key is None:
            return None
        found = self._keys.get(key)
        if found is None:
            return None
        task_id, expires = found
        if expires <= now:
            del self._keys[key]
            return None
        return task_id

    def _schedule(self, job: _Job, now: float) -> None:
        if job.available_at > now:
            job.state = _DELAYED
            heapq.heappush(self._delayed, (job.available_at, job.seq, job.task_id))
        else:
            job.state = _READY
            heapq.heappush(
                self._ready.setdefault(job.queue, []), (-job.priority, job.seq, job.task_id)
            )

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            waiter = _Waiter(loop)
            with self._lock:
                now = self._clock.now()
                self._promote_due(now)
                claimed = self._claim(queues, count, now)
                if claimed or wait <= 0:
                    return claimed
                if self._interrupted:
                    self._interrupted = False
                    return []
                next_due = self._delayed[0][0] - now if self._delayed else None
                self._waiters.add(waiter)
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._drop_waiter(waiter)
                return []
            if next_due is not None:
                remaining = min(remaining, max(next_due, 0.001))
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a
                # cancellation that lands as the wait ends (a loop closing under a worker)
                async with asyncio.timeout(remaining):
                    await waiter.event.wait()
            except TimeoutError:
                pass
            finally:
                self._drop_waiter(waiter)

    def interrupt_fetch(self) -> None:
        with self._lock:
            self._interrupted = True
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.wake()

    def _drop_waiter(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def _claim(self, queues: Sequence[str], count: int, now: float) -> list[Delivery]:
        claimed: list[Delivery] = []
        for queue in queues:
            heap = self._ready.get(queue)
            while heap and len(claimed) < count:
                _, _, task_id = heapq.heappop(heap)
                job = self._jobs.get(task_id)
                if job is None or job.state != _READY:
                    continue  # stale heap entry
                job.state = _LEASED
                job.attempts += 1
                job.lease_token = next(self._tokens)
                job.lease_expires = now + self._options.lease
                claimed.append(
                    Delivery(
                        self,
                        job.queue,
                        job.task_id,
                        job.body,
                        job.attempts,
                        job.lease_token,
                        job.enqueued_at,
                        job.crashes,
                        job.abort,
                    )
                )
            if len(claimed) >= count:
                break
        return claimed

    def _promote_due(self, now: float) -> int:
        moved = 0
        while self._delayed and self._delayed[0][0] <= now:
            _, _, task_id = heapq.heappop(self._delayed)
            job = self._jobs.get(task_id)
            if job is None or job.state != _DELAYED or job.available_at > now:
                continue
            self._schedule(job, now)
            moved += 1
        return moved

    def _wake_all(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.wake()

    # -- settle --------------------------------------------------------------------

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        results: list[StoredResult] = []
        done: list[bool] = []
        now = self._clock.now()
        woke = False
        with self._lock:
            for delivery, outcome in batch:
                job = self._jobs.get(delivery.task_id)
                if job is None or job.state != _LEASED or job.lease_token != delivery.token:
                    done.append(False)  # fenced: the lease moved on
                    continue
                if isinstance(outcome, Ack):
                    self._finish(job, now)
                    if outcome.result is not None:
                        results.append(outcome.result)
                    if outcome.follow is not None:
                        self._follow(outcome.follow, now, results)
                        woke = True
                elif isinstance(outcome, Retry):
                    job.crashes = 0
                    if not outcome.charge:
                        job.attempts = max(job.attempts - 1, 0)
                    job.available_at = now + max(outcome.delay, 0.0)
                    job.seq = next(self._seq)
                    self._schedule(job, now)
                    woke = True
                elif isinstance(outcome, DeadLetter):
                    self._dead[job.task_id] = DeadLetterEntry(
                        id=job.task_id,
                        queue=job.queue,
                        body=job.body,
                        reason=outcome.reason,
                        attempts=job.attempts,
                        failed_at=now,
                    )
                    self._finish(job, now)
                    self._dead_jobs[job.task_id] = job
                    if outcome.result is not None:
                        results.append(outcome.result)
                    if outcome.follow is not None:
                        self._follow(outcome.follow, now, results)
                        woke = True
                elif isinstance(outcome, Release):
                    job.attempts = max(job.attempts - 1, 0)  # keeps its seq: runs next
                    job.available_at = 0.0
                    self._schedule(job, now)
                    woke = True
                done.append(True)
        if results:
            await self._results.put(results)
        if woke:
            self._wake_all()
        return done

    def _finish(self, job: _Job, now: float) -> None:
        del self._jobs[job.task_id]
        if job.key is not None:
            self._keys[job.key] = (job.task_id, now + job.key_ttl)
        if job.workflow is not None:
            self._workflow_tasks.get(job.workflow, set()).discard(job.task_id)

    # -- workflows -----------------------------------------------------------------

    def _follow(self, follow: Follow, now: float, results: list[StoredResult]) -> None:
        """Apply a settlement's Follow (under the lock, with the settlement)."""
        record = self._records.get(follow.workflow)
        aborted = record is not None and record.state == "aborted"
        if not aborted:
            for barrier in follow.opens:
                self._open(barrier, now)
            for item in follow.publish:
                self._publish_one(item, now)
        if follow.join is not None:
            self._join(follow.join, now)
        if aborted:
            return  # its tasks' outcomes stay as the abort left them
        results.extend(follow.results)
        if follow.finish is not None and record is not None and record.state == "running":
            self._records[follow.workflow] = msgspec.structs.replace(
                record, state=follow.finish, finished_at=now, failed_task=follow.failed_task
            )

    def _open(self, barrier: Barrier, now: float) -> None:
        if self._live_barrier(barrier.barrier_id, now) is not None:
            return  # opened before (a continuation started twice): kept as it is
        opened = _Barrier(
            barrier.workflow,
            barrier.callback,
            barrier.size,
            barrier.partial,
            barrier.ttl,
            now + barrier.ttl,
        )
        self._barriers[barrier.barrier_id] = opened
        self._fire_if_done(opened, now)

    def _join(self, join: Join, now: float) -> None:
        barrier = self._live_barrier(join.barrier_id, now)
        if barrier is None or join.index in barrier.slots:
            return  # gone (expired), or that member already joined
        barrier.slots[join.index] = join.data
        barrier.expires = now + barrier.ttl
        if join.failed:
            barrier.failed += 1
            if barrier.first_failure is None:
                barrier.first_failure = join.index
        self._fire_if_done(barrier, now)

    def _fire_if_done(self, barrier: _Barrier, now: float) -> None:
        """Publish the callback, once: every member joined, or (not partial) one failed."""
        if barrier.fired:
            return
        complete = barrier.size is not None and len(barrier.slots) >= barrier.size
        if not complete and not (barrier.failed and not barrier.partial):
            return
        barrier.fired = True
        record = self._records.get(barrier.workflow)
        if record is None or record.state != "aborted":
            self._publish_one(barrier.callback, now)

    def _live_barrier(self, barrier_id: str, now: float) -> _Barrier | None:
        barrier = self._barriers.get(barrier_id)
        if barrier is not None and barrier.expires <= now:
            del self._barriers[barrier_id]
            return None
        return barrier

    def _live_record(self, workflow_id: str, now: float) -> WorkflowRecord | None:
        record = self._records.get(workflow_id)
        if record is not None and _record_expiry(record) <= now:
            del self._records[workflow_id]
            self._workflow_tasks.pop(workflow_id, None)
            return None
        return record

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        now = self._clock.now()
        with self._lock:
            if record is not None:
                existing = self._live_record(record.workflow_id, now)
                if existing is not None:
                    record = msgspec.structs.replace(existing, info=record.info, ttl=record.ttl)
                self._records[record.workflow_id] = record
            for barrier in barriers:
                self._open(barrier, now)
        self._wake_all()

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        now = self._clock.now()
        with self._lock:
            barrier = self._live_barrier(barrier_id, now)
            if barrier is not None:
                barrier.size = size
                barrier.expires = now + barrier.ttl
                self._fire_if_done(barrier, now)
        self._wake_all()

    async def apply_follow(self, follow: Follow) -> None:
        now = self._clock.now()
        results: list[StoredResult] = []
        with self._lock:
            self._follow(follow, now, results)
        if results:
            await self._results.put(results)
        self._wake_all()

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        with self._lock:
            barrier = self._live_barrier(barrier_id, self._clock.now())
            if barrier is None:
                return None
            return BarrierState(
                barrier_id,
                barrier.workflow,
                barrier.size,
                len(barrier.slots),
                barrier.failed,
                barrier.first_failure,
                barrier.fired,
                barrier.partial,
            )

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        with self._lock:
            barrier = self._live_barrier(barrier_id, self._clock.now())
            slots = barrier.slots if barrier is not None else {}
            return [slots.get(index) for index in range(start, stop)]

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        now = self._clock.now()
        with self._lock:
            record = self._live_record(workflow_id, now)
            if record is None or record.state != "running":
                return record, []
            self._records[workflow_id] = msgspec.structs.replace(
                record, state="aborted", finished_at=now
            )
            held = self._workflow_tasks.get(workflow_id, set())
            return record, sorted(task_id for task_id in held if task_id in self._jobs)

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        with self._lock:
            return self._live_record(workflow_id, self._clock.now())

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        now = self._clock.now()
        with self._lock:
            live = [self._live_record(w, now) for w in list(self._records)]
        found = [r for r in live if r is not None and state in (None, r.state)]
        found.sort(key=lambda r: r.created_at, reverse=True)
        return found[offset : offset + limit]

    async def workflow_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in await self.workflows(limit=len(self._records)):
            counts[record.state] = counts.get(record.state, 0) + 1
        return counts

    # -- leases --------------------------------------------------------------------

    # -- flow control ----------------------------------------------------------------

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        with self._lock:
            now = self._clock.now()
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens, wait, at = take_bucket(tokens, at, now, rate, burst)
            self._buckets[key] = (tokens, at)
            return wait

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        with self._lock:
            now = self._clock.now()
            held = self._permits.setdefault(key, {})
            for other, expires in list(held.items()):
                if expires <= now:
                    del held[other]
            if holder not in held and len(held) >= limit:
                return False
            held[holder] = now + lease
            return True

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        with self._lock:
            now = self._clock.now()
            for key, holder in permits:
                held = self._permits.get(key)
                if held is not None and holder in held:
                    held[holder] = now + lease

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            for key, holder in permits:
                held = self._permits.get(key)
                if held is not None:
                    held.pop(holder, None)
                    if not held:
                        del self._permits[key]

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        with self._lock:
            expires = self._clock.now() + ttl
            for name, value in marks.items():
                self._marks[name] = (value, expires)

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        with self._lock:
            now = self._clock.now()
            out: list[str | None] = []
            for name in names:
                mark = self._marks.get(name)
                if mark is not None and mark[1] <= now:
                    del self._marks[name]
                    mark = None
                out.append(None if mark is None else mark[0])
            return out

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        return self.renew(deliveries, seconds)

    def lease_keeper(self) -> _MemoryLeaseKeeper:
        return _MemoryLeaseKeeper(self)

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Thread-safe lease extension, used by the lease thread."""
        now = self._clock.now()
        out: list[bool] = []
        with self._lock:
            for delivery in deliveries:
                job = self._jobs.get(delivery.task_id)
                owned = (
                    job is not None and job.state == _LEASED and job.lease_token == delivery.token
                )
                if owned and job is not None:
                    job.lease_expires = now + seconds
                out.append(owned)
        return out

    async def reap(self) -> int:
        now = self._clock.now()
        moved = 0
        with self._lock:
            for job in self._jobs.values():
                if job.state == _LEASED and job.lease_expires <= now:
                    job.lease_token = 0  # keeps its seq: recovered work runs first (G3)
                    job.crashes += 1
                    job.available_at = 0.0
                    self._schedule(job, now)
                    moved += 1
            moved += self._promote_due(now)
            for barrier_id in list(self._barriers):
                self._live_barrier(barrier_id, now)  # drops the expired ones
            for workflow_id in list(self._records):
                self._live_record(workflow_id, now)
        if moved:
            self._wake_all()
        return moved

    # -- abort ---------------------------------------------------------------------

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        now = self._clock.now()
        with self._lock:
            job = self._jobs.get(task_id)
            if job is None:
                return AbortOutcome.FINISHED if task_id in self._dead else AbortOutcome.UNKNOWN
            if job.state == _LEASED:
                job.abort = True
                boxes = list(self._abort_signals.values())
            else:
                self._finish(job, now)  # its heap entry goes stale and is skipped
                stored = result(job.body, job.attempts)
                if stored is not None:  # stored under the lock: no moment without either
                    self._results.store([stored])
                return AbortOutcome.DEQUEUED
        for box in boxes:
            box.add([task_id])
        return AbortOutcome.SIGNALLED

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        with self._lock:
            return [
                job is not None and job.abort
                for job in (self._jobs.get(d.task_id) for d in deliveries)
            ]

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        loop = asyncio.get_running_loop()
        with self._lock:
            box = self._abort_signals.get(loop)
            if box is None:
                box = self._abort_signals[loop] = AbortSignalBuffer(loop)
        return await box.take(timeout)

    # -- inspection ----------------------------------------------------------------

    async def locate(self, task_id: str) -> TaskLocation | None:
        with self._lock:
            job = self._jobs.get(task_id)
            if job is not None:
                place = Place.LEASED if job.state == _LEASED else Place.WAITING
                return TaskLocation(place, job.attempts)
            dead = self._dead.get(task_id)
            if dead is not None:
                return TaskLocation(Place.DEAD, dead.attempts)
        return None

    async def queue_depths(self) -> list[QueueDepth]:
        counts: dict[str, dict[str, int]] = {}
        with self._lock:
            for job in self._jobs.values():
                row = counts.setdefault(job.queue, {})
                row[job.state] = row.get(job.state, 0) + 1
            for entry in self._dead.values():
                row = counts.setdefault(entry.queue, {})
                row["dead"] = row.get("dead", 0) + 1
        return [
            QueueDepth(
                queue=q,
                ready=c.get(_READY, 0),
                delayed=c.get(_DELAYED, 0),
                running=c.get(_LEASED, 0),
                dead=c.get("dead", 0),
            )
            for q, c in sorted(counts.items())
        ]

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        with self._lock:
            entries = [e for e in reversed(self._dead.values()) if queue in (None, e.queue)]
        return entries[offset : offset + limit]

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        with self._lock:
            return self._dead.get(entry_id)

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        now = self._clock.now()
        moved = 0
        with self._lock:
            for entry_id in entry_ids:
                entry = self._dead.pop(entry_id, None)
                old = self._dead_jobs.pop(entry_id, None)
                if entry is None or entry.id in self._jobs:
                    continue
                job = _Job(
                    task_id=entry.id,
                    queue=entry.queue,
                    body=entry.body,
                    priority=old.priority if old else 0,
                    seq=next(self._seq),
                    available_at=0.0,
                    enqueued_at=now,
                    key=old.key if old else None,
                    key_ttl=old.key_ttl if old else 0.0,
                )
                if job.key is not None:
                    self._keys[job.key] = (job.task_id, float("inf"))
                self._jobs[job.task_id] = job
                self._schedule(job, now)
                moved += 1
        if moved:
            self._wake_all()
            for entry_id in entry_ids:
                await self._results.delete(entry_id)
        return moved

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        with self._lock:
            if entry_ids is None:
                doomed = [e.id for e in self._dead.values() if queue in (None, e.queue)]
            else:
                doomed = [i for i in entry_ids if i in self._dead]
            for entry_id in doomed:
                del self._dead[entry_id]
                self._dead_jobs.pop(entry_id, None)
        return len(doomed)

    # -- workers -------------------------------------------------------------------

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        with self._lock:
            self._workers[info.worker_id] = (info, self._clock.now() + ttl)

    async def workers(self) -> list[WorkerInfo]:
        now = self._clock.now()
        with self._lock:
            alive = {k: v for k, v in self._workers.items() if v[1] > now}
            self._workers = alive
            return [info for info, _ in alive.values()]

    # -- counts --------------------------------------------------------------------

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        oldest = self._clock.now() - self._options.counts_kept
        with self._lock:
            for (minute, task, queue, status), n in counts.items():
                counted = (task, queue, status)
                self._totals[counted] = self._totals.get(counted, 0) + n
                if minute >= oldest:
                    bucket = self._minutes.setdefault(minute, {})
                    bucket[counted] = bucket.get(counted, 0) + n
            for minute in [m for m in self._minutes if m < oldest]:
                del self._minutes[minute]

    async def counts(self, since: float) -> TaskCounts:
        oldest = max(since, self._clock.now() - self._options.counts_kept)
        with self._lock:
            return TaskCounts(
                dict(self._totals),
                {m: dict(c) for m, c in sorted(self._minutes.items()) if m >= oldest},
            )


def _record_expiry(record: WorkflowRecord) -> float:
    """A running record is kept ``ttl`` after it started, a finished one after it ended."""
    return (record.finished_at or record.created_at) + record.ttl


@dataclass(slots=True)
class _MemoryLeaseKeeper:
    broker: MemoryBroker

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        return self.broker.renew(deliveries, seconds)

    def close(self) -> None:
        return None


class MemoryResultStore:
    """In-process result store with push-based waiting (futures, no polling)."""

    def __init__(self, url: str = "memory://", options: BrokerOptions | None = None) -> None:
        self.url = url
        self._clock = (options or BrokerOptions()).clock
        self._lock = threading.Lock()
        self._data: dict[str, tuple[bytes, float]] = {}
        self._progress: dict[str, tuple[bytes, float]] = {}
        self._waiters: dict[str, list[_Waiter]] = {}

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put(self, batch: Sequence[StoredResult]) -> None:
        self.store(batch)

    def store(self, batch: Sequence[StoredResult]) -> None:
        """:meth:`put` without an event loop (the broker calls it under its own lock)."""
        now = self._clock.now()
        woken: list[_Waiter] = []
        with self._lock:
            for item in batch:
                expires = float("inf") if item.ttl is None else now + item.ttl
                self._data[item.task_id] = (item.data, expires)
                self._progress.pop(item.task_id, None)
                woken.extend(self._waiters.pop(item.task_id, ()))
        for waiter in woken:
            waiter.wake()

    def _live(self, table: dict[str, tuple[bytes, float]], task_id: str) -> bytes | None:
        found = table.get(task_id)
        if found is None:
            return None
        if found[1] <= self._clock.now():
            del table[task_id]
            return None
        return found[0]

    async def get(self, task_id: str) -> bytes | None:
        with self._lock:
            return self._live(self._data, task_id)

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        waiter = _Waiter(asyncio.get_running_loop())
        with self._lock:
            found = self._live(self._data, task_id)
            if found is not None:
                return found
            self._waiters.setdefault(task_id, []).append(waiter)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see fetch()
                await waiter.event.wait()
        except TimeoutError:
            return None
        finally:
            with self._lock:
                pending = self._waiters.get(task_id)
                if pending is not None and waiter in pending:
                    pending.remove(waiter)
                    if not pending:
                        del self._waiters[task_id]
        return await self.get(task_id)

    async def delete(self, task_id: str) -> None:
        self.forget(task_id)

    def forget(self, task_id: str) -> None:
        """:meth:`delete` without an event loop (a publish under the broker's lock)."""
        with self._lock:
            self._data.pop(task_id, None)
            self._progress.pop(task_id, None)

    def clone(self) -> MemoryResultStore:
        return self

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        with self._lock:
            self._progress[task_id] = (progress, self._clock.now() + ttl)

    async def get_progress(self, task_id: str) -> bytes | None:
        with self._lock:
            return self._live(self._progress, task_id)


class MemoryScheduleStore:
    """Schedule definitions, in process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, bytes] = {}

    async def save_schedule(self, schedule_id: str, spec: bytes) -> None:
        with self._lock:
            self._specs[schedule_id] = spec

    async def delete_schedule(self, schedule_id: str) -> bool:
        with self._lock:
            return self._specs.pop(schedule_id, None) is not None

    async def load_schedules(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._specs)


class MemoryEventStore:
    """The event log, in process: the last ``capacity`` records, ids counting from 1."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._records: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=capacity)
        self._ids = itertools.count(1)

    async def append(self, records: Sequence[bytes]) -> None:
        with self._lock:
            self._records.extend((next(self._ids), record) for record in records)

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        cursor = int(after) if after else 0
        with self._lock:
            found = [(str(i), r) for i, r in self._records if i > cursor]
        return found[:limit]

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        with self._lock:
            tail = list(self._records)[-limit:] if limit > 0 else []
        return [(str(i), r) for i, r in tail]
