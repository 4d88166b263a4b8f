"""Flow control's pure parts (conveyor.flow): rate strings, token bucket arithmetic, the
options checked at decoration, and the keys stamped on a message at enqueue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.flow import Deferred, Flow, Gate, parse_rate, take_bucket
from conveyor.message import decode_message
from conveyor.send import Call, build_message, encode
from conveyor.testing.clock import ManualClock


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [
        ("10/s", 10, 1.0),
        ("100/m", 100, 60.0),
        ("5/h", 5, 3600.0),
        ("1000/d", 1000, 86400.0),
        ("3/10s", 3, 10.0),
        (" 7 / minute ", 7, 60.0),
        ("2/0.5s", 2, 0.5),
        ("60/min", 60, 60.0),
        ("1/hours", 1, 3600.0),
    ],
)
def test_rates_parse(text: str, count: int, per: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.per, rate.burst) == (count, per, count)
    assert rate.per_second == pytest.approx(count / per)


@pytest.mark.parametrize("text", ["10/x", "10", "/s", "0/s", "-1/s", "1.5/s", "10/0s", "ten/s", ""])
def test_bad_rate_names_the_string(text: str) -> None:
    with pytest.raises(ValueError, match="bad rate limit") as raised:
        parse_rate(text)
    assert repr(text) in str(raised.value)


def test_a_rate_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="'10/s'"):
        parse_rate(10)


def test_rates_read_back() -> None:
    assert [str(parse_rate(t)) for t in ("10/s", "100/m", "5/h", "3/10s")] == [
        "10/s",
        "100/m",
        "5/h",
        "3/10s",
    ]


def test_a_full_bucket_gives_its_burst_then_one_per_interval() -> None:
    tokens, at = 3.0, 100.0
    waits = []
    for _ in range(4):
        tokens, wait, at = take_bucket(tokens, at, 100.0, rate=2.0, burst=3)
        waits.append(wait)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5)
    tokens, wait, at = take_bucket(tokens, at, 100.5, rate=2.0, burst=3)
    assert wait == 0.0 and tokens == pytest.approx(0.0)
    tokens, wait, at = take_bucket(tokens, at, 200.0, rate=2.0, burst=3)
    assert tokens == pytest.approx(2.0), "refill stops at the burst"


def test_a_bucket_time_never_goes_back() -> None:
    """A taker whose clock read is older than the bucket's refills nothing, and saves the
    bucket's time: the next taker does not refill the time in between twice."""
    tokens, wait, at = take_bucket(0.0, 10.0, 9.0, rate=1.0, burst=5)
    assert (tokens, at) == (0.0, 10.0) and wait == pytest.approx(1.0)
    tokens, wait, at = take_bucket(tokens, at, 10.5, rate=1.0, burst=5)
    assert wait == pytest.approx(0.5)


def test_options_are_checked_at_decoration() -> None:
    app = Conveyor("memory://", environ={})

    with pytest.raises(ValueError, match=r"task 'bad_rate'.*rate_limit.*'10/x'"):

        @app.task(name="bad_rate", rate_limit="10/x")
        def bad_rate() -> None: ...

    with pytest.raises(ValueError, match="the key function takes who, which the task does not"):

        @app.task(name="bad_key", rate_limit=("10/s", lambda who: who))
        def bad_key(customer_id: str) -> None: ...

    with pytest.raises(ValueError, match="'concurrency' must be an int >= 1"):

        @app.task(name="bad_limit", concurrency=0)
        def bad_limit() -> None: ...

    with pytest.raises(ValueError, match="'concurrency_key' needs 'concurrency'"):

        @app.task(name="keyless", concurrency_key=lambda: "x")
        def keyless() -> None: ...

    with pytest.raises(ValueError, match="'debounce' must be > 0"):

        @app.task(name="bad_debounce", debounce=0)
        def bad_debounce() -> None: ...

    with pytest.raises(TypeError, match="'expires' must be seconds"):

        @app.task(name="bad_expiry", expires="soon")  # type: ignore[arg-type,untyped-decorator]
        def bad_expiry() -> None: ...


def test_a_task_without_flow_options_carries_nothing() -> None:
    app = Conveyor("memory://", environ={})

    @app.task(name="plain")
    def plain(x: int) -> None: ...

    assert plain.options.flow is None
    message = build_message(Call(plain, (1,), {}), app.settings)
    assert message.flow is None
    assert b"flow" not in encode(plain, message, app.settings).body  # no field 16 on the wire


def test_enqueue_stamps_keys_and_expiry() -> None:
    clock = ManualClock(now=1000.0)
    app = Conveyor("memory://", environ={}, clock=clock)
    until = datetime(2030, 1, 1, tzinfo=UTC)

    @app.task(
        name="charge",
        rate_limit=("100/m", lambda customer_id: customer_id),
        concurrency=2,
        concurrency_key=lambda customer_id: f"c-{customer_id}",
        unique=lambda customer_id, amount: f"{customer_id}:{amount}",
        debounce=(timedelta(seconds=5), lambda customer_id: customer_id),
        expires=60,
    )
    def charge(customer_id: str, amount: int) -> None: ...

    @app.task(name="report", expires=until)
    def report() -> None: ...

    message = build_message(Call(charge, ("cus_1",), {"amount": 7}), app.settings)
    assert message.flow == Flow(
        rate="charge:cus_1", concurrency="charge:c-cus_1", debounce="charge:cus_1", expires=1060.0
    )
    assert message.key == "unique:charge:cus_1:7"
    assert message.not_before == 1005.0  # debounced: due at the end of its window
    out = encode(charge, message, app.settings)
    assert out.key == "unique:charge:cus_1:7" and out.key_ttl == 0.0  # free once it ends
    assert decode_message(out.body).flow == message.flow
    stamped = build_message(Call(report, (), {}), app.settings)
    assert stamped.flow == Flow(expires=until.timestamp())


def test_unique_refuses_an_idempotency_key_too() -> None:
    app = Conveyor("memory://", environ={})

    @app.task(name="once", unique=True)
    def once(x: int) -> None: ...

    with pytest.raises(ValueError, match="is unique"):
        build_message(Call(once, (1,), {}, once.with_options(key="k").options), app.settings)


async def test_a_broker_without_flow_control_refuses_limited_tasks() -> None:
    app = Conveyor("memory://", environ={})

    @app.task(name="limited", rate_limit="1/s")
    async def limited() -> None: ...

    async with app:
        app.broker.__class__ = type(  # a memory broker that does not declare FLOW
            "NoFlow", (type(app.broker),), {"capabilities": frozenset()}
        )
        with pytest.raises(ConfigurationError, match="need flow control"):
            async with app.worker():
                pass


class _Store:
    """A FlowControl double for the gate's order of steps (the brokers' own behaviour
    is proved by the conformance checks on real servers)."""

    def __init__(self, permit: bool, wait: float) -> None:
        self.permit, self.wait = permit, wait
        self.calls: list[str] = []

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        self.calls.append(f"acquire {key} {limit} {holder}")
        return self.permit

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        self.calls.append(f"take {key} {rate:g} {burst}")
        return self.wait

    async def release_permits(self, permits: list[tuple[str, str]]) -> None:
        self.calls.append(f"release {permits}")


async def test_the_gate_takes_the_permit_first_and_gives_it_back_when_the_rate_refuses() -> None:
    app = Conveyor("memory://", environ={})

    @app.task(name="both", rate_limit="4/s", concurrency=1)
    async def both() -> None: ...

    options = both.options.flow
    assert options is not None
    refused = _Store(permit=True, wait=0.25)
    gate = Gate(refused, 30.0, 1.0, lambda: 0.5)  # type: ignore[arg-type]
    deferred = await gate.admit("both", options, None, "t:1")
    assert refused.calls == ["acquire both: 1 t:1", "take both: 4 4", "release [('both:', 't:1')]"]
    assert isinstance(deferred, Deferred)
    assert deferred.delay == pytest.approx(0.25 + 0.5 * 1.0)  # the next token, spread
    assert deferred.reason == "rate limited: 4/s"
    busy = _Store(permit=False, wait=0.0)
    deferred = await Gate(busy, 30.0, 1.0, lambda: 0.5).admit("both", options, None, "t:1")  # type: ignore[arg-type]
    assert busy.calls == ["acquire both: 1 t:1"], "refused a permit, it takes no token"
    assert isinstance(deferred, Deferred)
    assert deferred.reason == "concurrency limited: 1 running"
