"""A :class:`Schedule`: a trigger bound to a task, its arguments and its missed-run policy.

>>> @app.task(schedule=[cron("0 2 * * *"), every(minutes=15), {"cron": "*/5 * * * *"}])
... async def cleanup() -> None: ...                                  # doctest: +SKIP

The same struct is what dynamic schedules store (JSON) in the broker's schedule store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from conveyor.scheduler.triggers import At, Cron, Every, InvalidSchedule, Trigger, parse_zone

__all__ = [
    "CatchUp",
    "MissedPolicy",
    "Schedule",
    "at",
    "catch_up",
    "cron",
    "decode_schedule",
    "encode_schedule",
    "every",
    "schedule_from_entry",
]


class CatchUp(msgspec.Struct, frozen=True):
    """Missed-run policy: fire every tick missed in the last ``within`` seconds."""

    within: float


MissedPolicy = Literal["skip"] | CatchUp


def catch_up(within: float | timedelta) -> CatchUp:
    """Run missed ticks no older than ``within`` when a scheduler comes back.

    The default policy, ``"skip"``, fires a tick only while it is at most
    ``schedule_grace`` seconds late.
    """
    seconds = within.total_seconds() if isinstance(within, timedelta) else float(within)
    if seconds <= 0:
        raise InvalidSchedule(f"catch_up(within=...) must be a positive duration, not {within}")
    return CatchUp(seconds)


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """When ``task`` runs and with what. ``id`` names the schedule (and its ticks'
    idempotency keys); ``origin`` is ``"code"`` for ``@app.task(schedule=...)`` entries,
    ``"dynamic"`` for ``app.schedules.add(...)``. ``labels`` go on every tick's message,
    beside ``schedule`` and ``scheduled_for``."""

    id: str = ""
    task: str = ""
    trigger: Trigger
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    labels: dict[str, str] = {}
    missed: MissedPolicy = "skip"
    paused: bool = False
    origin: Literal["code", "dynamic"] = "code"
    created_at: float = 0.0
    active_from: float = 0.0  # no tick at or before this fires (set on add and resume)

    def window(self, grace: float) -> float:
        """How late a tick may fire: the catch-up window, else the scheduler's grace."""
        return self.missed.within if isinstance(self.missed, CatchUp) else grace

    def next_after(self, after: float) -> float | None:
        """The first fire time strictly after ``after`` (Unix seconds), None if none."""
        return self.trigger.next_after(after)

    def next_runs(self, after: float, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``after``, as aware UTC datetimes."""
        runs: list[datetime] = []
        cursor: float | None = after
        while len(runs) < count:
            assert cursor is not None
            cursor = self.trigger.next_after(cursor)
            if cursor is None:
                break
            runs.append(datetime.fromtimestamp(cursor, UTC))
        return runs

    def describe(self) -> str:
        """Human-readable trigger, e.g. ``cron 0 7 * * * (America/New_York)``."""
        return self.trigger.describe()

    def bind(self, task_name: str, schedule_id: str | None = None) -> Schedule:
        """This schedule for ``task_name``, with an id derived from the trigger unless set."""
        return msgspec.structs.replace(
            self, task=task_name, id=schedule_id or self.id or f"{task_name}/{self.trigger.slug()}"
        )


def cron(
    expr: str,
    tz: str = "UTC",
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    missed: MissedPolicy = "skip",
    id: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Schedule:
    """A cron schedule: 5 fields (minute hour day-of-month month day-of-week), 6 with
    seconds first, or ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly``.

    The expression and ``tz`` (an IANA name) are validated now; the error names the bad
    field.
    """
    return Schedule(
        id=id or "",
        trigger=Cron(expr, tz),
        args=list(args),
        kwargs=dict(kwargs or {}),
        labels=_labels(labels),
        missed=missed,
    )


def activated(schedule: Schedule, now: float) -> Schedule:
    """``schedule`` as live from ``now``: no tick at or before it fires, except, for
    ``every(start="now")``, the tick at ``now`` itself, which anchors the interval."""
    trigger = schedule.trigger
    if isinstance(trigger, Every) and trigger.from_activation:
        return msgspec.structs.replace(
            schedule,
            trigger=msgspec.structs.replace(trigger, anchor=now),
            active_from=math.nextafter(now, -math.inf),
        )
    return msgspec.structs.replace(schedule, active_from=now)


def anchored(schedule: Schedule) -> Schedule:
    """``schedule`` with an ``every(start="now")`` interval anchored where it was
    activated (``active_from``, recorded in the store)."""
    trigger = schedule.trigger
    if isinstance(trigger, Every) and trigger.from_activation and schedule.active_from:
        anchor = math.nextafter(schedule.active_from, math.inf)
        return msgspec.structs.replace(
            schedule, trigger=msgspec.structs.replace(trigger, anchor=anchor)
        )
    return schedule


def every(
    interval: float | timedelta | None = None,
    *,
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    days: float = 0,
    start: datetime | Literal["now"] | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    missed: MissedPolicy = "skip",
    id: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Schedule:
    """A fixed-interval schedule: ``every(minutes=15)`` or ``every(timedelta(hours=1))``.

    Ticks are aligned to ``start`` (default the Unix epoch), not to when a scheduler
    started, so every scheduler process agrees on them. ``start="now"`` (taskiq's
    interval schedules) runs it as soon as the first scheduler sees it, then every
    interval from that moment; the moment is stored, so a restarted or second scheduler
    keeps the same ticks instead of firing again.
    """
    if interval is None:
        total = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        length = total.total_seconds()
    else:
        length = interval.total_seconds() if isinstance(interval, timedelta) else interval
    if start == "now":
        trigger = Every(float(length), 0.0, from_activation=True)
    elif start is None or isinstance(start, datetime):
        trigger = Every(float(length), 0.0 if start is None else _timestamp(start))
    else:
        raise InvalidSchedule(f"every(start=...) must be a datetime or 'now', not {start!r}")
    return Schedule(
        id=id or "",
        trigger=trigger,
        args=list(args),
        kwargs=dict(kwargs or {}),
        labels=_labels(labels),
        missed=missed,
    )


def at(
    when: datetime,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    missed: MissedPolicy = "skip",
    id: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Schedule:
    """One run at ``when`` (a naive datetime is taken as UTC)."""
    return Schedule(
        id=id or "",
        trigger=At(_timestamp(when)),
        args=list(args),
        kwargs=dict(kwargs or {}),
        labels=_labels(labels),
        missed=missed,
    )


_ENTRY_KEYS = {"cron", "cron_offset", "tz", "interval", "time", "args", "kwargs", "labels"}
_ENTRY_KEYS |= {"schedule_id", "id", "missed", "start"}


def schedule_from_entry(entry: Schedule | Mapping[str, Any]) -> Schedule:
    """Accept a :class:`Schedule` or the taskiq-style dict form:
    ``{"cron": "*/15 * * * *", "cron_offset": "Europe/Berlin", "args": [...],
    "kwargs": {...}}``, ``{"interval": 60}`` or ``{"time": datetime}``."""
    if isinstance(entry, Schedule):
        return entry
    if not isinstance(entry, Mapping):
        raise InvalidSchedule(
            f"a schedule entry must be cron(...), every(...), at(...) or a dict, not {entry!r}"
        )
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise InvalidSchedule(
            f"schedule entry {dict(entry)!r}: unknown key(s) {', '.join(sorted(unknown))}"
        )
    common: dict[str, Any] = {
        "args": entry.get("args") or (),
        "kwargs": entry.get("kwargs") or {},
        "id": entry.get("schedule_id") or entry.get("id"),
        "missed": entry.get("missed", "skip"),
        "labels": entry.get("labels"),
    }
    kinds = [k for k in ("cron", "interval", "time") if entry.get(k) is not None]
    if len(kinds) != 1:
        raise InvalidSchedule(
            f"schedule entry {dict(entry)!r} needs exactly one of 'cron', 'interval' or 'time'"
        )
    if kinds[0] == "cron":
        return cron(str(entry["cron"]), _zone_name(entry), **common)
    if kinds[0] == "interval":
        interval = entry["interval"]
        if not isinstance(interval, (int, float, timedelta)):
            raise InvalidSchedule(f"schedule entry 'interval' must be seconds, not {interval!r}")
        return every(interval, start=entry.get("start"), **common)
    when = entry["time"]
    if not isinstance(when, datetime):
        raise InvalidSchedule(f"schedule entry 'time' must be a datetime, not {when!r}")
    return at(when, **common)


def _labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """Labels as Conveyor keeps them, str to str (a taskiq entry's ``True`` is ``"true"``)."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidSchedule(f"schedule labels must be a mapping, not {labels!r}")
    return {
        str(k): ("true" if v else "false") if isinstance(v, bool) else str(v)
        for k, v in labels.items()
    }


def _zone_name(entry: Mapping[str, Any]) -> str:
    zone = entry.get("tz", entry.get("cron_offset"))
    if zone is None:
        return "UTC"
    if isinstance(zone, timedelta):
        # taskiq allows a fixed offset; IANA has fixed-offset zones only for whole hours
        hours = zone.total_seconds() / 3600
        if hours == int(hours):
            return "UTC" if hours == 0 else f"Etc/GMT{-int(hours):+d}"
        raise InvalidSchedule(f"cron_offset {zone} is not a whole number of hours")
    name = str(zone)
    parse_zone(name)
    return name


def _timestamp(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Schedule)


def encode_schedule(schedule: Schedule) -> bytes:
    """JSON bytes for the schedule store."""
    return _ENCODER.encode(schedule)


def decode_schedule(data: bytes) -> Schedule:
    """Parse a stored schedule; raises :class:`InvalidSchedule` naming what is wrong."""
    try:
        return _DECODER.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidSchedule(f"stored schedule cannot be read: {exc}") from None
