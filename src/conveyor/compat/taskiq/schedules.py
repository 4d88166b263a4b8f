"""Schedules, taskiq's way: ``TaskiqScheduler``, the schedule sources
(``LabelScheduleSource``, taskiq-redis's ``ListRedisScheduleSource``...), ``ScheduledTask``
and the ``CreatedSchedule`` that ``schedule_by_cron/time/interval`` return.

>>> source = ListRedisScheduleSource("redis://localhost")               # doctest: +SKIP
>>> scheduler = TaskiqScheduler(broker, sources=[LabelScheduleSource(broker), source])
>>> created = await send.schedule_by_cron(source, "*/5 * * * *", "a@b.c")  # doctest: +SKIP
>>> await created.unschedule()                                          # doctest: +SKIP

Every source stores into the broker's own schedule store; ``conveyor scheduler
pkg.module:scheduler`` runs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from conveyor.compat.taskiq._options import _label, log
from conveyor.compat.taskiq.results import AsyncTaskiqTask
from conveyor.errors import ConfigurationError
from conveyor.scheduler.schedule import Schedule, schedule_from_entry
from conveyor.scheduler.triggers import At, Cron, Every, InvalidSchedule

if TYPE_CHECKING:
    from conveyor.compat.taskiq.brokers import AsyncBroker
    from conveyor.compat.taskiq.tasks import AsyncKicker
    from conveyor.scheduler.book import ScheduleBook

__all__ = [
    "CreatedSchedule",
    "LabelScheduleSource",
    "ListRedisScheduleSource",
    "RedisScheduleSource",
    "ScheduleSource",
    "ScheduledTask",
    "TaskiqScheduler",
]

R = TypeVar("R")


@dataclass
class ScheduledTask:
    """A dynamic schedule as taskiq's sources take it: exactly one of ``cron``
    (``cron_offset``: an IANA zone name or a whole-hour timedelta), ``time`` or
    ``interval`` (seconds). ``labels`` go on every run (as strings), with
    ``schedule_id``; ``task_id`` is accepted and ignored: each run gets a fresh id."""

    task_name: str
    labels: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    task_id: str | None = None
    schedule_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cron: str | None = None
    cron_offset: str | timedelta | None = None
    time: datetime | None = None
    interval: float | timedelta | None = None


class CreatedSchedule(Generic[R]):
    """What ``schedule_by_*`` returns: ``schedule_id``, ``await unschedule()``, and
    ``await kiq()`` to run it once now."""

    def __init__(self, kicker: AsyncKicker[Any, R], source: ScheduleSource, task: ScheduledTask):
        self.kicker = kicker
        self.source = source
        self.task = task
        self.schedule_id = task.schedule_id

    def __repr__(self) -> str:
        return f"<CreatedSchedule {self.schedule_id} {self.task.task_name}>"

    async def unschedule(self) -> None:
        """Delete the schedule; running schedulers stop firing it within
        ``schedule_refresh`` seconds."""
        await self.source.delete_schedule(self.schedule_id)

    async def kiq(self) -> AsyncTaskiqTask[R]:
        """Run the scheduled call once, now."""
        return await self.kicker.task.send(self.task.args, self.task.kwargs, self.kicker._options())


class ScheduleSource:
    """Where dynamic schedules go. In Conveyor that is always the broker's schedule store
    (``broker.conveyor.schedules``), whatever a source's URL says, so every scheduler
    process of the app sees them."""

    def __init__(self) -> None:
        self._broker: AsyncBroker | None = None

    def _attach(self, broker: AsyncBroker) -> None:
        if self._broker is not None and self._broker is not broker:
            raise ConfigurationError(
                f"{type(self).__name__} is already used with {self._broker!r}; give each "
                "broker its own schedule source"
            )
        self._broker = broker

    def _book(self) -> ScheduleBook:
        if self._broker is None:
            # a source used on its own, in a process with one broker: that broker's
            from conveyor.compat.taskiq.brokers import AsyncSharedBroker, live_brokers

            candidates = [b for b in live_brokers() if not isinstance(b, AsyncSharedBroker)]
            if len(candidates) == 1:
                self._attach(candidates[0])
        if self._broker is None:
            raise ConfigurationError(
                f"{type(self).__name__} is not bound to a broker: pass it to "
                "TaskiqScheduler(broker, sources=[...]) or to task.schedule_by_cron()"
            )
        return self._broker.conveyor.schedules

    async def _ready_book(self) -> ScheduleBook:
        """The schedule store, its broker connected first if it is not (taskiq's
        sources work without the broker's ``startup()``)."""
        book = self._book()
        assert self._broker is not None
        await self._broker._ready()
        return book

    async def startup(self) -> None:
        """Nothing to do: the broker's connection serves the schedule store."""

    async def shutdown(self) -> None:
        """Nothing to do."""

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        """Store ``schedule`` (its task must be registered; its arguments are checked).
        A ``time`` schedule fires even when the time is now or just past, and leaves
        ``get_schedules()`` once fired."""
        await (await self._ready_book()).add(
            schedule.schedule_id,
            schedule.task_name,
            args=schedule.args,
            kwargs=schedule.kwargs,
            labels={k: _label(v) for k, v in schedule.labels.items() if k != "schedule"},
            **_trigger_of(schedule),
        )

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the dynamic schedule ``schedule_id`` (nothing if there is none)."""
        await (await self._ready_book()).remove(schedule_id)

    async def get_schedules(self) -> list[ScheduledTask]:
        """The dynamic schedules."""
        stored = await (await self._ready_book()).load()
        return [_scheduled(s) for s in stored if s.origin == "dynamic"]


class LabelScheduleSource(ScheduleSource):
    """The ``schedule=[...]`` labels of the broker's tasks. Conveyor's scheduler fires
    them whether or not this source is listed."""

    def __init__(self, broker: AsyncBroker) -> None:
        super().__init__()
        self._attach(broker)

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        raise NotImplementedError(
            "LabelScheduleSource holds the schedule=[...] labels only; add schedules to "
            "a ListRedisScheduleSource (or any other source)"
        )

    async def delete_schedule(self, schedule_id: str) -> None:
        raise NotImplementedError(
            "LabelScheduleSource holds the schedule=[...] labels only; pause one with "
            "`conveyor schedules APP pause ID` or remove it from the code"
        )

    async def get_schedules(self) -> list[ScheduledTask]:
        """The schedules declared in code (a ``time`` one only until its time)."""
        assert self._broker is not None
        now = self._broker.conveyor.settings.clock.now()
        return [
            _scheduled(s)
            for s in self._book().in_code()
            if not (isinstance(s.trigger, At) and s.trigger.when <= now)
        ]


class ListRedisScheduleSource(ScheduleSource):
    """taskiq-redis's ``ListRedisScheduleSource``: schedules are stored in the broker's
    schedule store; ``url`` and the other options are accepted and ignored."""

    def __init__(self, url: str, prefix: str = "schedule", **options: Any) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix

    def with_migrate_from(self, source: ScheduleSource, delete_schedules: bool = True) -> Self:
        """taskiq-redis's migration from an older source: nothing to do, as every
        source of an app keeps its schedules in the app's one schedule store. Returns
        this source."""
        return self


class RedisScheduleSource(ListRedisScheduleSource):
    """taskiq-redis's older ``RedisScheduleSource``: the same as
    :class:`ListRedisScheduleSource`."""


_STORE_READERS = (ScheduleSource.get_schedules, LabelScheduleSource.get_schedules)


def _trigger_of(schedule: ScheduledTask) -> dict[str, Any]:
    kinds = [
        name
        for name, value in (
            ("cron", schedule.cron),
            ("time", schedule.time),
            ("interval", schedule.interval),
        )
        if value is not None
    ]
    if len(kinds) != 1:
        raise InvalidSchedule(
            f"schedule {schedule.schedule_id!r} needs exactly one of cron, time or interval"
        )
    if schedule.cron is not None:
        entry = schedule_from_entry({"cron": schedule.cron, "cron_offset": schedule.cron_offset})
        trigger = entry.trigger
        assert isinstance(trigger, Cron)
        return {"cron": trigger.expr, "tz": trigger.tz}
    if schedule.time is not None:
        return {"at": schedule.time}
    return {"every": schedule.interval}


def _scheduled(schedule: Schedule) -> ScheduledTask:
    trigger = schedule.trigger
    found = ScheduledTask(
        task_name=schedule.task,
        labels=dict(schedule.labels),
        args=list(schedule.args),
        kwargs=dict(schedule.kwargs),
        schedule_id=schedule.id,
    )
    if isinstance(trigger, Cron):
        found.cron = trigger.expr
        found.cron_offset = None if trigger.tz == "UTC" else trigger.tz
    elif isinstance(trigger, At):
        found.time = datetime.fromtimestamp(trigger.when, UTC)
    elif isinstance(trigger, Every):
        found.interval = trigger.interval
    return found


class TaskiqScheduler:
    """taskiq's scheduler declaration; run it with ``conveyor scheduler pkg.module:scheduler``
    (any number of them: each tick is enqueued once).

    The scheduler fires the broker's code schedules and the dynamic ones in its store;
    ``sources`` bind the given sources to ``broker``.
    """

    def __init__(self, broker: AsyncBroker, sources: Sequence[ScheduleSource]) -> None:
        self.broker = broker
        self.sources = list(sources)
        self.conveyor = broker.conveyor
        for source in self.sources:
            source._attach(broker)
            if type(source).get_schedules not in _STORE_READERS:
                log.warning(
                    "%s: Conveyor's scheduler does not call a schedule source's own "
                    "get_schedules(); it fires code schedules and those in the broker's "
                    "schedule store (add them with source.add_schedule() or app.schedules)",
                    type(source).__name__,
                )

    def __repr__(self) -> str:
        return f"<TaskiqScheduler {self.broker!r}>"

    async def startup(self) -> None:
        """Start the broker as a client (to add schedules from this process)."""
        await self.broker.startup()

    async def shutdown(self) -> None:
        """Shut the broker down."""
        await self.broker.shutdown()
