"""The worker: fetch as many deliveries as there are free slots, run each in its own
asyncio task, and own the background jobs (reaper, heartbeat, lease thread).

Shutdown (``stop()``, or SIGTERM/SIGINT through :func:`run_worker`): stop fetching, let
in-flight tasks finish within ``grace`` seconds, then cancel the rest and release them
uncharged so they restart at once elsewhere.

Abort: the abort watcher waits for the broker's abort signals (pushed) and, on each one or
every ``abort_check_interval``, asks for the abort marks of the deliveries it holds; a
marked one is handed to :meth:`Executor.request_abort`. Nothing is added to the hot path:
the only per-task cost is a set lookup.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.brokers import shown_url
from conveyor.brokers.base import Broker, Capability, Delivery, Release, WorkerInfo
from conveyor.clock import FaultPause, sleep_unless
from conveyor.errors import ConfigurationError
from conveyor.events import EventEmitter, EventLog, WorkerHeartbeat
from conveyor.observability.logging import install_task_context
from conveyor.settings import MAX_CONCURRENCY, Settings
from conveyor.worker.executor import Executor
from conveyor.worker.lease import LeaseRenewer
from conveyor.worker.runners import ProcessRunner, SyncRunner
from conveyor.worker.settle import Settler
from conveyor.worker.tally import Tally

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["ISOLATE_AFTER_CRASHES", "Worker", "run_worker"]

ISOLATE_AFTER_CRASHES = 2
# how long a signalled task id is remembered, for a delivery claimed just before its abort
# whose signal arrives before the worker starts it
_SIGNAL_MEMORY = 10.0
# the shortest time between two heartbeats sent because tasks finished
_REPORT_GAP = 0.5
# deliveries fetched ahead of free slots: what the worker starts in this many seconds
_AHEAD_SECONDS = 0.05

log = logging.getLogger("conveyor.worker")


class Worker:
    """A worker running in the current event loop.

    >>> async with app, app.worker(concurrency=10):    # doctest: +SKIP
    ...     await (await task.kiq()).get(timeout=5)
    """

    def __init__(
        self,
        app: Conveyor,
        *,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        grace: float | None = None,
        max_tasks: int | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.concurrency = settings.concurrency if concurrency is None else concurrency
        self.queues = list(queues or settings.queues)
        self.grace = settings.grace if grace is None else grace
        self.max_tasks = max_tasks
        _check_worker_options(self.concurrency, self.grace, max_tasks)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.processed = 0
        self.claimed = 0
        self.started_at = 0.0
        self._held: dict[Delivery, None] = {}  # ordered set: the deliveries in hand
        self._running: set[asyncio.Task[None]] = set()  # bodies running, or settling
        self._busy: set[Delivery] = set()  # deliveries whose body has not ended: the slots
        # fetched ahead of a free slot, started the moment one frees (see _fetch_loop)
        self._ahead: deque[Delivery] = deque()
        self._ended = 0  # bodies ended, for the completion rate
        self._rate = 0.0  # bodies ended per second, smoothed
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._halt = asyncio.Event()
        self._report = asyncio.Event()  # tasks finished since the last heartbeat
        self._loops: list[asyncio.Task[None]] = []
        self._fetcher: asyncio.Task[None] | None = None
        self._executor: Executor | None = None
        self._settler: Settler | None = None
        self._renewer: LeaseRenewer | None = None
        self._runner: SyncRunner | None = None
        self._processes: ProcessRunner | None = None
        self._events = EventEmitter()
        self._tally: Tally | None = None  # outcomes counted, flushed with the heartbeat
        self._owns_connection = False
        self._broker: Broker  # set by start()
        self._alone_waiting: Delivery | None = None
        self._alone_running: Delivery | None = None
        self._abort_watch: asyncio.Task[None] | None = None
        self._signalled: dict[str, float] = {}  # task id -> when its abort was signalled

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Connect (if the app is not), run startup handlers and start fetching."""
        if not self.app.is_connected:
            await self.app.connect()
            self._owns_connection = True
        self._runner = SyncRunner(self.concurrency)
        self._processes = _process_runner(self.app)
        await run_handlers(self.app.startup_handlers)
        settings = self.app.settings
        self.started_at = settings.clock.now()
        install_task_context()
        broker = self._broker = self.app.broker
        check_flow_capability(self.app)
        event_log = None
        if settings.events and Capability.EVENTS in broker.capabilities:
            event_log = EventLog(broker.event_store())
        self._events = EventEmitter(self.app.hooks.of("on_event"), event_log)
        if settings.task_counts and Capability.COUNTS in broker.capabilities:
            self._tally = Tally()
        self._settler = Settler(self.app)
        self._executor = Executor(
            self.app,
            self._settler,
            settle_retry_for=max(settings.lease, 1.0),
            run_sync=self._runner,
            run_process=self._processes,
            worker_id=self.worker_id,
            emitter=self._events,
            body_done=self._body_done,
            tally=self._tally,
        )
        self._renewer = LeaseRenewer(
            broker.lease_keeper,
            self._held,
            settings.lease,
            self._lease_lost_threadsafe(),
            monotonic=settings.clock.monotonic,
        )
        self._renewer.start()
        can = broker.capabilities
        if Capability.ABORT in can:
            # listen for abort signals before the first fetch, so none for ours is missed
            self._signalled = dict.fromkeys(
                await broker.wait_abort_signal(0), settings.clock.monotonic()
            )
        self._fetcher = asyncio.create_task(self._fetch_loop(), name="conveyor-fetch")
        if Capability.ABORT in can:
            self._abort_watch = asyncio.create_task(self._watch_aborts(), name="conveyor-aborts")
        self._loops = [
            asyncio.create_task(
                self._every(settings.reap_interval, self._reap), name="conveyor-reap"
            ),
            asyncio.create_task(self._heartbeat_loop(), name="conveyor-heartbeat"),
        ]
        if any(t.options.flow and t.options.flow.concurrency for t in self.app.tasks.values()):
            executor = self._executor
            self._loops.append(
                asyncio.create_task(
                    self._every(settings.lease / 3, executor.renew_permits),
                    name="conveyor-permits",
                )
            )
        await self._heartbeat()
        log.info(
            "worker %s started on %s: queues=%s concurrency=%d",
            self.worker_id,
            shown_url(settings.broker_url),
            ",".join(self.queues),
            self.concurrency,
        )

    def request_stop(self) -> None:
        """Ask the worker to stop gracefully (safe from signal handlers): a fetch waiting
        for work returns at once."""
        self._stopping.set()
        self._slot_free.set()
        if self._fetcher is not None:
            self._broker.interrupt_fetch()

    async def wait_stopped(self) -> None:
        """Wait until a stop was requested (by a signal, or max_tasks reached)."""
        await self._stopping.wait()

    async def stop(self) -> None:
        """Graceful stop: no new fetches, in-flight tasks get ``grace`` seconds, the rest
        are cancelled and released uncharged."""
        if self._stopped.is_set():
            return
        self.request_stop()
        if self._fetcher is not None:
            await self._fetcher  # a fetch in progress was interrupted by request_stop()
        unstarted = list(self._ahead)
        self._ahead.clear()
        if self._alone_waiting is not None:
            unstarted.append(self._alone_waiting)
            self._alone_waiting = None
        for delivery in unstarted:  # never started: hand them back uncharged
            self._held.pop(delivery, None)
        await self._release(unstarted)
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=self.grace)
            if pending:
                log.warning(
                    "grace of %.1fs over: cancelling %d task(s) and releasing them",
                    self.grace,
                    len(pending),
                )
                if self._executor is not None:
                    self._executor.shut_down()
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=max(self.app.settings.lease, 5.0))
        self._halt.set()
        self._report.set()
        if self._abort_watch is not None:  # a pure waiter: cancelling it is its way out
            for _ in range(10):  # a swallowed cancel: it sees _halt on its next turn
                self._abort_watch.cancel()
                await asyncio.wait([self._abort_watch], timeout=0.5)
                if self._abort_watch.done():
                    break
            else:
                log.warning("the abort watcher did not stop within 5 s; left behind")
        _, stuck = await asyncio.wait(self._loops, timeout=5.0)
        for loop_task in stuck:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._settler is not None:
            await self._settler.aclose()
        try:  # what finished since the last heartbeat: a graceful stop loses no count
            await self._flush_counts()
        except Exception:
            log.warning("could not store the last task counts", exc_info=True)
        await self._events.aclose()
        if self._renewer is not None:
            await asyncio.to_thread(self._renewer.stop)
        try:  # leave `conveyor status` at once rather than after the heartbeat expires
            if Capability.ADMIN in self._broker.capabilities:
                await self._broker.heartbeat(self.info(), -1.0)
        except Exception:
            log.debug("could not clear the heartbeat", exc_info=True)
        try:
            await run_handlers(self.app.shutdown_handlers)
        finally:
            self._stopped.set()
            if self._runner is not None:
                self._runner.close()
            if self._processes is not None:
                await self._processes.aclose()
            if self._owns_connection:
                await self.app.close()
        log.info("worker %s stopped after %d task(s)", self.worker_id, self.processed)

    # -- fetching ------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        broker = self._broker
        settings = self.app.settings
        wait, lease, clock = settings.fetch_wait, settings.lease, settings.clock
        pause = _fault_pause(settings)
        sampled = (clock.monotonic(), 0)
        while not self._stopping.is_set():
            if self._alone_waiting is not None or self._alone_running is not None:
                # a recovered delivery runs alone: wait for the others to finish, run it,
                # and fetch nothing meanwhile (its worker died; it may kill this one too)
                if self._alone_running is None and not self._running:
                    self._alone_running, self._alone_waiting = self._alone_waiting, None
                    assert self._alone_running is not None
                    self._spawn(self._alone_running)
                    continue
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            # a slot frees when its body ends, while its settlement is still on the way
            # (settled in batches, a round trip later); settling ones are capped too, so
            # a broker that stops answering settles cannot pile deliveries up
            self._start_ahead()
            sampled = self._sample_rate(clock.monotonic(), sampled)
            free = min(
                self.concurrency - len(self._busy) + self._ahead_target() - len(self._ahead),
                2 * self.concurrency - len(self._running) - len(self._ahead),
            )
            if self.max_tasks is not None:
                free = min(free, self.max_tasks - self.claimed)
                if free <= 0 and not self._running:
                    self.request_stop()  # recycled: the supervisor starts a fresh process
                    break
            # with deliveries in hand the slots are fed from them: refill in batches of
            # half the target, not one round trip per task
            if free <= 0 or (self._ahead and free < self._ahead_target() // 2):
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            asked = clock.monotonic()
            try:
                deliveries = await broker.fetch(self.queues, free, wait)
            except Exception:
                # G6: a broker fault never kills the worker; back off and try again
                log.warning("fetch failed; retrying in %.2fs", pause.current, exc_info=True)
                await pause.wait()
                continue
            pause.reset()
            for delivery in deliveries:  # min: a broker may have ended one already
                delivery.lease_until = min(delivery.lease_until, asked + lease)
            if self._stopping.is_set():
                await self._release(deliveries)
                break
            surplus = []
            for delivery in deliveries:
                # a task whose workers died twice in a row may be what kills them: run it
                # alone. After one crash it runs normally, so a dead worker's tasks still
                # restart within lease + reap interval (G3)
                if delivery.crashes < ISOLATE_AFTER_CRASHES:
                    if len(self._busy) < self.concurrency:
                        self._spawn(delivery, eager=True)
                    else:
                        self._held[delivery] = None  # its lease is kept while it waits
                        self._ahead.append(delivery)
                elif self._alone_waiting is None:
                    self._alone_waiting = delivery
                    self._held[delivery] = None  # keep its lease while it waits
                else:
                    surplus.append(delivery)  # one isolated run at a time per worker
            await self._release(surplus)

    def _spawn(self, delivery: Delivery, *, eager: bool = False) -> None:
        """Run ``delivery`` in a task of its own. ``eager`` (from the fetch loop only, on
        Python 3.12+): the task runs at once up to its first wait, so a short body ends
        and its settlement joins the batch without a trip through the event loop's queue.
        Never from a callback of another task (a body ending), which would nest them."""
        assert self._executor is not None
        self.claimed += 1
        self._held[delivery] = None
        self._busy.add(delivery)
        if self._signalled and delivery.task_id in self._signalled:
            self._executor.request_abort(delivery)  # it never starts
        name = f"conveyor-task-{delivery.task_id}"
        if sys.version_info >= (3, 12) and eager:
            loop = asyncio.get_running_loop()
            task = asyncio.Task(self._execute(delivery), loop=loop, name=name, eager_start=True)
        else:
            task = asyncio.create_task(self._execute(delivery), name=name)
        self._running.add(task)
        task.add_done_callback(self._finished)

    async def _execute(self, delivery: Delivery) -> None:
        assert self._executor is not None
        try:
            await self._executor.execute(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # the executor settles every path itself; this is a bug guard, not a flow
            try:
                await self._executor.contain_bug(delivery, exc)
            except Exception:
                log.exception(
                    "could not settle %s after a worker bug; it returns after its lease",
                    delivery.task_id,
                )
        finally:
            self._held.pop(delivery, None)
            self._busy.discard(delivery)  # settled without running a body
            if self._alone_running is delivery:
                self._alone_running = None
            self._executor.forget(delivery)
            self.processed += 1

    def _body_done(self, delivery: Delivery) -> None:
        if delivery in self._busy:
            self._busy.discard(delivery)
            self._ended += 1
            self._start_ahead()
            self._slot_free.set()

    def _start_ahead(self) -> None:
        """Start deliveries fetched ahead while slots are free (no round trip between a
        body ending and the next one starting)."""
        ahead = self._ahead
        while ahead and len(self._busy) < self.concurrency and not self._stopping.is_set():
            self._spawn(ahead.popleft())

    def _sample_rate(self, now: float, sampled: tuple[float, int]) -> tuple[float, int]:
        at, ended = sampled
        if now - at < 0.05:
            return sampled
        self._rate = 0.5 * self._rate + 0.5 * (self._ended - ended) / (now - at)
        return now, self._ended

    def _ahead_target(self) -> int:
        """How many deliveries to hold ahead of free slots: what this worker starts in
        :data:`_AHEAD_SECONDS` at its current completion rate, at most its concurrency.
        Short tasks get a full extra batch; minutes-long ones none, so a worker never
        hoards work that idle workers could start (Celery's prefetch-multiplier trap)."""
        if self.max_tasks is not None or self._alone_running is not None:
            return 0
        return min(self.concurrency, int(self._rate * _AHEAD_SECONDS))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_free.set()
        self._report.set()  # `conveyor status` shows what is done, not 5 s later

    async def _release(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._broker.settle([(d, Release()) for d in deliveries])

    # -- background jobs -----------------------------------------------------------

    def _lease_lost_threadsafe(self) -> Callable[[Delivery], None]:
        loop = asyncio.get_running_loop()

        def lost(delivery: Delivery) -> None:
            def mark() -> None:
                if delivery not in self._held:
                    return  # it settled meanwhile (the renewer raced its ack): not lost
                if self._executor is not None:
                    self._executor.lose(delivery)
                log.warning(
                    "lease of task %s was lost (another worker may run it)", delivery.task_id
                )

            loop.call_soon_threadsafe(mark)

        return lost

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        # stopped by the _halt event rather than by cancellation alone: a client library
        # that swallows CancelledError inside job() must not keep this loop alive
        clock = self.app.settings.clock
        while not await sleep_unless(clock, interval, self._halt):
            try:
                await job()
            except Exception:
                log.warning(
                    "background job %s failed; will retry",
                    getattr(job, "__name__", job),
                    exc_info=True,
                )

    async def _watch_aborts(self) -> None:
        """Hand deliveries whose abort was requested to the executor. Woken by the broker's
        signal within milliseconds; every ``abort_check_interval`` it asks for the marks
        of what it holds anyway, so a lost signal costs at most that long."""
        assert self._executor is not None
        broker, executor = self._broker, self._executor
        settings = self.app.settings
        interval, clock = settings.abort_check_interval, settings.clock
        pause = _fault_pause(settings)
        # ended by stop()'s cancel, and by the _halt event: a client library that swallows
        # the CancelledError (redis-py's health-check ping does) must not keep it alive
        while not self._halt.is_set():
            try:
                signalled = await broker.wait_abort_signal(interval)
                now = clock.monotonic()
                for task_id in signalled:
                    self._signalled[task_id] = now
                held = list(self._held)
                if held:
                    marks = await broker.abort_marks(held)
                    for delivery, marked in zip(held, marks, strict=True):
                        if marked and not executor.is_aborting(delivery):
                            log.info("task %s: abort requested; cancelling it", delivery.task_id)
                            executor.request_abort(delivery)
                while self._signalled:
                    oldest = next(iter(self._signalled))
                    if now - self._signalled[oldest] < _SIGNAL_MEMORY:
                        break
                    del self._signalled[oldest]
                pause.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                # G6: a broker fault never kills the worker; marks are checked again later
                log.warning("abort check failed; retrying in %.2fs", pause.current, exc_info=True)
                await pause.wait(unless=self._halt)

    async def _reap(self) -> None:
        moved = await self._broker.reap()
        if moved:
            log.info("reaper made %d message(s) ready again", moved)

    def info(self) -> WorkerInfo:
        """This worker's heartbeat record."""
        now = self.app.settings.clock.now()
        return WorkerInfo(
            worker_id=self.worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            running=len(self._running),
            processed=self.processed,
            started_at=self.started_at,
            last_seen=now,
            current_tasks=[d.task_id for d in list(self._held)[:50]],
        )

    async def _heartbeat_loop(self) -> None:
        """Heartbeat every ``heartbeat_interval``, and soon after tasks finish (at most
        every ``_REPORT_GAP`` seconds), so the processed count others read keeps up."""
        interval, clock = self.app.settings.heartbeat_interval, self.app.settings.clock
        gap = min(_REPORT_GAP, interval)
        while not self._halt.is_set():
            await sleep_unless(clock, interval, self._report)  # stop() sets it too
            if self._halt.is_set():
                return
            self._report.clear()
            try:
                await self._heartbeat()
            except Exception:
                log.warning("heartbeat failed; will retry", exc_info=True)
            await sleep_unless(clock, gap, self._halt)  # later finishes: the next beat

    async def _heartbeat(self) -> None:
        ttl = max(self.app.settings.heartbeat_interval * 3, 1.0)
        info = self.info()
        if Capability.ADMIN in self._broker.capabilities:  # where `conveyor status` looks
            await self._broker.heartbeat(info, ttl)
        await self._flush_counts()
        if self._events.active:
            event = WorkerHeartbeat(
                at=info.last_seen,
                worker=info.worker_id,
                hostname=info.hostname,
                pid=info.pid,
                queues=info.queues,
                concurrency=info.concurrency,
                running=info.running,
                processed=info.processed,
                utilization=info.running / info.concurrency,
                current_tasks=info.current_tasks,
            )
            self._events.emit(event)

    async def _flush_counts(self) -> None:
        """Add what the tally counted since the last flush to the broker's counters, in
        one batch; on failure the counts wait for the next flush."""
        tally = self._tally
        if tally is None or not tally:
            return
        counts = tally.take()
        try:
            await self._broker.record_counts(counts)
        except BaseException:
            tally.give_back(counts)
            raise


def check_flow_capability(app: Conveyor) -> None:
    """Refuse to start a worker for tasks with rate or concurrency limits or debounce
    on a broker without ``Capability.FLOW``: they could never run as declared."""
    if Capability.FLOW in app.broker.capabilities:
        return
    for task in app.tasks.values():
        flow = task.options.flow
        if flow is not None and (flow.gated or flow.debounce):
            raise ConfigurationError(
                f"task {task.name!r} has a rate limit, a concurrency limit or debounce, "
                f"which need flow control, and the broker at {shown_url(app.broker.url)} "
                "does not have it (docs/flow-control.md lists the brokers that do)"
            )


async def run_handlers(handlers: Sequence[Callable[[], Any]]) -> None:
    """Run startup or shutdown handlers in order, awaiting the async ones."""
    for handler in handlers:
        value = handler()
        if inspect.isawaitable(value):
            await value


def _process_runner(app: Conveyor) -> ProcessRunner:
    """The worker's pool for ``runner="process"`` tasks, which starts no process before
    the first such task runs; the modules of the app's process tasks are preloaded."""
    modules = sorted({task.location[0] for task in app.tasks.values() if task.in_process})
    return ProcessRunner(app.settings.process_pool_size, preload=modules)


def _fault_pause(settings: Settings) -> FaultPause:
    return FaultPause(settings.clock, settings.fault_pause, settings.fault_pause_max)


def _check_worker_options(concurrency: object, grace: object, max_tasks: object) -> None:
    """The same ranges as the settings of the same names (settings.RULES)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise ConfigurationError(f"worker concurrency must be an int, got {concurrency!r}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigurationError(
            f"worker concurrency must be >= 1 and <= {MAX_CONCURRENCY}, got {concurrency}"
        )
    if (
        isinstance(grace, bool)
        or not isinstance(grace, int | float)
        or not (math.isfinite(grace) and 0 <= grace <= 86400)
    ):
        raise ConfigurationError(f"worker grace must be 0 to 86400 seconds, got {grace!r}")
    if max_tasks is not None and (
        isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1
    ):
        raise ConfigurationError(f"worker max_tasks must be an int >= 1, got {max_tasks!r}")


def run_worker(
    app: Conveyor,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    grace: float | None = None,
    max_tasks: int | None = None,
    on_started: Callable[[], None] | None = None,
    connect: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run a worker in this process until SIGTERM/SIGINT (or ``max_tasks``); returns the
    exit code. This is what each ``conveyor worker`` child runs. ``connect`` connects the
    app (default ``app.connect``; the child's waits for the broker). ``on_started`` is
    called once the worker has connected, run the startup handlers and begun fetching: an
    error raised before that is a failure to start, one raised after it a crash."""

    async def main() -> int:
        await (connect or app.connect)()
        try:
            worker = app.worker(concurrency, queues, grace=grace, max_tasks=max_tasks)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.request_stop)
            await worker.start()
            if on_started is not None:
                on_started()
            started = time.monotonic()
            try:
                await worker.wait_stopped()
            finally:
                await worker.stop()
            log.debug("worker ran %.1fs", time.monotonic() - started)
        finally:
            await app.close()
        return 0

    return asyncio.run(main())
