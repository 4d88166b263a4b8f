"""``app.schedules``: the schedules in code plus the dynamic ones in the broker's store.

>>> await app.schedules.add("nightly-report", report, cron="0 3 * * *", kwargs={"team": "a"})
>>> await app.schedules.pause("nightly-report")                     # doctest: +SKIP
>>> [(s.schedule.id, s.next_run) for s in await app.schedules.list()]  # doctest: +SKIP

Code schedules (``@app.task(schedule=...)``) cannot be removed at run time, only paused:
a pause (and a resume) is stored as an override record under the same id.

On a broker without ``Capability.SCHEDULES`` only the code schedules exist: they fire
from the scheduler's start (their catch-up window is not remembered across restarts),
and changing schedules at run time raises :class:`~conveyor.errors.ConfigurationError`.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor.brokers import redact_url
from conveyor.brokers.base import Capability, ScheduleStore
from conveyor.errors import ConfigurationError, UnknownTask
from conveyor.scheduler import schedule as build
from conveyor.scheduler.schedule import (
    MissedPolicy,
    Schedule,
    activated,
    anchored,
    decode_schedule,
    encode_schedule,
)
from conveyor.scheduler.triggers import At, InvalidSchedule
from conveyor.send import Call, build_message, encode
from conveyor.task import CallOptions, Task, TaskHandle

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["ScheduleBook", "ScheduleInfo", "UnknownSchedule"]

log = logging.getLogger("conveyor.scheduler")


class UnknownSchedule(InvalidSchedule, KeyError):
    """No schedule has this id."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as ``list()`` reports it, with its next fire time (None: never again,
    or paused)."""

    schedule: Schedule
    next_run: datetime | None


class ScheduleBook:
    """Add, remove, pause, resume and list schedules; reached as ``app.schedules``."""

    def __init__(self, app: Conveyor) -> None:
        self._app = app

    # -- reading -------------------------------------------------------------------

    def in_code(self) -> list[Schedule]:
        """Schedules declared with ``@app.task(schedule=[...])``, as declared."""
        return [s for task in self._app.tasks.values() for s in task.options.schedule]

    async def load(self) -> list[Schedule]:
        """Every schedule: code ones (with stored pauses applied), then dynamic ones.
        A stored record that cannot be read is logged and left out."""
        store = self._store()
        stored = {} if store is None else await store.load_schedules()
        code = {s.id: s for s in self.in_code()}
        dynamic: list[Schedule] = []
        for schedule_id, raw in sorted(stored.items()):
            try:
                record = decode_schedule(raw)
            except InvalidSchedule as exc:
                log.error("schedule %r skipped: %s", schedule_id, exc)
                continue
            if schedule_id in code:
                code[schedule_id] = anchored(
                    msgspec.structs.replace(
                        code[schedule_id], paused=record.paused, active_from=record.active_from
                    )
                )
            elif record.origin == "dynamic":
                dynamic.append(record)
        return [*code.values(), *dynamic]

    async def get(self, schedule_id: str) -> Schedule:
        """The schedule ``schedule_id``; raises :class:`UnknownSchedule`."""
        for schedule in await self.load():
            if schedule.id == schedule_id:
                return schedule
        raise UnknownSchedule(f"no schedule with id {schedule_id!r}")

    async def list(self) -> builtins.list[ScheduleInfo]:
        """Every schedule with its next fire time."""
        now = self._app.settings.clock.now()
        out = []
        for schedule in await self.load():
            runs = [] if schedule.paused else schedule.next_runs(now, 1)
            out.append(ScheduleInfo(schedule, runs[0] if runs else None))
        return out

    async def next_runs(self, schedule_id: str, count: int = 5) -> builtins.list[datetime]:
        """The next ``count`` fire times of ``schedule_id`` (UTC), ignoring pauses."""
        schedule = await self.get(schedule_id)
        return schedule.next_runs(self._app.settings.clock.now(), count)

    # -- writing -------------------------------------------------------------------

    async def add(
        self,
        schedule_id: str,
        task: Task[Any, Any] | str,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        at: datetime | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: MissedPolicy = "skip",
        paused: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Schedule:
        """Create or replace the dynamic schedule ``schedule_id``: exactly one of ``cron``,
        ``every`` (seconds or timedelta) or ``at``. The task must be registered and the
        arguments must fit its signature; both are checked now. ``labels`` go on each
        tick's message.

        Only ticks after now fire, except an ``at`` time that is now or already past: it
        fires as a tick that late (so within ``schedule_grace``, or its ``catch_up``
        window). A dynamic ``at`` schedule is deleted once its tick is enqueued (or too
        late to fire)."""
        if not schedule_id or not isinstance(schedule_id, str):
            raise InvalidSchedule("a schedule id must be a non-empty string")
        given = [
            name for name, v in (("cron", cron), ("every", every), ("at", at)) if v is not None
        ]
        if len(given) != 1:
            raise InvalidSchedule("give exactly one of cron=, every= or at=")
        resolved = self._task(task)
        call: dict[str, Any] = {"args": args, "kwargs": kwargs, "missed": missed, "labels": labels}
        if cron is not None:
            spec = build.cron(cron, tz, **call)
        elif every is not None:
            spec = build.every(every, **call)
        else:
            assert at is not None
            spec = build.at(at, **call)
        if any(s.id == schedule_id for s in self.in_code()):
            raise InvalidSchedule(
                f"schedule id {schedule_id!r} is declared in code; choose another id"
            )
        self.check_call(resolved, spec.args, spec.kwargs)
        now = self._app.settings.clock.now()
        active_from = now
        if isinstance(spec.trigger, At):  # a time now or just past fires, late
            active_from = min(now, math.nextafter(spec.trigger.when, -math.inf))
        schedule = msgspec.structs.replace(
            spec.bind(resolved.name, schedule_id),
            origin="dynamic",
            paused=paused,
            created_at=now,
            active_from=active_from,
        )
        await self._required_store("add a schedule").save_schedule(
            schedule_id, encode_schedule(schedule)
        )
        return schedule

    async def remove(self, schedule_id: str) -> bool:
        """Delete a dynamic schedule; False if there was none. Code schedules can only be
        paused."""
        if any(s.id == schedule_id for s in self.in_code()):
            raise InvalidSchedule(
                f"schedule {schedule_id!r} is declared in code; pause it or remove it there"
            )
        return await self._required_store("remove a schedule").delete_schedule(schedule_id)

    async def remove_spent(self, spent: Sequence[Schedule]) -> builtins.list[str]:
        """Delete the dynamic schedules ``spent`` (one-offs whose tick is behind them)
        that the store still holds unchanged, not re-added under the same id since;
        returns the ids deleted. The scheduler calls this."""
        store = self._store()
        if store is None or not spent:
            return []
        stored = await store.load_schedules()
        removed = []
        for schedule in spent:
            raw = stored.get(schedule.id)
            try:
                current = None if raw is None else decode_schedule(raw)
            except InvalidSchedule:
                current = None
            if (
                current is not None
                and current.origin == "dynamic"
                and (current.created_at, current.trigger) == (schedule.created_at, schedule.trigger)
                and await store.delete_schedule(schedule.id)
            ):
                removed.append(schedule.id)
        return removed

    async def pause(self, schedule_id: str) -> Schedule:
        """Stop firing ``schedule_id`` until :meth:`resume`; ticks while paused are skipped."""
        return await self._set_paused(schedule_id, True)

    async def resume(self, schedule_id: str) -> Schedule:
        """Fire ``schedule_id`` again from its next tick."""
        return await self._set_paused(schedule_id, False)

    async def activate(self, schedule: Schedule, now: float) -> Schedule:
        """Record that the code schedule ``schedule`` is live from ``now`` (its catch-up
        window starts there), unless a scheduler already did; returns the stored view."""
        store = self._store()
        if store is None:
            return activated(schedule, now)
        stored = (await store.load_schedules()).get(schedule.id)
        if stored is not None:
            try:
                recorded = decode_schedule(stored).active_from
            except InvalidSchedule:
                recorded = 0.0  # an unreadable override is replaced below
            if recorded:
                return anchored(msgspec.structs.replace(schedule, active_from=recorded))
        active = activated(schedule, now)
        await store.save_schedule(schedule.id, encode_schedule(active))
        return active

    async def run_now(self, schedule_id: str) -> TaskHandle[Any]:
        """Enqueue ``schedule_id``'s task with its arguments now, outside its ticks."""
        schedule = await self.get(schedule_id)
        task = self._task(schedule.task)
        labels = {**schedule.labels, "schedule": schedule.id, "scheduled_for": "now"}
        options = CallOptions(labels=labels)
        return await self._app.enqueue(task, schedule.args, schedule.kwargs, options)

    # -- helpers -------------------------------------------------------------------

    async def _set_paused(self, schedule_id: str, paused: bool) -> Schedule:
        store = self._required_store("resume a schedule" if not paused else "pause a schedule")
        schedule = await self.get(schedule_id)
        changes: dict[str, Any] = {"paused": paused}
        if schedule.paused and not paused:
            changes["active_from"] = self._app.settings.clock.now()  # skip the paused ticks
        schedule = msgspec.structs.replace(schedule, **changes)
        await store.save_schedule(schedule_id, encode_schedule(schedule))
        return schedule

    def _store(self) -> ScheduleStore | None:
        broker = self._app.broker
        return broker.schedule_store() if Capability.SCHEDULES in broker.capabilities else None

    def _required_store(self, action: str) -> ScheduleStore:
        store = self._store()
        if store is None:
            raise ConfigurationError(
                f"cannot {action}: the broker {redact_url(self._app.broker.url)!r} does not store "
                "schedules (no Capability.SCHEDULES); declare them in code with "
                "@app.task(schedule=...)"
            )
        return store

    def _task(self, task: Task[Any, Any] | str) -> Task[Any, Any]:
        name = task if isinstance(task, str) else task.name
        found = self._app.tasks.get(name)
        if found is None:
            raise UnknownTask(
                f"task {name!r} is not registered in this app; known: {sorted(self._app.tasks)}"
            )
        return found

    def check_call(
        self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        """Raise ``TypeError`` if ``args``/``kwargs`` do not fit ``task`` or cannot be sent."""
        settings = self._app.settings
        encode(task, build_message(Call(task, args, kwargs), settings), settings)
