"""A broker that declares fewer capabilities gets no calls for the ones it lacks, and what
needs them says so (ConfigurationError) instead of failing on a missing method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigurationError, Conveyor, Scheduler, every
from conveyor.brokers import _REGISTRY
from conveyor.brokers.base import Capability
from conveyor.brokers.memory import MemoryBroker
from conveyor.testing import ManualClock
from tests.conftest import eventually, fast_app

ALL = frozenset(Capability)


class _Lacking(MemoryBroker):
    """memory:// that fails any call outside its capabilities."""

    calls_outside: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls_outside = []

    def _outside(self, name: str) -> None:
        self.calls_outside.append(name)
        raise AssertionError(f"{name} called on a broker without its capability")


class NoAbort(_Lacking):
    capabilities = ALL - {Capability.ABORT}

    async def wait_abort_signal(self, timeout: float) -> list[str]:
        self._outside("wait_abort_signal")
        return []

    async def abort_marks(self, deliveries: Any) -> list[bool]:
        self._outside("abort_marks")
        return []


class NoAdmin(_Lacking):
    capabilities = ALL - {Capability.ADMIN}

    async def heartbeat(self, info: Any, ttl: float) -> None:
        self._outside("heartbeat")


class NoResults(_Lacking):
    capabilities = ALL - {Capability.RESULTS}


class NoSchedules(_Lacking):
    capabilities = ALL - {Capability.SCHEDULES}

    def schedule_store(self) -> Any:
        self._outside("schedule_store")


class NoEvents(_Lacking):
    capabilities = ALL - {Capability.EVENTS}

    def event_store(self) -> Any:
        self._outside("event_store")


class NoCounts(_Lacking):
    capabilities = ALL - {Capability.COUNTS}

    async def record_counts(self, counts: Any) -> None:
        self._outside("record_counts")


@pytest.fixture(autouse=True)
def schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (NoAbort, NoAdmin, NoResults, NoSchedules, NoEvents, NoCounts):
        monkeypatch.setitem(
            _REGISTRY,
            cls.__name__.lower(),
            (f"{__name__}:{cls.__name__}", "conveyor.brokers.memory:MemoryResultStore", None),
        )


async def _runs_a_task(app: Conveyor) -> None:
    @app.task(name="double")
    async def double(n: int) -> int:
        return 2 * n

    async with app.worker():
        assert await (await double.kiq(21)).get(timeout=10) == 42


async def test_no_abort_no_watch_and_abort_says_why() -> None:
    app = fast_app("noabort://")
    async with app:
        await _runs_a_task(app)
        with pytest.raises(ConfigurationError, match="ABORT"):
            await app.abort("some-task")
        assert app.broker.calls_outside == []  # type: ignore[attr-defined]


async def test_no_admin_no_heartbeat() -> None:
    app = fast_app("noadmin://")
    async with app:
        await _runs_a_task(app)
        assert app.broker.calls_outside == []  # type: ignore[attr-defined]


async def test_no_results_runs_fire_and_forget_and_wait_says_how_to_add_a_store() -> None:
    app = fast_app("noresults://")
    ran: list[int] = []

    @app.task(name="record")
    async def record(n: int) -> None:
        ran.append(n)

    async with app:
        async with app.worker():
            handle = await record.kiq(7)
            await eventually(lambda: ran == [7])
        with pytest.raises(ConfigurationError, match=r"'noresults://' keeps no results.*results="):
            await handle.wait_result(timeout=1)


async def test_no_results_uses_the_store_given(tmp_path: Path) -> None:
    app = fast_app("noresults://", results=f"sqlite:///{tmp_path}/results.db")
    async with app:
        await _runs_a_task(app)
        assert type(app.result_store).__name__ == "SqliteResultStore"


async def test_no_schedules_fires_code_schedules_and_refuses_changes() -> None:
    clock = ManualClock(now=1_000_000.25)
    app = fast_app("noschedules://", clock=clock)

    @app.task(name="ping", schedule=[every(seconds=1, id="ping-1s")])
    async def ping() -> None: ...

    async with app:
        scheduler = Scheduler(app)
        for _ in range(3):
            await scheduler.run_pass()
            clock.advance(1.0)
        assert scheduler.stats.enqueued == 3
        assert [s.schedule.id for s in await app.schedules.list()] == ["ping-1s"]
        for change in (
            app.schedules.add("other", ping, every=5),
            app.schedules.pause("ping-1s"),
            app.schedules.remove("other"),
        ):
            with pytest.raises(ConfigurationError, match="does not store schedules"):
                await change
        assert app.broker.calls_outside == []  # type: ignore[attr-defined]


async def test_no_events_runs_with_the_log_asked_for() -> None:
    app = fast_app("noevents://", events=True)
    async with app:
        await _runs_a_task(app)
        assert app.broker.calls_outside == []  # type: ignore[attr-defined]


async def test_no_counts_counts_nothing() -> None:
    app = fast_app("nocounts://")
    async with app:
        await _runs_a_task(app)
        assert app.broker.calls_outside == []  # type: ignore[attr-defined]
