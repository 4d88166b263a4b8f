"""The contract between the core and a broker technology: what a broker must do, split
by capability, so that a broker says honestly what it can (docs/write-a-broker.md).

A broker moves encoded messages; it never decodes them. Every state change of a
delivery is one *settlement* (``ack``, ``retry``, ``dead_letter``, ``release``), applied
atomically and only if the caller still owns the delivery's lease (fencing). Settlements
and publishes are batched: the worker hands over many at once, so a broker can turn them
into one pipeline, script call or transaction.

The capabilities (:class:`Capability`), each a protocol below:

=================  =====================================================================
``QUEUE``          :class:`Queue`: publish, fetch, settle, leases, reap, locate a task.
                   Every broker has it.
``PRIORITY``       fetch takes higher priorities first, strictly (a queue without it
                   may only favour them)
``ABORT``          :class:`AbortMarks`: remove a queued task, mark and signal a running one
``ADMIN``          :class:`Admin`: queue depths, dead letters, worker heartbeats
``RESULTS``        :meth:`Broker.result_store` on the same server
``SCHEDULES``      :meth:`Broker.schedule_store`
``EVENTS``         :meth:`Broker.event_store`
``COUNTS``         :class:`Counters`: task outcomes counted in the workers, per task,
                   queue, status and minute, flushed with their heartbeats
``WORKFLOWS``      :class:`Workflows`: workflow records, group barriers (fan-in), and
                   a settlement's :class:`Follow` applied in its own atomic step
``FLOW``           :class:`FlowControl`: token buckets, leased semaphores and marks
                   shared by every worker (rate and concurrency limits, debounce), and
                   the uncharged retry (``Retry(charge=False)``) that defers a task
=================  =====================================================================

How the built brokers do each transition:

===============  =============================  ==================================
operation        Redis Streams                  SQLite (and memory)
===============  =============================  ==================================
fetch            fetch.lua, else XREADGROUP     UPDATE ... RETURNING (a transaction)
                 BLOCK then start.lua
ack              ack.lua (with the result)      DELETE the row, store the result
retry            retry.lua (ZADD delayed)       state = delayed, available_at = due
dead_letter      dead_letter.lua (XADD dlq)     move the row to dead_letters
release          release.lua (front stream)     state = ready, attempts - 1
extend leases    extend_lease.lua (XCLAIM)      lease_expires_at = now + seconds
abort            abort.lua                      DELETE a waiting row / mark a leased one
===============  =============================  ==================================

``abort`` is not a settlement: anyone may call it, for any task id. A queued message is
removed at once with its ``aborted`` result; a leased one gets an *abort mark* that its
worker finds through :meth:`AbortMarks.abort_marks` (polled) and
:meth:`AbortMarks.wait_abort_signal` (pushed), and that ``fetch`` reports on a later claim
(:attr:`Delivery.abort_requested`), so a marked task never starts again.

A broker is built from its URL and a :class:`BrokerOptions`, never from the app or its
settings: ``BrokerClass(url, options)``. Knobs of one technology go in the URL's query
(``?prefix=``, ``sqlite:///x.db?synchronous=NORMAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import msgspec

from conveyor.clock import Clock, SystemClock
from conveyor.result import AbortOutcome, TaskStatus

__all__ = [
    "COUNT_STATUSES",
    "MAX_ABORT_SIGNALS",
    "WORKFLOW_STATES",
    "AbortMarks",
    "AbortResult",
    "AbortSignalBuffer",
    "Ack",
    "Admin",
    "Barrier",
    "BarrierState",
    "Broker",
    "BrokerOptions",
    "Capability",
    "CountKey",
    "Counters",
    "DeadLetter",
    "DeadLetterEntry",
    "Delivery",
    "EventStore",
    "FlowControl",
    "Follow",
    "Join",
    "LeaseKeeper",
    "Outcome",
    "Outgoing",
    "Place",
    "Queue",
    "QueueDepth",
    "Release",
    "ResultStore",
    "Retry",
    "ScheduleStore",
    "Settlement",
    "StoredResult",
    "TaskCounts",
    "TaskLocation",
    "TransactionalPublish",
    "WorkerInfo",
    "WorkflowRecord",
    "Workflows",
    "own_result_store",
    "status_of",
]


class Capability(enum.StrEnum):
    """What a broker can do; it lists its own in ``capabilities``, and the conformance
    checks of each run where it is declared (``conveyor.testing.conformance``)."""

    QUEUE = "queue"
    PRIORITY = "priority"
    ABORT = "abort"
    ADMIN = "admin"
    RESULTS = "results"
    SCHEDULES = "schedules"
    EVENTS = "events"
    COUNTS = "counts"
    WORKFLOWS = "workflows"
    FLOW = "flow"


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """What the core tells every broker, whatever its technology. The app builds it from
    its settings; a test or a tool can build one directly.

    ``lease``: seconds a fetched message stays owned without renewal. ``fetch_wait``: how
    long a fetch may wait for work (a fallback poll interval, where the broker has one).
    ``reap_interval``: how often workers run :meth:`Queue.reap` (housekeeping may follow
    it). ``queues``: names to create at connect. ``events_max``: about how many events
    the event log keeps. ``clock``: time for leases and due times a broker keeps itself
    (server brokers use the server's clock). ``fault_pause``/``fault_pause_max``: the
    backoff of a broker's own background listeners after a lost connection.
    ``result_url``: the app's ``results=`` URL (None: the broker's own store), for a
    broker that keeps its own records there (RabbitMQ keeps task records in Redis).
    ``counts_kept``: seconds of per-minute task counts kept (:class:`Counters`; the
    totals are kept for ever).
    """

    lease: float = 30.0
    fetch_wait: float = 1.0
    reap_interval: float = 5.0
    queues: tuple[str, ...] = ("default",)
    events_max: int = 10_000
    clock: Clock = field(default_factory=SystemClock, compare=False)
    fault_pause: float = 0.05
    fault_pause_max: float = 5.0
    result_url: str | None = None
    counts_kept: float = 24 * 3600.0


class Outgoing(msgspec.Struct, frozen=True):
    """A message ready to publish: the encoded body plus what the broker routes on.

    ``not_before`` is a Unix time (0: now). ``key`` is an idempotency key: when a task
    with the same key is queued, running, or finished within ``key_ttl`` seconds, the
    broker publishes nothing and reports the existing task id instead. ``reused_id`` says
    the caller chose ``task_id`` (``with_options(task_id=...)``): a broker that stores
    results forgets the result and progress kept under that id when it writes the
    message, so the old run's outcome cannot answer the new run's waiters. Generated ids
    are new, and the broker need not look. ``workflow`` is the id of the workflow the task
    belongs to: a broker with ``WORKFLOWS`` finds the tasks it holds by it
    (:meth:`Workflows.abort_workflow`).
    """

    task_id: str
    queue: str
    body: bytes
    priority: int = 0
    not_before: float = 0.0
    key: str | None = None
    key_ttl: float = 0.0
    reused_id: bool = False
    workflow: str | None = None


class StoredResult(msgspec.Struct, frozen=True):
    """An encoded :class:`~conveyor.result.Result` and how long to keep it (None: forever)."""

    task_id: str
    data: bytes
    ttl: float | None


# A listener keeps at most this many signalled task ids until its worker takes them (one
# that stopped taking them must not grow without bound); a worker that misses ids beyond
# it still finds the marks with abort_marks.
MAX_ABORT_SIGNALS = 1000


class Barrier(msgspec.Struct, frozen=True):
    """A group's fan-in: where its members' outcomes are gathered, and what is published
    when the last one arrives (``WORKFLOWS``).

    ``callback`` is published once: when every one of ``size`` members has joined, or, when
    ``partial`` is False, as soon as one joins failed (the callback then ends failed
    without running). ``size`` None: the producer is still publishing the members, and
    :meth:`Workflows.seal_barrier` gives it. The barrier and its members' outcomes are kept
    ``ttl`` seconds after its last change.
    """

    barrier_id: str
    workflow: str
    callback: Outgoing
    size: int | None = None
    partial: bool = False
    ttl: float = 7 * 86400.0


class Join(msgspec.Struct, frozen=True):
    """A member's outcome for its group's barrier: ``data`` its encoded
    :class:`~conveyor.result.Result`, ``failed`` whether it ended other than succeeded.
    A slot takes one outcome: a second join of the same index changes nothing."""

    barrier_id: str
    index: int
    data: bytes
    failed: bool = False


class Follow(msgspec.Struct, frozen=True):
    """What a workflow task's settlement does in its own atomic step (``WORKFLOWS``),
    in this order: open ``opens`` (a barrier that exists is kept as it is), publish
    ``publish`` (as :meth:`Queue.publish` does, keys included), fill ``join`` (firing its
    barrier's callback when that was the last member, or the first failure), store
    ``results`` (outcomes of tasks that will never run: a failed chain's final task), and
    end the workflow with ``finish`` (``succeeded``, ``failed`` or ``aborted``; None: it
    goes on). A workflow that was aborted publishes nothing more (neither ``publish``
    nor a callback) and keeps its ``aborted`` state. A settlement that is refused
    (its lease was lost) applies none of it."""

    workflow: str
    opens: tuple[Barrier, ...] = ()
    publish: tuple[Outgoing, ...] = ()
    join: Join | None = None
    results: tuple[StoredResult, ...] = ()
    finish: str | None = None
    failed_task: str = ""
    """With ``finish="failed"``: the task whose failure ended the workflow."""


class Ack(msgspec.Struct, frozen=True):
    """The task is done (succeeded, or failed for good without dead-lettering)."""

    result: StoredResult | None = None
    follow: Follow | None = None


class Retry(msgspec.Struct, frozen=True):
    """Run the task again after ``delay`` seconds; the attempt stays counted. With
    ``charge=False`` (a task deferred by a flow limit before it ran: ``FLOW`` brokers
    only) the attempt is given back, as :class:`Release` does."""

    delay: float
    charge: bool = True


class DeadLetter(msgspec.Struct, frozen=True):
    """Move the message, with its raw bytes and ``reason``, to the dead-letter queue."""

    reason: str
    result: StoredResult | None = None
    follow: Follow | None = None


class Release(msgspec.Struct, frozen=True):
    """Give the message back at once, uncharged (graceful shutdown, or not started)."""


Outcome = Ack | Retry | DeadLetter | Release

AbortResult = Callable[[bytes, int], "StoredResult | None"]
"""Builds the ``aborted`` result of a task removed before it ran, from its message body and
its started attempts (None: store nothing). It must be pure and quick: a broker may call
it inside a transaction, or more than once (it stores the result of one call)."""


@dataclass(slots=True, eq=False, weakref_slot=True)
class Delivery:
    """One message handed to this worker under a lease.

    ``attempt`` is the number of started attempts including this one, counted by the
    broker when it claimed the message. ``token`` is the broker's own handle (a stream
    entry id, a delivery tag, a row id). Exactly one settlement ends a delivery; each
    returns False if the lease was lost (another worker owns the message now), in which
    case nothing was changed.
    """

    broker: Queue  # what settles it: every broker has QUEUE
    queue: str
    task_id: str
    body: bytes
    attempt: int
    token: Any
    enqueued_at: float = 0.0
    crashes: int = 0
    """How many attempts in a row ended with the lease expiring unsettled (the worker
    died). From two on, the worker runs the task alone, so a task that kills workers
    cannot take the tasks beside it to the dead-letter queue."""
    abort_requested: bool = False
    """The task carried an abort mark when it was claimed (it was aborted while an earlier
    attempt ran, or between a blocking read and its start): the worker settles it as
    aborted without running it."""
    lease_until: float = float("inf")
    """Local monotonic time until which the lease is known to hold: set by the worker at
    the claim, pushed on by each renewal. A body about to start past it (its process was
    paused, SIGSTOP or a frozen VM) checks ownership first."""

    async def ack(self, result: StoredResult | None = None, follow: Follow | None = None) -> bool:
        """Finish the delivery; store ``result`` with it when the broker holds results."""
        return (await self.broker.settle([(self, Ack(result, follow))]))[0]

    async def retry(self, delay: float) -> bool:
        """Requeue for another attempt after ``delay`` seconds."""
        return (await self.broker.settle([(self, Retry(delay))]))[0]

    async def dead_letter(
        self, reason: str, result: StoredResult | None = None, follow: Follow | None = None
    ) -> bool:
        """Move to the dead-letter queue with ``reason``."""
        return (await self.broker.settle([(self, DeadLetter(reason, result, follow))]))[0]

    async def release(self) -> bool:
        """Hand back without charging the attempt."""
        return (await self.broker.settle([(self, Release())]))[0]

    async def extend_lease(self, seconds: float) -> bool:
        """Push the lease expiry ``seconds`` from now; False if we no longer own it."""
        return (await self.broker.extend_leases([self], seconds))[0]


Settlement = tuple[Delivery, Outcome]


class DeadLetterEntry(msgspec.Struct, frozen=True):
    """A message in the dead-letter queue, with the bytes it arrived as."""

    id: str
    queue: str
    body: bytes
    reason: str
    attempts: int
    failed_at: float


class QueueDepth(msgspec.Struct, frozen=True):
    """Counts for one queue: ready now, delayed (incl. retry backoff), leased, dead."""

    queue: str
    ready: int = 0
    delayed: int = 0
    running: int = 0
    dead: int = 0


class WorkerInfo(msgspec.Struct, frozen=True):
    """A worker's (or scheduler's) heartbeat: who it is, what it serves and how busy it is."""

    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    processed: int
    started_at: float
    last_seen: float
    current_tasks: list[str] = []
    role: str = "worker"  # or "scheduler"


COUNT_STATUSES = (
    "succeeded",
    "failed",
    "dead",
    "aborted",
    "retried",
    "expired",
    "superseded",
    "deferred",
)
"""What a worker counts (:class:`Counters`): attempts that ended ``succeeded``, ``failed``
(retries exhausted: dead-lettered with a FAILED result), ``dead`` (could not run:
malformed, unknown task, poison), ``aborted``, or ``retried`` (failed, to run again);
tasks that ended ``expired`` or ``superseded`` without running, and claims ``deferred``
by a rate or concurrency limit (docs/flow-control.md)."""

CountKey = tuple[str, str, str]
"""(task name, queue, status): what one counter counts."""


class TaskCounts(msgspec.Struct, frozen=True):
    """What a broker's counters hold, summed over every worker: ``totals`` since counting
    began, and ``minutes``, each minute's counts by its start (Unix seconds, a multiple
    of 60), for the minutes asked that are still kept. Minutes without counts are absent."""

    totals: dict[CountKey, int] = {}
    minutes: dict[int, dict[CountKey, int]] = {}


WORKFLOW_STATES = ("running", "succeeded", "failed", "aborted")
"""A workflow's states (:class:`WorkflowRecord`); the last three are final."""


class WorkflowRecord(msgspec.Struct, frozen=True):
    """A workflow as a broker keeps it (``WORKFLOWS``). ``state`` is one of
    :data:`WORKFLOW_STATES`; ``info`` is the core's description of it, opaque to the broker;
    ``failed_task`` the task whose failure ended it. A running record is kept ``ttl``
    seconds after it started, a finished one ``ttl`` seconds after it ended."""

    workflow_id: str
    state: str
    created_at: float
    finished_at: float = 0.0
    ttl: float = 7 * 86400.0
    info: bytes = b""
    failed_task: str = ""


class BarrierState(msgspec.Struct, frozen=True):
    """Where a barrier stands: ``size`` (None until sealed), how many members joined and
    how many of those failed, the index of the first that failed, and whether its
    callback was published."""

    barrier_id: str
    workflow: str
    size: int | None
    joined: int
    failed: int
    first_failure: int | None
    fired: bool
    partial: bool = False


class LeaseKeeper(Protocol):
    """Renews leases from the worker's lease thread, on a connection of its own.

    It is called from a plain OS thread, so a blocked event loop or a GIL-heavy sync task
    cannot starve it (reliability.md §4.6.4).
    """

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Extend each lease to ``seconds`` from now; False where it is no longer ours."""
        ...

    def close(self) -> None:
        """Release the keeper's connection."""
        ...


class Place(enum.StrEnum):
    """Where a broker holds a task: waiting (ready or delayed), leased, or dead."""

    WAITING = "waiting"
    LEASED = "leased"
    DEAD = "dead"


class TaskLocation(msgspec.Struct, frozen=True):
    """What a broker knows of a task it holds (:meth:`Queue.locate`): where it is, and
    its started attempts."""

    place: Place
    attempts: int


def status_of(location: TaskLocation) -> TaskStatus:
    """The one mapping from where a broker holds a task to the status users see: leased
    is running; waiting after an attempt is retrying, before any is queued; dead is dead."""
    if location.place is Place.LEASED:
        return TaskStatus.RUNNING
    if location.place is Place.DEAD:
        return TaskStatus.DEAD
    return TaskStatus.RETRYING if location.attempts > 0 else TaskStatus.QUEUED


class AbortSignalBuffer:
    """Task ids whose abort was signalled, kept until one event loop's worker takes them
    (at most :data:`MAX_ABORT_SIGNALS`: a worker that stopped taking them must not grow
    it without bound). :meth:`add` and :meth:`wake` are safe from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._lock = threading.Lock()
        self._task_ids: list[str] = []

    def add(self, task_ids: Iterable[str]) -> None:
        """Keep ``task_ids`` for the worker and wake it."""
        with self._lock:
            room = MAX_ABORT_SIGNALS - len(self._task_ids)
            self._task_ids.extend(list(task_ids)[: max(room, 0)])
        self.wake()

    def wake(self) -> None:
        """Wake the worker without ids (something may have been missed: it re-checks)."""
        loop = self._loop
        if loop is None:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody listens
            loop.call_soon_threadsafe(self._event.set)

    async def take(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` for a signal; the ids signalled since the last take."""
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.0)):
                    await self._event.wait()
        self._event.clear()
        with self._lock:
            taken, self._task_ids = self._task_ids, []
        return taken


@runtime_checkable
class Queue(Protocol):
    """The capability every broker has (``Capability.QUEUE``): move messages under leases."""

    url: str
    capabilities: frozenset[Capability]

    async def connect(self) -> None:
        """Open connections and create what is missing (streams, tables, groups)."""
        ...

    async def close(self) -> None:
        """Close connections. Unsettled deliveries are left to lease expiry."""
        ...

    def clone(self) -> Self:
        """An unconnected broker on the same backing store, for another event loop
        (the sync portal). Brokers whose state is thread-safe may return themselves."""
        ...

    async def publish(self, batch: Sequence[Outgoing]) -> list[str]:
        """Publish a batch durably; returns, per item, the task id that now stands for it
        (the existing one when ``key`` matched an earlier task, or when the same task id
        is still waiting or leased). Publishing a task id anew, in the same atomic step,
        forgets a result the broker's own result store holds for that id, so that
        waiters of the new run never read the old one."""
        ...

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        """Claim up to ``count`` ready messages, highest priority first, each under a new
        lease with its attempt counted. Waits up to ``wait`` seconds for the first; a
        publish wakes a waiting fetch, and a delayed message published or retried
        meanwhile is taken when it falls due."""
        ...

    def interrupt_fetch(self) -> None:
        """Make a fetch that is waiting for messages return now, with what it claimed (or
        the next fetch, if none is waiting): a stopping worker does not wait out ``wait``.
        Called on the fetching event loop. A fetch may always return early and empty."""
        ...

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        """Apply each outcome atomically if we still own the delivery (False if not).
        Raises :class:`~conveyor.errors.SettlementRefused` for a settlement the broker
        refuses in a way a retry cannot fix (a result over its size limit)."""
        ...

    async def extend_leases(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        """Extend leases from the event loop; the worker uses :meth:`lease_keeper`."""
        ...

    def lease_keeper(self) -> LeaseKeeper:
        """A thread-safe renewer with its own connection, for the lease thread."""
        ...

    async def reap(self) -> int:
        """Requeue messages whose lease expired and make due delayed messages ready.
        Idempotent and lock-free; returns how many messages it moved."""
        ...

    async def locate(self, task_id: str) -> TaskLocation | None:
        """Where the broker holds the task, or None (never published, or acked: brokers
        forget finished tasks). :func:`status_of` turns it into a status."""
        ...


@runtime_checkable
class AbortMarks(Protocol):
    """``Capability.ABORT``: abort a task wherever it is."""

    async def abort(self, task_id: str, result: AbortResult) -> AbortOutcome:
        """Abort a task, atomically: a queued, delayed or retry-waiting message is removed
        and ``result(body, attempts)`` stored in the broker's own result store
        (``DEQUEUED``); a leased one gets the abort mark and its workers are signalled
        (``SIGNALLED``); a dead-lettered one is ``FINISHED``; else ``UNKNOWN`` (the broker
        forgets acked tasks: the caller looks for their result)."""
        ...

    async def abort_marks(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Which of these deliveries' tasks carry the abort mark (one round trip)."""
        ...

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` seconds for an abort of a running task anywhere; returns
        the task ids signalled since the last call (possibly none: signals are hints that
        may be lost or merged, :meth:`abort_marks` is the truth). A worker calls this in a
        loop; the first call starts listening, :meth:`Queue.close` stops."""
        ...


@runtime_checkable
class Admin(Protocol):
    """``Capability.ADMIN``: what ``conveyor status``, ``conveyor dlq`` and the dashboard
    read and change."""

    async def queue_depths(self) -> list[QueueDepth]:
        """Depths of every queue the broker knows."""
        ...

    async def dead_letters(
        self, queue: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterEntry]:
        """The dead-letter queue, newest first."""
        ...

    async def get_dead_letter(self, entry_id: str) -> DeadLetterEntry | None:
        """One dead-letter entry by id."""
        ...

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        """Move entries back to their queue with attempts reset; returns how many moved."""
        ...

    async def delete_dead(self, entry_ids: Sequence[str] | None, queue: str | None = None) -> int:
        """Delete the given entries, or all of them (of ``queue``) when ids is None."""
        ...

    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        """Record that a worker is alive for ``ttl`` seconds (a negative ttl forgets it)."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat has not expired."""
        ...


@runtime_checkable
class Counters(Protocol):
    """``Capability.COUNTS``: task outcomes, counted by each worker in memory (a dict
    increment per task, never a round trip) and added here in one batch with its
    heartbeat, about once a second. What the dashboard's charts and totals and its
    ``conveyor_tasks_total`` read, summed over every worker."""

    async def record_counts(self, counts: Mapping[tuple[int, str, str, str], int]) -> None:
        """Add ``counts``, keyed by (minute start, task, queue, status), to their minutes
        and to the totals: in one round trip, transaction or script where the technology
        allows. Minutes older than ``BrokerOptions.counts_kept`` are dropped."""
        ...

    async def counts(self, since: float) -> TaskCounts:
        """The totals, and the kept minutes that start at or after ``since`` (Unix
        seconds; ``float("inf")``: the totals only)."""
        ...


@runtime_checkable
class Workflows(Protocol):
    """``Capability.WORKFLOWS``: chains, groups and chords (``conveyor.workflow``), with
    fan-in in the broker.

    A workflow task's settlement may carry a :class:`Follow` (:attr:`Ack.follow`,
    :attr:`DeadLetter.follow`): what comes next (a chain's next task, a group's members),
    its group's :class:`Join`, and the workflow's end. The broker applies it in the same
    atomic step as the settlement, only if the settlement applies: a crash at any point
    neither loses what follows nor repeats it. A barrier fires its callback exactly once,
    with an idempotency key (the callback's task id, derived from the workflow id) as a
    further guard. Fan-in costs O(1) per member. Every workflow task is published with
    :attr:`Outgoing.workflow`, so that :meth:`abort_workflow` finds the ones still held.
    """

    async def open_workflow(
        self, record: WorkflowRecord | None, barriers: Sequence[Barrier] = ()
    ) -> None:
        """In one atomic step: save ``record`` (a new one as it is; over an existing one,
        only its ``info`` and ``ttl``, keeping its state) and open each barrier that does
        not exist yet (one with a known ``size`` that every member has already joined, a
        size of 0, fires at once)."""
        ...

    async def seal_barrier(self, barrier_id: str, size: int) -> None:
        """The producer published every member: set the barrier's ``size``, and fire its
        callback if that many have joined."""
        ...

    async def apply_follow(self, follow: Follow) -> None:
        """Apply a :class:`Follow` on its own, atomically (a task removed by an abort
        before it ran leaves its group and workflow this way)."""
        ...

    async def barrier(self, barrier_id: str) -> BarrierState | None:
        """Where the barrier stands, or None (never opened, or expired)."""
        ...

    async def barrier_results(self, barrier_id: str, start: int, stop: int) -> list[bytes | None]:
        """The outcomes joined in slots ``start`` to ``stop - 1``, in index order (None for
        a slot not joined yet), in one round trip."""
        ...

    async def abort_workflow(self, workflow_id: str) -> tuple[WorkflowRecord | None, list[str]]:
        """Atomically: if the workflow is running, set it ``aborted`` (nothing of it is
        published any more); returns its record as it was before (None: unknown), and,
        when it was running, the ids of its tasks the broker still holds (waiting or
        leased), for the caller to abort one by one."""
        ...

    async def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow's record, or None (never started, or expired)."""
        ...

    async def workflows(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRecord]:
        """Records (in ``state``, or all), newest first."""
        ...

    async def workflow_counts(self) -> dict[str, int]:
        """How many workflows the broker keeps, by state."""
        ...


@runtime_checkable
class FlowControl(Protocol):
    """``Capability.FLOW``: the shared state of flow limits (conveyor.flow), each step
    atomic on the broker's own clock, so every worker on every host sees one limit.

    A broker with it also takes ``Retry(delay, charge=False)``: the deferral of a task
    that a limit refused, uncharged."""

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        """Take a token from bucket ``key`` (``burst`` tokens, refilled at ``rate`` a
        second; a new bucket is full): 0.0 when taken, else the seconds until the next
        token (nothing taken). :func:`conveyor.flow.take_bucket` is the arithmetic."""
        ...

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """Take a permit of semaphore ``key`` for ``holder`` for ``lease`` seconds, if
        fewer than ``limit`` unexpired permits are held (expired ones are dropped first; a
        holder that has one keeps it, its lease renewed). False: none was free."""
        ...

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        """Push the leases of these (key, holder) permits to ``lease`` seconds from now
        (one that expired meanwhile, and may be another holder's now, is left alone)."""
        ...

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        """Give these (key, holder) permits back (one no longer held is ignored)."""
        ...

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        """Set each named mark to its value for ``ttl`` seconds (the newest write wins)."""
        ...

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        """The marks' values (None: never set, or expired)."""
        ...


@runtime_checkable
class Broker(Queue, AbortMarks, Admin, Counters, Workflows, Protocol):
    """A broker with every capability, as the built ones are. A broker that lacks some
    implements :class:`Queue` and what it has, and says so in ``capabilities``."""

    def result_store(self) -> ResultStore:
        """The result store that lives on the same server, for ``results=None``."""
        ...

    def schedule_store(self) -> ScheduleStore:
        """Where dynamic schedules and fired ticks are kept, on the same server."""
        ...

    def event_store(self) -> EventStore:
        """The capped log of worker and scheduler events, on the same server."""
        ...


@runtime_checkable
class TransactionalPublish(Protocol):
    """A broker that can publish inside the caller's own database transaction
    (``task.with_options(connection=conn)`` or ``session=session``): the tasks become
    visible to workers when that transaction commits, and vanish if it rolls back.
    PostgreSQL has it; other brokers refuse such a call with ``ConfigurationError``."""

    async def publish_in(self, transaction: object, batch: Sequence[Outgoing]) -> list[str]:
        """:meth:`Queue.publish`, through ``transaction`` (a driver connection or an ORM
        session the broker recognises)."""
        ...


@runtime_checkable
class ResultStore(Protocol):
    """Keeps encoded results and lets producers wait for them without polling."""

    url: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, batch: Sequence[StoredResult]) -> None:
        """Store results (and wake their waiters), each with its TTL."""
        ...

    async def get(self, task_id: str) -> bytes | None:
        """The stored result, or None if absent or expired."""
        ...

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        """The result as soon as it is stored, or None after ``timeout`` seconds.
        Push-based: a notification wakes the waiter; there is no polling loop."""
        ...

    async def delete(self, task_id: str) -> None: ...

    def clone(self) -> Self:
        """An unconnected store on the same backing store, for another event loop."""
        ...

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        """Store a progress snapshot for ``status()``."""
        ...

    async def get_progress(self, task_id: str) -> bytes | None: ...


@runtime_checkable
class StatusStore(Protocol):
    """A result store that keeps tasks' terminal statuses but not their values (the
    RabbitMQ ledger's, without ``results=``): status reads use :meth:`get_status`."""

    async def get_status(self, task_id: str) -> bytes | None:
        """The task's terminal result without its return value, or None."""
        ...


@runtime_checkable
class ScheduleStore(Protocol):
    """Dynamic schedule definitions (``app.schedules``).

    Once-per-tick needs nothing here: the scheduler publishes each tick with an
    idempotency key (:attr:`Outgoing.key`), and the broker's publish admits one copy.

    ``spec`` bytes are opaque to the store (the scheduler encodes them).
    """

    async def save_schedule(self, schedule_id: str, spec: bytes) -> None:
        """Insert or replace a schedule definition."""
        ...

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; False if it did not exist."""
        ...

    async def load_schedules(self) -> dict[str, bytes]:
        """Every stored schedule definition by id."""
        ...


@runtime_checkable
class EventStore(Protocol):
    """A capped, append-only log of encoded events shared by every process of a broker
    (``conveyor.events.EventLog`` encodes and decodes them).

    Each record gets an id that orders it after every earlier record; ids are opaque
    strings, compared only by the store. The store keeps about the last ``events_max``
    records (setting) and drops older ones; it is best-effort telemetry, not a durable
    history.
    """

    async def append(self, records: Sequence[bytes]) -> None:
        """Append records in order, in one round trip or transaction."""
        ...

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        """Up to ``limit`` (id, record) pairs after id ``after`` ("" = the oldest kept),
        oldest first."""
        ...

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        """The last ``limit`` (id, record) pairs, oldest first."""
        ...


def own_result_store(broker: Broker) -> ResultStore | None:
    """The result store on the broker's own server, or None when it keeps no results
    (no ``Capability.RESULTS``: results go to a store given as ``results=``)."""
    return broker.result_store() if Capability.RESULTS in broker.capabilities else None
