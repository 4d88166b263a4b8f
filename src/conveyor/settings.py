"""One frozen settings object: constructor arguments, then ``CONVEYOR_*`` variables,
then defaults.

>>> Settings.load({"CONVEYOR_CONCURRENCY": "50"}, lease=10).concurrency
50

Every field is checked against its rule in :data:`RULES` (type, finiteness, range)
however the object is built: ``Settings(...)``, :meth:`Settings.load`,
:meth:`Settings.replace`. A value that breaks its rule raises one
:class:`ConfigurationError` naming the setting, the value (never a secret's), the valid
range and, when it came from the environment, the variable. The bounds are set so that
no valid value makes the system unsafe: the minimums of the polling intervals keep an
idle worker's loops under a few percent of a core, and every duration fits the
millisecond integers Redis and SQLite are given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import msgspec

from conveyor.brokers import redact_url
from conveyor.clock import Clock, SystemClock
from conveyor.errors import ConfigurationError

__all__ = ["BOOLEAN_SPELLINGS", "DEFAULT_BROKER_URL", "MAX_CONCURRENCY", "RULES", "Settings"]

DEFAULT_BROKER_URL = "sqlite:///conveyor.db"

#: What a boolean ``CONVEYOR_*`` variable may say, in any case; anything else is an error.
BOOLEAN_SPELLINGS: Mapping[str, bool] = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}

#: Most tasks one worker may run at once (``concurrency``, ``--concurrency``).
MAX_CONCURRENCY = 10_000

_HOUR = 3600.0
_DAY = 24 * _HOUR
_TEN_YEARS = 10 * 365 * _DAY
_MAX_BYTES = 512 * 1024 * 1024  # the largest string Redis stores
_POLL_FLOOR = 0.05  # a loop at 20 Hz costs ~1% of a core; at 0 it spins (71-96%)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob Conveyor reads. docs/settings.md lists them with their variables and
    valid ranges (:data:`RULES`).

    Durations are seconds. ``clock`` is not read from the environment; tests inject one.
    """

    broker_url: str = DEFAULT_BROKER_URL
    result_url: str | None = None
    concurrency: int = 10
    process_pool_size: int = 0  # processes for runner="process" tasks; 0: one per CPU
    queues: tuple[str, ...] = ("default",)
    default_queue: str = "default"
    lease: float = 30.0
    reap_interval: float = 5.0
    grace: float = 30.0
    heartbeat_interval: float = 5.0
    abort_check_interval: float = 1.0
    fetch_wait: float = 1.0
    fault_pause: float = 0.05  # the first pause after a failed broker call, doubling...
    fault_pause_max: float = 5.0  # ...up to this (fetch, abort checks, settlements)
    max_payload_bytes: int = 1024 * 1024
    max_result_bytes: int = 16 * 1024 * 1024
    # HMAC keys, newest first; () signs nothing. A secret: never in repr() or logs
    signing_keys: tuple[str, ...] = field(default=(), repr=False)
    result_ttl: float = 24 * 3600.0
    poison_after: int = 3
    unknown_task_retries: int = 0
    unknown_task_delay: float = 10.0
    schedule_grace: float = 5.0
    schedule_refresh: float = 2.0
    schedule_send_timeout: float = 3.0
    log_tasks: bool = True  # one INFO line per task that ends (logger conveyor.task)
    task_counts: bool = True  # a dict increment per task; flushed with the heartbeat
    events: bool = False  # the event log costs 11-22% of no-op throughput (bench/)
    events_max: int = 10_000
    event_args_preview: int = 256
    # how long a workflow's records (its state, its groups' outcomes) are kept after its
    # last change; a workflow whose tasks wait longer than this between two loses them
    workflow_ttl: float = 7 * _DAY
    # about how long a task refused a concurrency permit waits before it is claimed again
    permit_wait: float = 1.0
    clock: Clock = field(default_factory=SystemClock, compare=False, repr=False)

    def __repr__(self) -> str:
        # URLs without their credentials, signing keys and the clock left out: a repr
        # lands in logs and tracebacks
        from conveyor.brokers import redact_url

        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in ("broker_url", "result_url") and value is not None:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def __post_init__(self) -> None:
        # a float setting given as an int becomes a float, a list of queues a tuple
        for name, value in _checked(self).items():
            object.__setattr__(self, name, value)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``overrides`` (non-None wins), then ``environ``
        (default :data:`os.environ`), then the defaults."""
        names = _known(cls, overrides)
        env = os.environ if environ is None else environ
        for name, where in _MOVED.items():
            if f"CONVEYOR_{name.upper()}" in env:
                raise ConfigurationError(
                    f"CONVEYOR_{name.upper()} is no longer read: set it in {where}"
                )
        values: dict[str, Any] = {}
        for name in names:
            if overrides.get(name) is not None:
                values[name] = overrides[name]
                continue
            variable = f"CONVEYOR_{name.upper()}"
            raw = env.get(variable)
            if raw is not None and name != "clock":
                values[name] = _check(name, raw=raw, variable=variable)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        _known(type(self), changes)
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the first invalid value. Every
        construction path already calls it."""
        _checked(self)


# settings that moved into the URL of the technology they tune
_MOVED = {
    "sqlite_synchronous": "the broker URL's query: sqlite:///path.db?synchronous=NORMAL",
    "sqlite_busy_timeout": "the broker URL's query: sqlite:///path.db?busy_timeout=5",
}


def _known(cls: type[Settings], given: Mapping[str, object]) -> list[str]:
    """The names of the settings, in order; raises if ``given`` names another."""
    names = [f.name for f in fields(cls)]
    for name in set(given) & set(_MOVED):
        raise ConfigurationError(f"setting {name} moved to {_MOVED[name]}")
    unknown = set(given) - set(names)
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s): {', '.join(sorted(unknown))}; "
            "docs/settings.md lists every setting"
        )
    return names


class Rule(Protocol):
    """The constraint on one setting."""

    @property
    def expected(self) -> str:
        """What a valid value is, completing ``setting X must be ...``."""
        ...

    def parse(self, raw: str) -> object:
        """The value a ``CONVEYOR_*`` variable says, or raise :class:`_Invalid`."""
        ...

    def accept(self, value: object) -> object:
        """``value``, normalized (an int as a float, a list as a tuple), or raise
        :class:`_Invalid`."""
        ...


class _Invalid(Exception):
    """A value breaks its rule; ``shown`` replaces the value in the message (secrets,
    passwords)."""

    def __init__(self, shown: str | None = None) -> None:
        super().__init__(shown)
        self.shown = shown


def _number(value: float) -> str:
    """``86400`` rather than ``86400.0``; ``0.05`` as written."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _kind(value: object) -> str:
    """``an int``, ``a str``: the type of ``value`` with its article."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


class Seconds(msgspec.Struct, frozen=True):
    """A finite duration in ``[minimum, maximum]`` seconds; an int becomes a float."""

    minimum: float
    maximum: float

    @property
    def expected(self) -> str:
        return (
            f"a finite number of seconds >= {_number(self.minimum)} and <= {_number(self.maximum)}"
        )

    def parse(self, raw: str) -> object:
        try:
            return float(raw.strip())
        except ValueError:
            raise _Invalid() from None

    def accept(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"{value!r} ({_kind(value)})")
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            raise _Invalid() from None
        if not (math.isfinite(seconds) and self.minimum <= seconds <= self.maximum):
            raise _Invalid()
        return seconds


class Count(msgspec.Struct, frozen=True):
    """An int (not a bool, not a float) in ``[minimum, maximum]``."""

    minimum: int
    maximum: int
    unit: str = ""

    @property
    def expected(self) -> str:
        noun = f"a whole number of {self.unit}" if self.unit else "an integer"
        return f"{noun} >= {self.minimum} and <= {self.maximum}"

    def parse(self, raw: str) -> object:
        try:
            return int(raw.strip())
        except ValueError:
            raise _Invalid() from None

    def accept(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{value!r} ({_kind(value)})")
        if not self.minimum <= value <= self.maximum:
            raise _Invalid()
        return int(value)


class Flag(msgspec.Struct, frozen=True):
    """A bool; from the environment, one of :data:`BOOLEAN_SPELLINGS`."""

    @property
    def expected(self) -> str:
        return (
            "True or False (from the environment: 1, true, yes, on, 0, false, no or off, "
            "in any case)"
        )

    def parse(self, raw: str) -> object:
        spelling = raw.strip().lower()
        if spelling not in BOOLEAN_SPELLINGS:
            raise _Invalid()
        return BOOLEAN_SPELLINGS[spelling]

    def accept(self, value: object) -> object:
        if not isinstance(value, bool):
            raise _Invalid(f"{value!r} ({_kind(value)})")
        return value


def _name_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} ({_kind(value)})"
    if not value or value != value.strip():
        return repr(value)
    return None


class Name(msgspec.Struct, frozen=True):
    """A non-empty str without surrounding whitespace (a queue name)."""

    @property
    def expected(self) -> str:
        return "a non-empty queue name without surrounding whitespace"

    def parse(self, raw: str) -> object:
        return raw

    def accept(self, value: object) -> object:
        problem = _name_problem(value)
        if problem is not None:
            raise _Invalid(problem)
        return value


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(","))


class Names(msgspec.Struct, frozen=True):
    """A tuple (or list) of one or more distinct :class:`Name` s; from the environment,
    comma-separated."""

    @property
    def expected(self) -> str:
        return (
            "one or more distinct queue names, each non-empty and without surrounding "
            'whitespace (from the environment: comma-separated, "default, reports")'
        )

    def parse(self, raw: str) -> object:
        return _split(raw)

    def accept(self, value: object) -> object:
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise _Invalid(f"{value!r} ({_kind(value)})")
        names = tuple(value)
        if not names or len(set(names)) != len(names):
            raise _Invalid()
        if any(_name_problem(name) is not None for name in names):
            raise _Invalid()
        return names


class Secrets(msgspec.Struct, frozen=True):
    """A tuple (or list) of non-empty strings without surrounding whitespace, possibly
    none; from the environment, comma-separated and at least one. Never shown."""

    @property
    def expected(self) -> str:
        return (
            "a tuple of non-empty strings without surrounding whitespace (from the "
            "environment: one or more, comma-separated; unset it to sign nothing)"
        )

    def parse(self, raw: str) -> object:
        keys = _split(raw)
        if not all(keys):  # an empty variable must not quietly turn signing off
            raise _Invalid("a value with an empty entry (not shown: a secret)")
        return keys

    def accept(self, value: object) -> object:
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise _Invalid(f"{_kind(value)} (not shown: a secret)")
        keys = tuple(value)
        for position, key in enumerate(keys, 1):
            if not isinstance(key, str):
                problem = f"entry {position} is {_kind(key)}"
            elif not key:
                problem = f"entry {position} is empty"
            elif key != key.strip():
                problem = f"entry {position} has surrounding whitespace"
            else:
                continue
            raise _Invalid(f"a value whose {problem} (not shown: a secret)")
        return keys


class Url(msgspec.Struct, frozen=True):
    """A non-empty URL without surrounding whitespace, shown without its password;
    ``optional``: or None."""

    optional: bool = False

    @property
    def expected(self) -> str:
        what = "a non-empty URL without surrounding whitespace"
        return f"{what}, or None" if self.optional else what

    def parse(self, raw: str) -> object:
        return raw

    def accept(self, value: object) -> object:
        if value is None and self.optional:
            return value
        if not isinstance(value, str):
            raise _Invalid(f"{_kind(value)}")
        if not value.strip():
            raise _Invalid(repr(value))
        if value != value.strip():
            raise _Invalid(f"{redact_url(value.strip())!r} with surrounding whitespace")
        return value


class Choice(msgspec.Struct, frozen=True):
    """One of ``choices``, in any case."""

    choices: tuple[str, ...]

    @property
    def expected(self) -> str:
        return f"{', '.join(self.choices[:-1])} or {self.choices[-1]} (any case)"

    def parse(self, raw: str) -> object:
        return raw

    def accept(self, value: object) -> object:
        if not isinstance(value, str):
            raise _Invalid(f"{value!r} ({_kind(value)})")
        if value.upper() not in self.choices:
            raise _Invalid()
        return value


class AClock(msgspec.Struct, frozen=True):
    """A :class:`~conveyor.clock.Clock` (``now``, ``monotonic``, ``sleep``); never read
    from the environment."""

    @property
    def expected(self) -> str:
        return "a Clock: an object with now(), monotonic() and async sleep() methods"

    def parse(self, raw: str) -> object:
        raise _Invalid("an environment variable (a clock is passed as an object)")

    def accept(self, value: object) -> object:
        for method in ("now", "monotonic", "sleep"):
            if not callable(getattr(value, method, None)):
                raise _Invalid(f"{_kind(value)} without {method}()")
        return value


#: The rule of every setting. docs/settings.md shows each one's range; why each
#: minimum and maximum is what it is:
RULES: Mapping[str, Rule] = {
    "broker_url": Url(),
    "result_url": Url(optional=True),
    # 0 or less fetches nothing; a thread per task of a sync pool bounds the top
    "concurrency": Count(1, MAX_CONCURRENCY),
    # 0: os.cpu_count(); each process is a whole interpreter with the task's module
    "process_pool_size": Count(0, 1024, "processes"),
    "queues": Names(),
    "default_queue": Name(),  # "" declares tasks on a queue no worker serves
    # renewed every lease / 3: at 0 the lease expires before its first renewal (14 runs
    # of one task, then poison); a day bounds how long a dead worker's tasks wait
    "lease": Seconds(0.5, _DAY),
    "reap_interval": Seconds(_POLL_FLOOR, _HOUR),  # 0: 96% of a core, idle
    "grace": Seconds(0.0, _DAY),  # 0: cancel running tasks at once
    "heartbeat_interval": Seconds(0.1, _HOUR),  # 0: 71% of a core, idle
    "abort_check_interval": Seconds(_POLL_FLOOR, _HOUR),
    "fetch_wait": Seconds(_POLL_FLOOR, 60.0),  # also how long a lost wake-up is missed
    # a broker that fails at once must not be retried in a spin; a cap of an hour would
    # leave a worker idle long after the broker came back
    "fault_pause": Seconds(0.01, 60.0),
    "fault_pause_max": Seconds(0.01, 600.0),
    "max_payload_bytes": Count(1, _MAX_BYTES, "bytes"),
    "max_result_bytes": Count(1, _MAX_BYTES, "bytes"),
    "signing_keys": Secrets(),
    # Redis takes milliseconds as a 64-bit int: inf raised OverflowError on every kiq
    "result_ttl": Seconds(0.0, _TEN_YEARS),  # 0: keep no results
    "poison_after": Count(1, 1000),
    "unknown_task_retries": Count(0, 1000),  # more would hand a message back for ever
    "unknown_task_delay": Seconds(0.1, _DAY),  # each hand-back is a round trip
    "schedule_grace": Seconds(0.0, _DAY),
    "schedule_refresh": Seconds(_POLL_FLOOR, _HOUR),
    "schedule_send_timeout": Seconds(0.5, 300.0),  # below a round trip, every call fails
    "log_tasks": Flag(),
    "task_counts": Flag(),
    "events": Flag(),
    "events_max": Count(1, 10_000_000),
    # below a round trip every waiter claims again at once; past a minute a freed
    # permit stands idle too long
    "permit_wait": Seconds(0.01, 60.0),
    "event_args_preview": Count(0, 65_536, "characters"),  # 0: no preview
    # a workflow's groups must outlive its slowest member: a minute at least
    "workflow_ttl": Seconds(60.0, _TEN_YEARS),
    "clock": AClock(),
}


def _check(
    name: str, value: object = None, *, raw: str | None = None, variable: str = ""
) -> object:
    """``value`` (or the text ``raw`` of ``variable``) as the rule of setting ``name``
    normalizes it, or the ConfigurationError naming the setting, the value and the range."""
    rule = RULES[name]
    try:
        return rule.accept(value if raw is None else rule.parse(raw))
    except _Invalid as exc:
        shown = exc.shown
        if shown is None:  # fine to show: as the user wrote it
            shown = repr(value) if raw is None else _shown_raw(raw)
    where = f" (from {variable})" if variable else ""
    raise ConfigurationError(f"setting {name} must be {rule.expected}, got {shown}{where}")


def _shown_raw(raw: str) -> str:
    """A number as written (``nan``, ``-5``), anything else quoted."""
    try:
        float(raw)
    except ValueError:
        return repr(raw)
    return raw.strip()


def _checked(settings: Settings) -> dict[str, object]:
    """Every field of ``settings`` checked; those its rule normalized, by name."""
    changed: dict[str, object] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        accepted = _check(f.name, value)
        if accepted is not value:
            changed[f.name] = accepted
    return changed
