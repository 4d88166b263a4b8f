"""Bad input is dead-lettered with its raw bytes and a reason: never dropped, never looping."""

from __future__ import annotations

import msgspec

from conveyor import Context, Conveyor, Depends, TaskStatus
from conveyor.brokers.base import Outgoing
from conveyor.message import SCHEMA_VERSION, Message, encode_message
from tests.conftest import eventually


async def _drain_dlq(app: Conveyor, expected: int) -> list[object]:
    async def arrived() -> list[object] | None:
        entries = await app.broker.dead_letters()
        return list(entries) if len(entries) >= expected else None

    return await eventually(arrived, what=f"{expected} dead letter(s)")


async def test_malformed_body_goes_to_dlq_with_raw_bytes(app: Conveyor) -> None:
    raw = b"\x93\xa3not-a-message"
    await app.broker.publish([Outgoing("bad-1", "default", raw)])
    async with app.worker():
        (entry,) = await _drain_dlq(app, 1)
        result = await app.handle("bad-1").wait_result(timeout=5)
    assert entry.body == raw  # type: ignore[attr-defined]
    assert entry.reason.startswith("malformed message")  # type: ignore[attr-defined]
    assert result.status is TaskStatus.DEAD
    assert (await app.broker.queue_depths())[0].ready == 0


async def test_garbage_that_is_not_msgpack_goes_to_dlq(app: Conveyor) -> None:
    await app.broker.publish([Outgoing("bad-2", "default", b"\xc1\xc1\xc1")])
    async with app.worker():
        (entry,) = await _drain_dlq(app, 1)
    assert "not msgpack" in entry.reason  # type: ignore[attr-defined]


async def test_unknown_schema_version_goes_to_dlq(app: Conveyor) -> None:
    future = msgspec.msgpack.encode([SCHEMA_VERSION + 1, "v-1", "some.task", "default"])
    await app.broker.publish([Outgoing("v-1", "default", future)])
    async with app.worker():
        (entry,) = await _drain_dlq(app, 1)
    assert entry.reason == (  # type: ignore[attr-defined]
        f"unsupported schema version {SCHEMA_VERSION + 1} (this worker reads {SCHEMA_VERSION})"
    )


async def test_unknown_task_goes_to_dlq_naming_it(app: Conveyor) -> None:
    body = encode_message(Message(SCHEMA_VERSION, "u-1", "app.emails:send_email", "default"))
    await app.broker.publish([Outgoing("u-1", "default", body)])
    async with app.worker():
        (entry,) = await _drain_dlq(app, 1)
    assert "unknown task 'app.emails:send_email'" in entry.reason  # type: ignore[attr-defined]
    assert entry.body == body  # type: ignore[attr-defined]


async def test_arguments_of_the_wrong_type_dead_letter_naming_the_parameter(app: Conveyor) -> None:
    @app.task
    async def needs_int(n: list[int]) -> None: ...

    body = encode_message(Message(SCHEMA_VERSION, "a-1", needs_int.name, "default", args=[["x"]]))
    await app.broker.publish([Outgoing("a-1", "default", body)])
    async with app.worker():
        (entry,) = await _drain_dlq(app, 1)
    assert "invalid arguments" in entry.reason  # type: ignore[attr-defined]
    assert "argument 'n'" in entry.reason  # type: ignore[attr-defined]


async def test_poison_message_is_dead_lettered_after_max_attempts(app: Conveyor) -> None:
    """A task whose worker dies every time is dead-lettered after exactly N started attempts."""

    @app.task(retries=1)
    async def crashes() -> None: ...

    handle = await crashes.kiq()
    for _ in range(3):  # three started attempts whose worker "died": leases expire unsettled
        (delivery,) = await app.broker.fetch(["default"], 1, 1.0)
        assert await delivery.extend_lease(0.0)  # the lease ends now, unsettled
        await eventually(app.broker.reap, what="the reaper to take it back")
    async with app.worker():
        result = await handle.wait_result(timeout=5)
    assert result.status is TaskStatus.DEAD
    (entry,) = await app.broker.dead_letters()
    assert entry.reason.startswith("poison: attempt 4 exceeds the limit of 3 started attempts")


async def test_a_task_without_retries_runs_again_after_its_worker_died(app: Conveyor) -> None:
    """G2: a crash is not the task's fault; retries=0 still gets it run again."""
    runs: list[int] = []

    @app.task
    async def once(ctx: Context = Depends()) -> int:
        runs.append(ctx.attempt)
        return ctx.attempt

    handle = await once.kiq()
    (delivery,) = await app.broker.fetch(["default"], 1, 1.0)
    assert await delivery.extend_lease(0.0)  # the worker "died" mid-task
    await eventually(app.broker.reap, what="the reaper to take it back")
    async with app.worker():
        assert await handle.get(timeout=5) == 2
    assert runs == [2]
