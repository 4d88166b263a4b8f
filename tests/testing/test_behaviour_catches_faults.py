"""The behaviour suite fails a broker that breaks what it checks: each mutant of
``memory://`` breaks one promise, and the check of that promise fails on it (the same
checks pass on ``memory://`` itself: tests/brokers/test_behaviour.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from conveyor.brokers import _REGISTRY
from conveyor.brokers.base import Ack, DeadLetter, Delivery, Release, Retry, Settlement
from conveyor.brokers.memory import MemoryBroker
from conveyor.testing.behaviour import (
    BehaviourCheck,
    app_factory,
    check_crashes_are_counted,
    check_graceful_stop_releases_uncharged,
    check_long_task_keeps_its_lease,
    check_poison_task_is_dead_lettered,
    check_retries_then_dead_letter,
    check_zombie_cannot_settle,
)


class NoRenewal(MemoryBroker):
    """Says it renewed a lease, and did not."""

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        return [True] * len(deliveries)


class NoFencing(MemoryBroker):
    """Settles a delivery whose lease another worker holds now."""

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        for delivery, _ in batch:
            job = self._jobs.get(delivery.task_id)
            if job is not None and job.state == "leased":
                delivery.token = job.lease_token
        return await super().settle(batch)


class NoCrashCount(MemoryBroker):
    """Never reports the attempts whose worker died."""

    async def fetch(self, queues: Sequence[str], count: int, wait: float) -> list[Delivery]:
        got = await super().fetch(queues, count, wait)
        for delivery in got:
            delivery.crashes = 0
        return got


class ChargedRelease(MemoryBroker):
    """Counts the attempt of a released delivery, as a retry does."""

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        return await super().settle(
            [(d, Retry(0.0) if isinstance(o, Release) else o) for d, o in batch]
        )


class NoDeadLetters(MemoryBroker):
    """Acks what it should dead-letter: the message is lost."""

    async def settle(self, batch: Sequence[Settlement]) -> list[bool]:
        return await super().settle(
            [(d, Ack(o.result) if isinstance(o, DeadLetter) else o) for d, o in batch]
        )


@pytest.mark.parametrize(
    ("mutant", "check"),
    [
        (NoRenewal, check_long_task_keeps_its_lease),
        (NoFencing, check_zombie_cannot_settle),
        (NoCrashCount, check_crashes_are_counted),
        (ChargedRelease, check_graceful_stop_releases_uncharged),
        (NoDeadLetters, check_retries_then_dead_letter),
        (NoDeadLetters, check_poison_task_is_dead_lettered),
    ],
    ids=lambda x: x.__name__.removeprefix("check_"),
)
async def test_a_broken_promise_fails_its_check(
    mutant: type[MemoryBroker], check: BehaviourCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme = f"mutant-{mutant.__name__.lower()}"
    here = f"{__name__}:{mutant.__name__}"
    monkeypatch.setitem(
        _REGISTRY, scheme, (here, "conveyor.brokers.memory:MemoryResultStore", None)
    )
    with pytest.raises(AssertionError):
        await check(app_factory(f"{scheme}://"))
