"""One frozen settings object: constructor arguments, then ``CONVEYOR_*`` variables,
then defaults.

>>> Settings.load({"CONVEYOR_CONCURRENCY": "50"}, lease=10).concurrency
50
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from conveyor.clock import Clock, SystemClock
from conveyor.errors import ConfigurationError

__all__ = ["DEFAULT_BROKER_URL", "Settings"]

DEFAULT_BROKER_URL = "sqlite:///conveyor.db"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob Conveyor reads. docs/settings.md lists them with their variables.

    Durations are seconds. ``clock`` is not read from the environment; tests inject one.
    """

    broker_url: str = DEFAULT_BROKER_URL
    result_url: str | None = None
    concurrency: int = 10
    queues: tuple[str, ...] = ("default",)
    default_queue: str = "default"
    lease: float = 30.0
    reap_interval: float = 5.0
    grace: float = 30.0
    heartbeat_interval: float = 5.0
    abort_check_interval: float = 1.0
    fetch_wait: float = 1.0
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
    sqlite_synchronous: str = "FULL"
    sqlite_busy_timeout: float = 5.0
    log_tasks: bool = True  # one INFO line per task that ends (logger conveyor.task)
    events: bool = False  # the event log costs 11-22% of no-op throughput (bench/)
    events_max: int = 10_000
    event_args_preview: int = 256
    clock: Clock = field(default_factory=SystemClock, compare=False, repr=False)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``overrides`` (non-None wins), then ``environ``
        (default :data:`os.environ`), then the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in overrides and overrides[f.name] is not None:
                values[f.name] = overrides[f.name]
                continue
            raw = env.get(f"CONVEYOR_{f.name.upper()}")
            if raw is not None and f.name != "clock":
                values[f.name] = _parse(f.name, f.type, raw)
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming the first invalid value."""
        for name in ("lease", "reap_interval", "grace", "heartbeat_interval"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"setting {name} must be >= 0 seconds")
        if self.fetch_wait <= 0:
            raise ConfigurationError(
                "setting fetch_wait must be > 0 seconds (an idle fetch would spin)"
            )
        for name in ("result_ttl", "sqlite_busy_timeout", "unknown_task_delay", "schedule_grace"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"setting {name} must be >= 0 seconds")
        for name in ("schedule_refresh", "schedule_send_timeout", "abort_check_interval"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"setting {name} must be > 0 seconds")
        if self.poison_after < 1:
            raise ConfigurationError("setting poison_after must be >= 1")
        if self.unknown_task_retries < 0:
            raise ConfigurationError("setting unknown_task_retries must be >= 0")
        if self.concurrency < 1:
            raise ConfigurationError("setting concurrency must be >= 1")
        if self.events_max < 1:
            raise ConfigurationError("setting events_max must be >= 1")
        if self.event_args_preview < 0:
            raise ConfigurationError("setting event_args_preview must be >= 0 (0: no preview)")
        if self.max_payload_bytes < 1:
            raise ConfigurationError("setting max_payload_bytes must be >= 1")
        if self.max_result_bytes < 1:
            raise ConfigurationError("setting max_result_bytes must be >= 1")
        if not self.queues:
            raise ConfigurationError("setting queues must name at least one queue")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigurationError(
                "setting sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA"
            )


def _parse(name: str, kind: Any, raw: str) -> Any:
    kind = str(kind)
    try:
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError:
        raise ConfigurationError(
            f"environment variable CONVEYOR_{name.upper()}={raw!r} is not a valid {kind}"
        ) from None
    return raw
