"""Flow control: rate limits, concurrency limits, unique tasks, debounce and expiry
(docs/flow-control.md).

The options are declared on the task (``@app.task(rate_limit="10/s", concurrency=3,
unique=True, debounce=5, expires=60)``) and checked there, so a bad rate string or a key
function that names no argument of the task fails at decoration. At enqueue
:func:`stamp` computes the message's keys from its arguments into :class:`Flow` (wire
field 16); a task without flow options carries nothing and pays nothing.

The state is kept in the broker (``Capability.FLOW``,
:class:`~conveyor.brokers.base.FlowControl`), shared by every worker on every host:
token buckets and leased semaphores are computed atomically on the broker's own clock.
The worker's side is :class:`Gate`: after the claim and before the body, a limited task
takes its permit and its token; over a limit it is deferred (an uncharged retry with a
due time), holding no slot.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor.message import Flow, encode_value

if TYPE_CHECKING:
    from conveyor.brokers.base import FlowControl

__all__ = [
    "Flow",
    "FlowOptions",
    "Rate",
    "flow_options",
    "parse_rate",
    "stamp",
    "take_bucket",
]

KeyFunction = Callable[..., Any]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+?)s?\s*$")


class Rate(msgspec.Struct, frozen=True):
    """``count`` starts per ``per`` seconds, in bursts of at most ``burst`` (a token
    bucket of ``burst`` tokens refilled at ``count / per`` a second)."""

    count: int
    per: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.count / self.per

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.per)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per:g}s"


def parse_rate(text: object, burst: int | None = None) -> Rate:
    """Parse ``"10/s"``, ``"100/m"``, ``"5/h"``, ``"1000/d"`` or ``"3/10s"``; raise
    ``ValueError`` naming the string otherwise. The bucket holds ``burst`` tokens (by
    default the count: ``"100/m"`` admits 100 at once, then one every 0.6 s)."""
    if not isinstance(text, str):
        raise TypeError(f"a rate limit is a string like '10/s', got {text!r}")
    match = _RATE.match(text.lower())
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"bad rate limit {text!r}: write '<count>/<unit>' with a unit of s, m, h or d "
            "(optionally a number of them: '3/10s')"
        )
    count, many = int(match.group(1)), match.group(2)
    per = unit * (float(many) if many else 1.0)
    if count < 1 or not per > 0:
        raise ValueError(f"bad rate limit {text!r}: the count and the period must be > 0")
    if burst is None:
        burst = count
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"bad rate limit {text!r}: burst must be an int >= 1, got {burst!r}")
    return Rate(count, per, burst)


def take_bucket(
    tokens: float, updated: float, now: float, rate: float, burst: int
) -> tuple[float, float, float]:
    """One take from a token bucket holding ``tokens`` at time ``updated``, refilled at
    ``rate`` a second up to ``burst``: returns (tokens left, seconds until the next token
    or 0.0 when one was taken, the time to save them at). The saved time never goes back:
    a taker whose clock read is older than the bucket's (it waited for a lock, or its
    host's clock is behind) must not refill the tokens of the time in between twice. The
    reference every broker's atomic version follows (Lua, SQL)."""
    at = max(now, updated)
    tokens = min(float(burst), tokens + (at - updated) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0, at
    return tokens, (1.0 - tokens) / rate, at


class FlowOptions(msgspec.Struct, frozen=True):
    """A task's flow control, as declared (see :func:`flow_options`)."""

    rate: Rate | None = None
    rate_key: KeyFunction | None = None
    concurrency: int | None = None
    concurrency_key: KeyFunction | None = None
    unique: bool | KeyFunction = False
    debounce: float | None = None
    debounce_key: KeyFunction | None = None
    expires: float | datetime | None = None
    parameters: tuple[str, ...] = ()

    @property
    def gated(self) -> bool:
        """Whether a worker must take a token or a permit before running it."""
        return self.rate is not None or self.concurrency is not None


DebounceOption = float | timedelta | tuple[float | timedelta, KeyFunction] | None
RateOption = str | tuple[str, KeyFunction] | Rate | tuple[Rate, KeyFunction] | None


def flow_options(
    where: str,
    fn: Callable[..., Any],
    *,
    rate_limit: RateOption = None,
    concurrency: int | None = None,
    concurrency_key: KeyFunction | None = None,
    unique: bool | KeyFunction = False,
    debounce: DebounceOption = None,
    expires: float | timedelta | datetime | None = None,
) -> FlowOptions | None:
    """Check a task's flow options at decoration (``where`` names the task in errors);
    None when it has none. Key functions take arguments of the task by name
    (``lambda customer_id: customer_id``); one that names no argument of the task is
    refused here."""
    asked = (rate_limit, concurrency, concurrency_key, debounce, expires)
    if unique is False and all(option is None for option in asked):
        return None
    parameters = tuple(inspect.signature(fn).parameters)
    rate = rate_key = None
    if rate_limit is not None:
        spec: Any = rate_limit
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise ValueError(f"{where}: option 'rate_limit' is '10/s' or ('10/s', key_fn)")
            spec, rate_key = spec
            _check_key(where, "rate_limit", rate_key, parameters)
        try:
            rate = spec if isinstance(spec, Rate) else parse_rate(spec)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: option 'rate_limit': {exc}") from None
    if concurrency_key is not None:
        _check_key(where, "concurrency_key", concurrency_key, parameters)
        if concurrency is None:
            raise ValueError(f"{where}: option 'concurrency_key' needs 'concurrency' (a limit)")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(f"{where}: option 'concurrency' must be an int >= 1, got {concurrency!r}")
    if unique is not True and unique is not False:
        _check_key(where, "unique", unique, parameters)
    debounce_key = None
    if isinstance(debounce, tuple):
        if len(debounce) != 2:
            raise ValueError(f"{where}: option 'debounce' is seconds or (seconds, key_fn)")
        debounce, debounce_key = debounce
        _check_key(where, "debounce", debounce_key, parameters)
    wait = _positive(where, "debounce", debounce)
    until = expires if isinstance(expires, datetime) else _positive(where, "expires", expires)
    return FlowOptions(
        rate, rate_key, concurrency, concurrency_key, unique, wait, debounce_key, until, parameters
    )


def _positive(where: str, option: str, value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: option {option!r} must be seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: option {option!r} must be > 0 seconds, got {value!r}")
    return float(value)


def _check_key(where: str, option: str, fn: object, parameters: Sequence[str]) -> None:
    if not callable(fn):
        raise TypeError(f"{where}: option {option!r}: the key function is not callable: {fn!r}")
    try:
        names = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # a builtin: it gets every argument
    unknown = [
        name
        for name, p in names.items()
        if name not in parameters and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if unknown:
        raise ValueError(
            f"{where}: option {option!r}: the key function takes {', '.join(unknown)}, "
            f"which the task does not (its arguments: {', '.join(parameters) or 'none'})"
        )


def _key(fn: KeyFunction, bound: Mapping[str, Any]) -> str:
    try:
        names = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        value = fn(*bound.values())
    else:
        if any(p.kind is p.VAR_KEYWORD for p in names.values()):
            value = fn(**bound)
        else:
            value = fn(**{name: bound[name] for name in names if name in bound})
    return str(value)


def _bound(options: FlowOptions, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    bound = dict(zip(options.parameters, args, strict=False))
    bound.update(kwargs)
    return bound


def stamp(
    name: str,
    options: FlowOptions,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    now: float,
) -> tuple[Flow, str | None]:
    """What an enqueue of task ``name`` carries: its :class:`Flow`, and its unique key
    (None: not unique), computed from its arguments."""
    bound: dict[str, Any] | None = None

    def key_of(fn: KeyFunction) -> str:
        nonlocal bound
        if bound is None:
            bound = _bound(options, args, kwargs)
        return f"{name}:{_key(fn, bound)}"

    expires = 0.0
    if isinstance(options.expires, datetime):
        expires = options.expires.timestamp()
    elif options.expires is not None:
        expires = now + options.expires
    unique = None
    if options.unique is True:
        unique = f"unique:{name}:{_digest(args, kwargs)}"
    elif options.unique is not False:
        unique = f"unique:{key_of(options.unique)}"
    debounce = ""
    if options.debounce is not None:
        by = options.debounce_key
        debounce = key_of(by) if by is not None else f"{name}:{_digest(args, kwargs)}"
    flow = Flow(
        rate=key_of(options.rate_key) if options.rate_key else "",
        concurrency=key_of(options.concurrency_key) if options.concurrency_key else "",
        debounce=debounce,
        expires=expires,
    )
    return flow, unique


def _digest(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The same arguments, the same digest (the message's msgpack encoding of them)."""
    return hashlib.blake2b(encode_value([list(args), dict(kwargs)]), digest_size=12).hexdigest()


class Deferred(msgspec.Struct):
    """A delivery the gate refused: run it again after ``delay`` seconds; ``reason`` is
    what its status shows meanwhile."""

    delay: float
    reason: str


class Permit(msgspec.Struct, frozen=True):
    """A concurrency permit held by a running delivery: its semaphore and holder."""

    key: str
    holder: str


_MAX_SPREAD = 5.0  # seconds over which the waiters of one bucket are spread, at most


class Gate:
    """Takes a limited task's permit and token before it runs (the worker's side).

    ``permit_wait``: about how long a task refused a permit waits before it is claimed
    again (jittered by half either way, so that waiters do not return in step). A task
    refused a token waits until the bucket's next token, plus a random part of the
    rate's period (at most 5 s), so that a backlog does not come back all at once.
    Either way it is a due time in the broker: nothing polls.
    """

    def __init__(
        self, store: FlowControl, lease: float, permit_wait: float, rand: Callable[[], float]
    ) -> None:
        self._store = store
        self._lease = lease
        self._permit_wait = permit_wait
        self._rand = rand

    async def admit(
        self, name: str, options: FlowOptions, flow: Flow | None, holder: str
    ) -> Permit | Deferred | None:
        """A :class:`Permit` to hold while the task runs (None: it needs none), or
        :class:`Deferred` when a limit refuses it. The permit is taken first: a task
        refused its permit takes no token, and one refused a token gives its permit
        back."""
        permit: Permit | None = None
        if options.concurrency is not None:
            key = f"{name}:" if flow is None or not flow.concurrency else flow.concurrency
            if not await self._store.acquire_permit(key, options.concurrency, holder, self._lease):
                delay = self._permit_wait * (0.5 + self._rand())
                return Deferred(delay, f"concurrency limited: {options.concurrency} running")
            permit = Permit(key, holder)
        if options.rate is not None:
            rate = options.rate
            key = f"{name}:" if flow is None or not flow.rate else flow.rate
            wait = await self._store.take_token(key, rate.per_second, rate.burst)
            if wait > 0:
                if permit is not None:
                    await self._store.release_permits([(permit.key, permit.holder)])
                # waiters refused together would all come back at the next token:
                # spread them over the rate's period (at most a few seconds)
                spread = min(rate.per, _MAX_SPREAD) * self._rand()
                return Deferred(wait + spread, f"rate limited: {rate}")
        return permit


def default_rand() -> float:
    """The gate's jitter source (a test passes its own)."""
    return random.random()
