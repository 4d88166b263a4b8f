"""The scheduler: turns due ticks into enqueued tasks, exactly once per tick (G7).

Every scheduler process computes every tick; none is a leader. Each tick is published
with a deterministic idempotency key, ``tick:<schedule>:<fire time>``, so
the broker's publish dedupe lets exactly one copy in, whichever scheduler is first, and
whichever dies, pauses or reconnects in between. There is no window between "claimed"
and "enqueued" for a crash to lose a tick: the claim *is* the enqueue.

A tick is fired while it is at most the schedule's window late: ``schedule_grace`` for
the default ``"skip"`` policy, ``within`` for ``catch_up(within=...)``. Older ticks are
counted and logged as missed. The tick's key outlives that window (plus an hour), so a
late scheduler can never publish a tick twice.

A publish or a store read that fails or hangs (``schedule_send_timeout``) is logged and
retried on the next pass; the loop itself never stops on a broker fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from conveyor.brokers import shown_url
from conveyor.brokers.base import Capability, WorkerInfo
from conveyor.events import EventEmitter, EventLog, SchedulerTick
from conveyor.scheduler.schedule import CatchUp, Schedule
from conveyor.scheduler.triggers import At, Every
from conveyor.send import Call, Sent, send
from conveyor.task import CallOptions

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["Scheduler", "SchedulerStats", "Tick", "tick_key"]

log = logging.getLogger("conveyor.scheduler")

_KEY_MARGIN = 3600.0
_MAX_TICKS_PER_PASS = 500


def tick_key(schedule_id: str, fire_time: float) -> str:
    """The idempotency key of one (schedule, fire time)."""
    return f"tick:{schedule_id}:{fire_time:.3f}"


@dataclass(frozen=True, slots=True)
class Tick:
    """One (schedule, fire time) this scheduler published; ``fresh`` is False when
    another scheduler had already enqueued it."""

    schedule_id: str
    fire_time: float
    task_id: str
    fresh: bool


@dataclass(slots=True)
class SchedulerStats:
    """Counters since start: ticks enqueued here, ticks already enqueued by a peer,
    ticks missed (too late for their policy), passes whose publish or read failed."""

    enqueued: int = 0
    duplicates: int = 0
    missed: int = 0
    errors: int = 0
    last_pass: float = 0.0
    recent: list[Tick] = field(default_factory=list)


class Scheduler:
    """Fires the app's schedules. ``await scheduler.run(stop)``, or ``async with
    Scheduler(app): ...`` to run it in the background of the current loop.

    ``skip_first_run`` ignores ticks from before the scheduler started, even those still
    within their window (taskiq's ``--skip-first-run``).
    """

    def __init__(
        self,
        app: Conveyor,
        *,
        skip_first_run: bool = False,
        grace: float | None = None,
        refresh: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        self.skip_first_run = skip_first_run
        self.grace = settings.schedule_grace if grace is None else grace
        self.refresh = settings.schedule_refresh if refresh is None else refresh
        self.send_timeout = settings.schedule_send_timeout if send_timeout is None else send_timeout
        self.stats = SchedulerStats()
        self.scheduler_id = f"scheduler-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._clock = settings.clock
        self._started = 0.0
        self._cursors: dict[str, float] = {}
        self._schedules: list[Schedule] = []
        self._loaded_at = float("-inf")
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_heartbeat = float("-inf")
        self._emitter: EventEmitter | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or :meth:`stop` is called)."""
        if stop is not None:
            self._stop = stop
        self._started = self._clock.now()
        log.info(
            "scheduler %s started on %s (grace %.1fs)",
            self.scheduler_id,
            shown_url(self.app.settings.broker_url),
            self.grace,
        )
        while not self._stop.is_set():
            try:
                delay = await self.run_pass()
            except Exception:  # a bug or an unexpected fault must not end the loop
                log.exception("scheduler pass failed; retrying in 1s")
                self.stats.errors += 1
                delay = 1.0
            await self._sleep(delay)
        await self._clear_heartbeat()
        if self._emitter is not None:
            await self._emitter.aclose()
        log.info("scheduler %s stopped", self.scheduler_id)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current pass."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Re-read schedules now (after a local change)."""
        self._loaded_at = float("-inf")
        self._wake.set()

    async def serve(self) -> None:
        """Connect the app and run until SIGTERM or SIGINT (``conveyor scheduler``)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        try:
            async with self.app:  # no startup handlers: they build state for tasks
                await self.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def __aenter__(self) -> Scheduler:
        self._task = asyncio.create_task(self.run(), name="conveyor-scheduler")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        if self._task is not None:
            await self._task

    # -- one pass ------------------------------------------------------------------

    async def run_pass(self) -> float:
        """Publish every due tick once; returns seconds until the next one is due."""
        now = self._clock.now()
        if not self._started:
            self._started = now
        await self._reload(now)
        await self._heartbeat(now)
        due: list[tuple[Schedule, float]] = []
        advanced: dict[str, float] = {}
        for schedule in self._schedules:
            if schedule.paused:
                self._cursors[schedule.id] = now  # ticks while paused are skipped
                continue
            ticks, cursor = self._due(schedule, now)
            due.extend((schedule, t) for t in ticks)
            advanced[schedule.id] = cursor
        if due and not await self._publish(due):
            return 1.0  # keep the cursors: the same ticks are tried again
        self._cursors.update(advanced)
        self.stats.last_pass = now
        await self._forget_spent()
        return self._until_next(self._clock.now())

    def _due(self, schedule: Schedule, now: float) -> tuple[list[float], float]:
        window = schedule.window(self.grace)
        cursor = self._cursors.get(schedule.id)
        first_look = cursor is None
        if cursor is None:
            cursor = self._started if self.skip_first_run else now - window
            self._cursors[schedule.id] = cursor  # safe now: nothing at or before it is due
        cursor = max(cursor, schedule.active_from)
        ticks: list[float] = []
        fire = schedule.next_after(cursor)
        missed = 0
        while fire is not None and fire <= now and len(ticks) < _MAX_TICKS_PER_PASS:
            if now - fire > window:
                missed += 1
                # jump to the window's start instead of walking every missed tick
                skipped_to = schedule.next_after(now - window)
                if skipped_to is not None and skipped_to > fire:
                    missed += self._count_between(schedule, fire, skipped_to)
                    # past every missed tick even when skipped_to is not due yet: else the
                    # next pass finds them again, and sleeps 1 ms (next_after(cursor) is
                    # in the past) until skipped_to, logging them each time
                    cursor = now - window
                    fire = skipped_to
                    continue
            else:
                ticks.append(fire)
            cursor = fire
            fire = schedule.next_after(fire)
        if first_look and not isinstance(schedule.missed, CatchUp) and len(ticks) > 1:
            # "skip" on a scheduler's first look: one late run at most, not a burst
            self._cursors[schedule.id] = ticks[-2]
            ticks = ticks[-1:]
        if missed:
            self.stats.missed += missed
            log.warning(
                "schedule %r: %d run(s) missed, more than %.1fs late (policy %s)",
                schedule.id,
                missed,
                window,
                "catch_up" if isinstance(schedule.missed, CatchUp) else "skip",
            )
        return ticks, cursor

    async def _forget_spent(self) -> None:
        """Delete dynamic one-off (``at``) schedules whose tick is behind them, enqueued
        or too late: nothing can fire them again. Kept when their task is not registered
        here (another scheduler may fire them) or the delete fails (tried next pass)."""
        spent = [
            s
            for s in self._schedules
            if s.origin == "dynamic"
            and isinstance(s.trigger, At)
            and not s.paused
            and s.task in self.app.tasks
            and s.next_after(max(self._cursors.get(s.id, s.active_from), s.active_from)) is None
        ]
        if not spent:
            return
        try:
            removed = await asyncio.wait_for(
                self.app.schedules.remove_spent(spent), self.send_timeout
            )
        except Exception as exc:
            log.warning(
                "scheduler could not delete %d spent one-off schedule(s) (%s: %s); retrying",
                len(spent),
                type(exc).__name__,
                exc,
            )
            return
        gone = {s.id for s in spent}
        self._schedules = [s for s in self._schedules if s.id not in gone]
        for schedule_id in gone:
            self._cursors.pop(schedule_id, None)
        if removed:
            log.info("one-off schedule(s) %s done: deleted", ", ".join(map(repr, removed)))
        if len(removed) < len(gone):
            self._loaded_at = float("-inf")  # one was replaced or removed: re-read the store

    @staticmethod
    def _count_between(schedule: Schedule, first: float, last: float) -> int:
        # ticks strictly between first and last, capped: only the log line uses it
        count, fire = 0, schedule.next_after(first)
        while fire is not None and fire < last and count < 100_000:
            count += 1
            fire = schedule.next_after(fire)
        return count

    async def _publish(self, due: Sequence[tuple[Schedule, float]]) -> bool:
        calls: list[tuple[Schedule, float, Call]] = []
        for schedule, fire in due:
            call = self._call(schedule, fire)
            if call is not None:
                calls.append((schedule, fire, call))
        if not calls:
            return True
        try:  # the one send path: a tick whose build or before_enqueue fails is skipped
            sent = await asyncio.wait_for(
                send(
                    [call for _, _, call in calls],
                    self.app._connections.current(),
                    self.app.settings,
                    self.app.hooks,
                    skip_failed=True,
                ),
                self.send_timeout,
            )
        except Exception as exc:  # includes TimeoutError: a hung send is abandoned
            self.stats.errors += 1
            log.error(
                "scheduler could not enqueue %d tick(s) (%s: %s); retrying",
                len(calls),
                type(exc).__name__,
                exc,
            )
            return False
        fire_of = {id(call): (schedule, fire) for schedule, fire, call in calls}
        ticks: list[tuple[Schedule, float, Sent]] = []
        for item in sent:
            schedule, fire = fire_of[id(item.call)]
            due_at = datetime.fromtimestamp(fire, UTC).isoformat(timespec="seconds")
            if item.fresh:
                self.stats.enqueued += 1
                log.info(
                    "schedule %r fired for %s: %s[%s] enqueued",
                    schedule.id,
                    due_at,
                    schedule.task,
                    item.task_id[:8],
                )
            else:
                self.stats.duplicates += 1
                log.debug(
                    "schedule %r for %s: already enqueued by another scheduler (%s)",
                    schedule.id,
                    due_at,
                    item.task_id[:8],
                )
            self.stats.recent.append(Tick(schedule.id, fire, item.task_id, item.fresh))
            ticks.append((schedule, fire, item))
        del self.stats.recent[:-100]
        await self._emit_ticks(ticks)
        return True

    async def _emit_ticks(self, ticks: Sequence[tuple[Schedule, float, Sent]]) -> None:
        """Tell on_event hooks about the ticks, and write them to the event log (through
        the same emitter as a worker's events)."""
        events = self._events()
        if not events.active:
            return
        now = self._clock.now()
        for schedule, fire, sent in ticks:
            events.emit(
                SchedulerTick(
                    at=now,
                    scheduler=self.scheduler_id,
                    schedule_id=schedule.id,
                    fire_time=fire,
                    task_id=sent.task_id,
                    task=schedule.task,
                    fresh=sent.fresh,
                )
            )
        await events.flush(self.send_timeout)

    def _events(self) -> EventEmitter:
        if self._emitter is None:
            app = self.app
            log_ = None
            if app.settings.events and Capability.EVENTS in app.broker.capabilities:
                log_ = EventLog.of(app)
            self._emitter = EventEmitter(app.hooks.of("on_event"), log_)
        return self._emitter

    def _call(self, schedule: Schedule, fire: float) -> Call | None:
        task = self.app.tasks.get(schedule.task)
        if task is None:
            log.error(
                "schedule %r: task %r is not registered in this app; tick skipped",
                schedule.id,
                schedule.task,
            )
            return None
        labels = {
            **schedule.labels,
            "schedule": schedule.id,
            "scheduled_for": datetime.fromtimestamp(fire, UTC).isoformat(),
        }
        # the key is deterministic and does the dedupe (for at least the tick's window);
        # the task id is fresh, so a peer's earlier copy shows up as another id in the answer
        options = CallOptions(
            key=tick_key(schedule.id, fire),
            labels=labels,
            key_ttl=schedule.window(self.grace) + _KEY_MARGIN,
        )
        return Call(task, schedule.args, schedule.kwargs, options)

    # -- schedules, heartbeat, sleeping ----------------------------------------------

    async def _reload(self, now: float) -> None:
        if now - self._loaded_at < self.refresh:
            return
        try:
            self._schedules = await asyncio.wait_for(self.app.schedules.load(), self.send_timeout)
            self._loaded_at = now
            await self._activate_new_catch_ups(now)
        except Exception as exc:
            self.stats.errors += 1
            if not self._schedules:
                self._schedules = self.app.schedules.in_code()
            log.error(
                "scheduler could not read the schedule store (%s: %s); using the last known "
                "schedules",
                type(exc).__name__,
                exc,
            )
            self._loaded_at = now

    async def _activate_new_catch_ups(self, now: float) -> None:
        # A code schedule has no "added at" time. For catch_up, the first scheduler that sees
        # one records it, so a first deploy does not replay the whole window as missed.
        for index, schedule in enumerate(self._schedules):
            if (
                schedule.origin == "code"
                and (isinstance(schedule.missed, CatchUp) or _from_activation(schedule))
                and not schedule.active_from
            ):
                self._schedules[index] = await asyncio.wait_for(
                    self.app.schedules.activate(schedule, now), self.send_timeout
                )

    async def _clear_heartbeat(self) -> None:
        info = self._info(self._clock.now())
        try:  # leave `conveyor status` at once rather than when the heartbeat expires
            await asyncio.wait_for(self.app.broker.heartbeat(info, -1.0), self.send_timeout)
        except Exception:
            log.debug("could not clear the scheduler heartbeat", exc_info=True)

    def _info(self, now: float) -> WorkerInfo:
        return WorkerInfo(
            worker_id=self.scheduler_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=[],
            concurrency=0,
            running=0,
            processed=self.stats.enqueued,
            started_at=self._started,
            last_seen=now,
            role="scheduler",
        )

    async def _heartbeat(self, now: float) -> None:
        interval = self.app.settings.heartbeat_interval
        if now - self._last_heartbeat < interval:
            return
        self._last_heartbeat = now
        info = self._info(now)
        try:
            await asyncio.wait_for(
                self.app.broker.heartbeat(info, ttl=max(3 * interval, 10.0)), self.send_timeout
            )
        except Exception as exc:
            log.warning("scheduler heartbeat failed (%s: %s)", type(exc).__name__, exc)

    def _until_next(self, now: float) -> float:
        soonest = self.refresh
        for schedule in self._schedules:
            if schedule.paused:
                continue
            fire = schedule.next_after(self._cursors.get(schedule.id, now))
            if fire is not None:
                soonest = min(soonest, fire - now)
        return max(soonest, 0.001)

    async def _sleep(self, delay: float) -> None:
        if self._stop.is_set():
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)


def _from_activation(schedule: Schedule) -> bool:
    """An ``every(start="now")`` schedule: it needs its activation time to tick."""
    return isinstance(schedule.trigger, Every) and schedule.trigger.from_activation
