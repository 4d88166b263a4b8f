"""Attacks that used to run a task thousands of times a second (issue 14, G5): each now
ends once, failed or in the dead-letter queue with a reason, on every broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, TaskStatus
from conveyor.brokers.base import Outgoing
from conveyor.result import ErrorInfo
from tests.conftest import connected_app, eventually, nothing_pending


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


async def _runs_once_and_fails(app: Conveyor, task_name: str, runs: list[int]) -> str:
    handle = await app.tasks[task_name].kiq()
    async with app.worker():
        result = await handle.wait_result(timeout=10)
        # a looping message would still be queued, delayed or running
        await eventually(lambda: nothing_pending(app), what="nothing pending")
    assert len(runs) == 1, f"ran {len(runs)} times"
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    return f"{result.error.type}: {result.error.message}"


async def test_an_exception_whose_str_raises_fails_the_task_once(app: Conveyor) -> None:
    runs: list[int] = []

    @app.task(name="unprintable")
    async def unprintable() -> None:
        runs.append(1)
        raise UnprintableError()

    described = await _runs_once_and_fails(app, "unprintable", runs)
    assert "UnprintableError: <str() of the exception raised RuntimeError>" in described


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (2**70, "OverflowError"),
        (_nested(5000), "RecursionError"),
    ],
    ids=["int-over-64-bits", "list-nested-5000-deep"],
)
async def test_a_return_value_that_cannot_be_stored_fails_once_naming_why(
    app: Conveyor, value: Any, why: str
) -> None:
    runs: list[int] = []

    @app.task(name="returns_bad")
    async def returns_bad() -> Any:
        runs.append(1)
        return value

    described = await _runs_once_and_fails(app, "returns_bad", runs)
    assert described.startswith("TypeError: task 'returns_bad': result not serializable: ")
    assert why in described


async def test_a_result_over_max_result_bytes_fails_once(app: Conveyor) -> None:
    runs: list[int] = []
    app.settings = app.settings.replace(max_result_bytes=1000)

    @app.task(name="too_big")
    async def too_big() -> str:
        runs.append(1)
        return "x" * 5000

    described = await _runs_once_and_fails(app, "too_big", runs)
    assert "over max_result_bytes (1000)" in described


async def test_deeply_nested_msgpack_is_dead_lettered_with_its_bytes(app: Conveyor) -> None:
    raw = b"\x91" * 100_000 + b"\xc0"
    await app.broker.publish([Outgoing("deep-1", "default", raw)])
    async with app.worker():
        result = await app.handle("deep-1").wait_result(timeout=10)
        entries = await app.broker.dead_letters()
    assert result.status is TaskStatus.DEAD
    (entry,) = entries
    assert entry.body == raw
    assert entry.reason.startswith("malformed message")
    assert entry.attempts == 1


def test_error_info_never_raises_and_bounds_its_text() -> None:
    assert ErrorInfo.from_exception(UnprintableError()).message.startswith("<str() of")
    huge = ErrorInfo.from_exception(ValueError("x" * 1_000_000))
    assert len(huge.message) <= 10_000
    surrogate = ErrorInfo.from_exception(ValueError("bad \ud800 text"))
    surrogate.message.encode("utf-8")  # storable: the lone surrogate is escaped


async def test_a_hand_written_sqlite_row_with_a_text_body_is_dead_lettered_alone(
    tmp_path: Path,
) -> None:
    """What the sqlite3 shell stores is TEXT: the one odd row goes to the DLQ with its
    bytes, and the claim it shared with 10 good tasks still runs them."""
    async with connected_app("sqlite", tmp_path) as app:
        ran: list[int] = []

        @app.task(name="good")
        async def good(n: int) -> None:
            ran.append(n)

        handles = [await good.kiq(n) for n in range(10)]
        path = tmp_path / "conformance.db"
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO tasks (task_id, queue, body, priority, seq, state, enqueued_at) "
                "VALUES ('typed-by-hand', 'default', 'not a blob', 0, -1, 'ready', 0)"
            )
        async with app.worker():
            for handle in handles:
                await handle.get(timeout=10)
            dead = await app.handle("typed-by-hand").wait_result(timeout=10)
            (entry,) = await app.broker.dead_letters()
    assert sorted(ran) == list(range(10))
    assert dead.status is TaskStatus.DEAD
    assert entry.body == b"not a blob" and entry.reason.startswith("malformed message")


async def test_a_redis_entry_whose_id_is_not_utf8_is_dead_lettered_alone(
    tmp_path: Path,
) -> None:
    """An entry XADDed by hand with a binary task id: it is dead-lettered with its raw
    bytes, and the 8 tasks claimed in the same batch all run."""
    async with connected_app("redis", tmp_path) as app:
        ran: list[int] = []

        @app.task(name="good")
        async def good(n: int) -> None:
            ran.append(n)

        handles = [await good.kiq(n) for n in range(4)]
        broker = app.broker
        stream = broker.keys.stream("default", 0)  # type: ignore[attr-defined]
        await broker.client.xadd(stream, {"i": b"\xff\xfe-bad", "b": b"raw body"})  # type: ignore[attr-defined]
        handles += [await good.kiq(n) for n in range(4, 8)]
        async with app.worker(concurrency=20):
            for handle in handles:
                await handle.get(timeout=10)
            entries = await eventually(broker.dead_letters, what="the dead letter")
    assert sorted(ran) == list(range(8))
    (entry,) = entries
    assert entry.body == b"raw body"
    assert entry.reason == "malformed entry: its task id is not UTF-8 text"
    assert entry.id == "\\xff\\xfe-bad"
