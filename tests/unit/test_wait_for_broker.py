"""``conveyor worker --wait-for-broker``: the retry loop, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from conveyor.cli.worker import connect_waiting
from conveyor.errors import BrokerUnavailable, ConfigurationError

URL = "redis://:secret@cache:6379/0"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Broker:
    """Unreachable for ``failures`` attempts, each taking ``cost`` seconds."""

    def __init__(self, clock: FakeTime, failures: int, cost: float = 0.0) -> None:
        self.clock = clock
        self.failures = failures
        self.cost = cost
        self.attempts = 0

    async def connect(self) -> None:
        self.attempts += 1
        self.clock.now += self.cost
        if self.attempts <= self.failures:
            raise BrokerUnavailable("cannot reach Redis at redis://:***@cache:6379/0: refused")


async def test_without_a_wait_the_first_failure_is_raised_at_once() -> None:
    clock = FakeTime()
    broker = Broker(clock, failures=1)
    with pytest.raises(BrokerUnavailable, match=r"refused$"):
        await connect_waiting(broker.connect, URL, 0, monotonic=clock.monotonic, sleep=clock.sleep)
    assert broker.attempts == 1
    assert clock.sleeps == []


async def test_retries_with_exponential_backoff_logging_one_line_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeTime()
    broker = Broker(clock, failures=6)
    with caplog.at_level(logging.INFO, logger="conveyor.cli"):
        await connect_waiting(
            broker.connect, URL, 120, monotonic=clock.monotonic, sleep=clock.sleep
        )
    assert broker.attempts == 7
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0], "doubling, capped at 10 s"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 7
    assert lines[0] == (
        "attempt 1: cannot reach Redis at redis://:***@cache:6379/0: refused; "
        "retrying in 0.5s (waiting up to 120s for the broker)"
    )
    assert lines[-1] == "broker redis://:***@cache:6379/0 reachable after 7 attempts (25.5s)"
    assert all("secret" not in line for line in lines)


async def test_gives_up_when_the_wait_is_over() -> None:
    clock = FakeTime()
    broker = Broker(clock, failures=100, cost=1.0)
    with pytest.raises(BrokerUnavailable) as raised:
        await connect_waiting(broker.connect, URL, 5, monotonic=clock.monotonic, sleep=clock.sleep)
    # attempts end at 1, 2.5, 4.5: the last pause is cut to the 0.5 s that remain
    assert clock.sleeps == [0.5, 1.0, 0.5]
    assert broker.attempts == 4
    assert str(raised.value).endswith("refused (gave up after 4 attempts in 6.0s)")


async def test_configuration_errors_are_not_retried() -> None:
    clock = FakeTime()

    async def connect() -> None:
        raise ConfigurationError("unknown broker URL scheme")

    with pytest.raises(ConfigurationError):
        await connect_waiting(connect, URL, 60, monotonic=clock.monotonic, sleep=clock.sleep)
    assert clock.sleeps == []
