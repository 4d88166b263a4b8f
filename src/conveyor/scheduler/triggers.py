"""When a schedule fires: :class:`Cron`, :class:`Every` and :class:`At`.

A trigger maps "the last fire time considered" to "the next fire time", in Unix seconds,
so every scheduler process computes the same ticks. Cron expressions are parsed by
``cronsim`` (5 fields, or 6 with seconds first) in an IANA time zone; its daylight-saving
rule is Debian cron's:

- spring forward: a time inside the skipped hour fires once, when the clock jumps;
- fall back: a fixed-hour time inside the repeated hour fires once (its first
  occurrence); a wildcard-hour expression (``0 * * * *``) fires in both occurrences,
  because both are real hours of elapsed time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from conveyor.errors import ConfigurationError

__all__ = ["At", "Cron", "Every", "InvalidSchedule", "Trigger", "parse_zone"]

_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELDS_6 = ("second", *_FIELDS_5)
_RANGES = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31 or L",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT",
}


class InvalidSchedule(ConfigurationError, ValueError):
    """A cron expression, time zone, interval or schedule entry that cannot be used."""


def parse_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises :class:`InvalidSchedule` naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None


class Cron(msgspec.Struct, frozen=True, tag="cron"):
    """A cron expression in a time zone. Build with :func:`conveyor.cron`."""

    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        zone = parse_zone(self.tz)
        try:
            CronSim(_expand(self.expr), datetime.now(zone))
        except CronSimError as exc:
            raise InvalidSchedule(_explain(self.expr, str(exc))) from None

    def next_after(self, after: float) -> float | None:
        zone = ZoneInfo(self.tz)
        start = datetime.fromtimestamp(math.floor(after), zone)
        # cronsim may answer a fold-0 time earlier than a fold-1 start; skip those
        for candidate in CronSim(_expand(self.expr), start):
            stamp = candidate.timestamp()
            if stamp > after:
                return stamp
        return None  # pragma: no cover - cronsim iterators do not end

    def describe(self) -> str:
        return f"cron {self.expr}" + ("" if self.tz == "UTC" else f" ({self.tz})")

    def slug(self) -> str:
        return f"cron:{self.expr}" + ("" if self.tz == "UTC" else f"@{self.tz}")


class Every(msgspec.Struct, frozen=True, tag="every"):
    """A fixed interval in seconds, aligned to ``anchor`` (Unix seconds, default the
    epoch), so ``every(minutes=15)`` fires at :00, :15, :30 and :45 on every scheduler."""

    interval: float
    anchor: float = 0.0
    # anchored where a scheduler first sees it (every(start="now")): it fires then
    from_activation: bool = False

    def __post_init__(self) -> None:
        if not self.interval > 0 or not math.isfinite(self.interval):
            raise InvalidSchedule(f"an interval must be a positive duration, not {self.interval}")

    def next_after(self, after: float) -> float | None:
        steps = math.floor((after - self.anchor) / self.interval) + 1
        stamp = self.anchor + steps * self.interval
        return stamp if stamp > after else stamp + self.interval

    def describe(self) -> str:
        return f"every {timedelta(seconds=self.interval)}"

    def slug(self) -> str:
        return f"every:{self.interval:g}s" + (f"+{self.anchor:g}" if self.anchor else "")


class At(msgspec.Struct, frozen=True, tag="at"):
    """One run at ``when`` (Unix seconds)."""

    when: float

    def next_after(self, after: float) -> float | None:
        return self.when if self.when > after else None

    def describe(self) -> str:
        return f"at {datetime.fromtimestamp(self.when, UTC).isoformat()}"

    def slug(self) -> str:
        return f"at:{datetime.fromtimestamp(self.when, UTC).isoformat()}"


Trigger = Cron | Every | At


def _expand(expr: str) -> str:
    stripped = expr.strip()
    return _NICKNAMES.get(stripped.lower(), stripped)


def _explain(expr: str, problem: str) -> str:
    parts = _expand(expr).split()
    names = _FIELDS_6 if len(parts) == 6 else _FIELDS_5
    if len(parts) not in (5, 6):
        return (
            f"bad cron expression {expr!r}: it has {len(parts)} fields; use 5 (minute hour "
            "day-of-month month day-of-week), 6 with seconds first, or @hourly/@daily/..."
        )
    field_name = problem.removeprefix("Bad ").strip()
    if field_name in names:
        index = names.index(field_name)
        return (
            f"bad cron expression {expr!r}: field {index + 1} ({field_name}) "
            f"{parts[index]!r} is not valid; allowed: {_RANGES[field_name]}, '*', lists, "
            "ranges and steps"
        )
    return f"bad cron expression {expr!r}: {problem}"
